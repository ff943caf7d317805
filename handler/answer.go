package handler

import (
	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/kong"
)

// reason is one situation the plugin answers with an envelope. Auth reasons
// take their message from config; theirs holds the upstream's own reason for
// a 401 or 403, shown so that a refusal that is no auth decision is not
// disguised as one.
type reason struct {
	name    string // data.reason and the metrics label
	status  int    // the HTTP status the situation has
	code    int    // legacy-era JSON-RPC code (auth codes come from config)
	message string
	// policy: envelope.status decides the HTTP status (auth and upstream
	// failures); otherwise the status is the spec's and always kept.
	policy bool
}

// Every situation the plugin answers with an envelope. A zero code means
// the era's configured auth code (envelope.auth_code, modern_auth_code),
// an empty message the configured auth message ("Forbidden" for 403).
var (
	// Authentication: Kong's anonymous consumer, or the upstream's 401/403.
	reasonUnauthorized = reason{name: "unauthorized", status: 401, policy: true}
	reasonForbidden    = reason{name: "forbidden", status: 403, policy: true}

	// Access rules (rules.go).
	reasonToolForbidden     = reason{name: "tool_forbidden", status: 403, message: "Tool not allowed", policy: true}
	reasonPromptForbidden   = reason{name: "prompt_forbidden", status: 403, message: "Prompt not allowed", policy: true}
	reasonResourceForbidden = reason{name: "resource_forbidden", status: 403, message: "Resource not allowed", policy: true}
	reasonBatchRefused      = reason{name: "batch_refused", status: 403,
		message: "Batch refused: it holds a call not allowed", policy: true}
	// Tool pinning (toolpin.go).
	reasonToolNotApproved = reason{name: "tool_not_approved", status: 403,
		message: "Tool not approved: its definition changed or is new, and awaits approval by the gateway's operator", policy: true}
	reasonUnjudgeable = reason{name: "unverifiable_request", status: 400, code: envelope.CodeInvalidRequest,
		message: "Request body cannot be checked: unreadable, or a member is spelled twice"}

	// The request itself.
	reasonOrigin = reason{name: "origin_forbidden", status: 403, code: envelope.CodeInvalidRequest,
		message: "Forbidden: Origin not allowed"}
	reasonBadSession = reason{name: "invalid_session_id", status: 400, code: envelope.CodeInvalidRequest,
		message: "Invalid Mcp-Session-Id"}
	reasonMismatch = reason{name: "header_mismatch", status: 400, code: envelope.CodeHeaderMismatch,
		message: "Mcp-Method or Mcp-Name header does not match the body"}
	reasonNoSession = reason{name: "session_not_found", status: 404, code: envelope.CodeSessionNotFound,
		message: "Session not found"}

	// The gateway and the upstream.
	reasonUpstreamError = reason{name: "upstream_error", status: 502, code: envelope.CodeGateway,
		message: "Upstream MCP server failed", policy: true}
	reasonTimeout = reason{name: "upstream_timeout", status: 504, code: envelope.CodeGateway,
		message: "Upstream MCP server timed out", policy: true}
	reasonStore = reason{name: "store_unavailable", status: 503, code: envelope.CodeGateway,
		message: "Session store unavailable"}
	// A recovery through Kong's balancer (reroute.go) that cannot answer
	// the client's own request: the session stands, the request may be
	// sent again.
	reasonInterrupted = reason{name: "recovery_interrupted", status: 503, code: envelope.CodeGateway,
		message: "Session recovery interrupted: send the request again"}
	reasonInternal = reason{name: "internal_error", status: 500, code: envelope.CodeInternalError,
		message: "Internal error"}
	// The message names the refused fields (configerr.go).
	reasonConfigInvalid = reason{name: "config_invalid", status: 500, code: envelope.CodeInternalError}
)

// upstreamReason names a rewritten upstream status.
func upstreamReason(status int) reason {
	var r reason
	switch status {
	case 401:
		r = reasonUnauthorized
	case 403:
		r = reasonForbidden
	case 504:
		r = reasonTimeout
	default:
		r = reasonUpstreamError
	}
	r.status = status
	return r
}

var jsonOnly = map[string][]string{"Content-Type": {"application/json"}}

// reply ends the request with the envelope answering r for why. wwwAuth is
// the WWW-Authenticate value to send (auth reasons only).
func (p *Plugin) reply(k kong.PDK, r *request, why reason, wwwAuth string) {
	p.replyDetail(k, r, why, wwwAuth, "")
}

// replyDetail is reply with an upstream refusal's own short reason
// (upstream.go) appended to an auth message, so the refusal is not
// disguised as the gateway's.
func (p *Plugin) replyDetail(k kong.PDK, r *request, why reason, wwwAuth, detail string) {
	e := envelope.Error{Code: why.code, Message: why.message, Data: envelope.Data{
		Status: why.status, Reason: why.name, WWWAuthenticate: wwwAuth,
	}}
	if why.code == 0 { // auth and access-rule reasons: the era's auth code
		e.Code, e.Message = p.cfg.Envelope.AuthCode, p.cfg.Envelope.AuthMessage
		if r.modern {
			e.Code = p.cfg.Envelope.ModernAuthCode
		}
		if why.status == 403 {
			e.Message = "Forbidden"
		}
		if why.message != "" {
			e.Message = why.message
		}
		if detail != "" {
			e.Message += " (MCP server: " + detail + ")"
		}
	} else if r.modern && e.Code == envelope.CodeGateway {
		// 2026-07-28 clients get the error code their specification
		// defines for a failure that is not theirs: JSON-RPC's own.
		e.Code = envelope.CodeInternalError
	}

	status := why.status
	if why.policy {
		status = p.policyStatus(r, why.status, wwwAuth)
	}
	body, ok := envelope.Append(make([]byte, 0, 256), r.rpc, e)
	if !ok {
		body = nil // a batch of notifications: nothing to answer but the status
		if status == 200 {
			status = why.status
		}
	}
	headers := jsonOnly
	if wwwAuth != "" {
		headers = map[string][]string{"Content-Type": {"application/json"}, "WWW-Authenticate": {wwwAuth}}
	}
	envelopes.WithLabelValues(why.name).Inc()
	p.serializeFields(k, r, why.name)
	k.Exit(status, body, headers)
}

// policyStatus applies envelope.status. 200 lets strict legacy clients show
// the JSON-RPC error; keeping 401/403 keeps OAuth discovery working.
// An envelope without an id is never sent with 200.
func (p *Plugin) policyStatus(r *request, status int, wwwAuth string) int {
	if r.idless() {
		return status
	}
	switch p.settings.envelopeStatus {
	case statusKeep:
		return status
	case status200:
		return 200
	}
	if r.modern || containsFold(wwwAuth, "resource_metadata") {
		return status
	}
	return 200
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}
