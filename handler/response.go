package handler

import (
	"context"
	"time"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
)

// response runs only for requests Access left buffered (initialize, lists,
// DELETE ...), before the client sees the answer. It ends sessions whose
// DELETE the replica accepted, and rewrites upstream.rewrite_statuses into
// envelopes echoing the request's id; everything else passes as sent.
func (p *Plugin) response(k kong.PDK) {
	defer p.catchPanic(k, "response", nil)

	status, err := k.ResponseStatus()
	if err != nil {
		logger.Error("reading response status", "err", err)
		return
	}
	read, exited := p.authzResponse(k, status)
	if exited {
		return
	}
	settles := p.store != nil && (status/100 == 2 || status == 404 || status == 405)
	rewrite := p.rewrites(status)
	if !settles && !rewrite {
		return
	}

	// Read the request again rather than pay for carrying it from Access on
	// every request.
	headers, err := read.headers(k)
	if err != nil {
		logger.Error("reading request headers", "err", err)
		return
	}
	r := newRequest(headers)
	if settles && !r.modern {
		if len(headers[hSessionID]) == 0 {
			if status/100 == 2 {
				p.hintLearn(k, headers)
			}
		} else if !r.mayHaveBody() { // a DELETE has no body: skip the call for POSTs
			if r.method, err = k.RequestMethod(); err == nil && r.method == "DELETE" {
				// Here, not in Log: Log runs after the client has the answer,
				// and its next request must already find the session ended.
				p.settle(headers, session.Ended)
			}
		} else if status == 404 && p.resendAfter404(k, headers, &r) {
			return // recovered: the client has the new session's answer
		}
	}
	if !rewrite || len(headers[hPreflight]) > 0 { // a CORS preflight is never rewritten
		return
	}
	if p.store != nil && (status == 502 || status == 504) {
		p.settle(headers, session.Lost)
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

// hintLearn tells Log that this answer created a session, when it did.
func (p *Plugin) hintLearn(k kong.PDK, headers map[string][]string) {
	id, err := k.ResponseHeader("Mcp-Session-Id")
	if err != nil {
		logger.Error("reading response Mcp-Session-Id", "err", err)
		return
	}
	if id != "" && validSessionID(id, p.cfg.Session.MaxIDLength) {
		var init string
		if p.cfg.Session.Recover {
			init = inits.take(headers, time.Now())
		}
		p.hints.addInit(id, time.Now(), init)
	}
}

// settle ends or loses the session a request named, when it is its
// consumer's: Access has then sent the request to the session's replica.
func (p *Plugin) settle(headers map[string][]string, state session.State) {
	ids := headers[hSessionID]
	if len(ids) != 1 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
	defer cancel()
	if rec, own := p.ownRecord(ctx, ids[0], first(headers, hConsumerID)); own {
		p.setState(ctx, ids[0], state)
		if state == session.Ended { // a recovered session's other ids end with it
			for _, other := range []string{rec.Upstream, rec.Alias} {
				if other != "" && other != ids[0] {
					p.setState(ctx, other, state)
				}
			}
		}
	}
}
