package handler

import (
	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/kong"
)

// response runs only for requests Access left buffered (initialize, lists,
// DELETE ...). It rewrites upstream.rewrite_statuses into envelopes echoing
// the request's id; everything else passes as the upstream sent it.
func (p *Plugin) response(k kong.PDK) {
	defer p.recoverPhase(k, "response")

	status, err := k.ResponseStatus()
	if err != nil {
		logger.Error("reading response status", "err", err)
		return
	}
	if !p.rewrites(status) {
		return
	}

	// The rare path: read the request again rather than pay for carrying it
	// from Access on every request.
	method, err := k.RequestMethod()
	if err != nil || method == "OPTIONS" {
		return
	}
	headers, err := k.RequestHeaders()
	if err != nil {
		logger.Error("reading request headers", "err", err)
		return
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

	why := upstreamReason(status)
	wwwAuth := ""
	if status == 401 || status == 403 {
		// The upstream's own challenge wins: it may carry resource_metadata.
		wwwAuth, _ = k.ResponseHeader("WWW-Authenticate")
		if wwwAuth == "" {
			wwwAuth = p.cfg.Auth.WWWAuthenticate
		}
	}
	p.reply(k, &r, why, wwwAuth)
}
