package handler

import (
	"context"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
)

// response runs only for requests Access left buffered (initialize, lists,
// DELETE ...), before the client sees the answer. It ends sessions whose
// DELETE the replica accepted, and rewrites upstream.rewrite_statuses into
// envelopes echoing the request's id; everything else passes as sent.
func (p *Plugin) response(k kong.PDK) {
	defer p.recoverPhase(k, "response", nil)

	status, err := k.ResponseStatus()
	if err != nil {
		logger.Error("reading response status", "err", err)
		return
	}
	ends := p.store != nil && (status/100 == 2 || status == 404 || status == 405)
	rewrite := p.rewrites(status)
	if !ends && !rewrite {
		return
	}

	// Read the request again rather than pay for carrying it from Access on
	// every request.
	method, err := k.RequestMethod()
	if err != nil || method == "OPTIONS" || (method != "DELETE" && !rewrite) {
		return
	}
	headers, err := k.RequestHeaders()
	if err != nil {
		logger.Error("reading request headers", "err", err)
		return
	}
	// Here, not in Log: Log runs after the client has the answer, and its
	// next request must already find the session ended or lost.
	if ends && method == "DELETE" {
		p.settle(headers, session.Ended)
	}
	if !rewrite {
		return
	}
	if p.store != nil && (status == 502 || status == 504) {
		p.settle(headers, session.Lost)
	}

	r := newRequest(method, headers)
	if method == "POST" {
		body, err := k.RequestBody()
		if err != nil {
			logger.Error("reading request body", "err", err)
		}
		r.withBody(envelope.Parse(body, p.cfg.Envelope.MaxBodyBytes))
	}
	if !r.mcp {
		return
	}
	wwwAuth := ""
	if status == 401 || status == 403 {
		// The upstream's own challenge wins: it may carry resource_metadata.
		wwwAuth, _ = k.ResponseHeader("WWW-Authenticate")
		if wwwAuth == "" {
			wwwAuth = p.cfg.Auth.WWWAuthenticate
		}
	}
	p.reply(k, &r, upstreamReason(status), wwwAuth)
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
	if p.ownSession(ctx, ids[0], first(headers, hConsumerID), "") {
		p.setState(ctx, ids[0], state)
	}
}
