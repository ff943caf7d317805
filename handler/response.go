package handler

import (
	"context"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
)

// response runs only for requests Access left buffered (initialize, lists,
// DELETE ...), before the client sees the answer. It learns the session an
// initialize answer created, ends sessions whose DELETE the replica
// accepted, and rewrites upstream.rewrite_statuses into envelopes echoing
// the request's id; everything else passes as sent. A buffered answer that
// needs none of it costs two PDK calls: its status and the request's note
// (note.go).
func (p *Plugin) response(k kong.PDK) {
	if !p.logState().events() {
		w := flushAtEnd(k)
		defer w.done()
		k = w
	}
	defer p.catchPanic(k, "response", nil)

	status, err := k.ResponseStatus()
	if err != nil {
		logger.Error("reading response status", "err", err)
		return
	}
	// While a recovery through Kong's balancer is under way, whatever the
	// status, this request may be its initialize (reroute.go).
	var n note
	noteRead := reroutes.any()
	if noteRead {
		raw, err := k.RequestNote(noteKey)
		if err != nil {
			logger.Error("reading the request's note", "err", err)
			return
		}
		if n = decodeNote(raw); n.kind == noteReroute {
			p.finishReroute(k, n.session, status)
			return
		}
	}
	settles := p.store != nil && (status/100 == 2 || status == 404 || status == 405)
	judges := (p.rules != nil || p.pins != nil) && status/100 == 2
	rewrite := p.rewrites(status)
	if !settles && !judges && !rewrite {
		return
	}

	var headers map[string][]string
	var r request
	if settles || judges {
		if !noteRead {
			raw, err := k.RequestNote(noteKey)
			if err != nil {
				logger.Error("reading the request's note", "err", err)
				return
			}
			n = decodeNote(raw)
		}
		switch {
		case n.kind == noteList && judges:
			if p.filterList(k, status, n) {
				return
			}
		case !settles:
		case n.kind == noteLearn && status/100 == 2:
			p.learnSession(k, n)
		case n.kind == noteEnd:
			// Here, not in Log: Log runs after the client has the answer,
			// and its next request must already find the session ended.
			p.settle(n.session, n.consumer, session.Ended)
		case n.kind == 0 && status == 404:
			// A pinned request's replica may have forgotten its session.
			if headers, err = k.RequestHeaders(); err != nil {
				logger.Error("reading request headers", "err", err)
				return
			}
			r = newRequest(headers)
			if !r.modern && len(headers[hSessionID]) > 0 && r.mayHaveBody() && p.resendAfter404(k, headers, &r) {
				return // recovered: the client has the new session's answer
			}
		}
	}
	if !rewrite {
		return
	}
	if headers == nil {
		if headers, err = k.RequestHeaders(); err != nil {
			logger.Error("reading request headers", "err", err)
			return
		}
		r = newRequest(headers)
	}
	if len(headers[hPreflight]) > 0 { // a CORS preflight is never rewritten
		return
	}
	if ids := headers[hSessionID]; p.store != nil && (status == 502 || status == 504) && len(ids) == 1 {
		p.settle(ids[0], first(headers, hConsumerID), session.Lost)
	}

	if r.mayHaveBody() {
		p.readBody(k, &r)
	}
	if !r.mcp {
		return
	}
	wwwAuth, detail, why := "", "", upstreamReason(status)
	if status == 401 || status == 403 {
		detail = p.upstreamDetail(k, status)
		// The upstream's own challenge wins: it may carry resource_metadata.
		wwwAuth, _ = k.ResponseHeader("WWW-Authenticate")
		if wwwAuth == "" {
			wwwAuth = p.wwwAuthenticate(k, &r)
		}
	}
	p.replyDetail(k, &r, why, wwwAuth, detail)
}

// settle ends or loses session id, named by a request of consumer, when it
// is that consumer's: Access has then sent the request to the session's
// replica.
func (p *Plugin) settle(id, consumer string, state session.State) {
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
	defer cancel()
	if rec, own := p.ownRecord(ctx, id, consumer); own {
		p.setState(ctx, id, state)
		if state == session.Ended { // a recovered session's other ids end with it
			for _, other := range []string{rec.Upstream, rec.Alias} {
				if other != "" && other != id {
					p.setState(ctx, other, state)
				}
			}
		}
	}
}
