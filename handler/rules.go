package handler

import (
	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/handler/rules"
	"github.com/mcp-relay/mcp-relay/kong"
)

// Access rules (config.tools, config.prompts, config.resources): a denied
// call never reaches the MCP server, and list answers never show what the
// caller may not use. A route without rules makes no call for them.

// forbidden is the reason a call denied by kind's rules is answered with.
func forbidden(kind *rules.Kind) reason {
	switch kind.List {
	case "prompts":
		return reasonPromptForbidden
	case "resources":
		return reasonResourceForbidden
	}
	return reasonToolForbidden
}

// callerOf reads who calls from the headers Kong's auth plugins set; groups
// are asked from Kong only when a rule with groups is reached.
func callerOf(k kong.PDK, headers map[string][]string) *rules.Caller {
	return &rules.Caller{
		ID: first(headers, hConsumerID), Username: first(headers, hConsumerName),
		Groups: func() []string {
			g, err := k.AuthenticatedGroups()
			if err != nil {
				logger.Error("reading kong.ctx.shared.authenticated_groups", "err", err)
			}
			return g
		},
	}
}

// denyCall answers a call the caller may not make (Access, after the
// anonymous check, before the header check and pinning) and reports
// whether it did. A batch is
// judged per element: if any element is denied, the batch is answered
// whole, denied elements with their reason and the others with
// batch_refused, so that nothing of it runs.
func (p *Plugin) denyCall(k kong.PDK, r *request) (exited bool) {
	if p.rules == nil {
		return false
	}
	if r.bodyUnread { // the body, not Mcp-Name, is what the server runs
		p.readBody(k, r)
	}
	// Judged on what the server will run, whatever the MCP markers: a body
	// the gateway cannot read (over envelope.max_body_bytes, invalid UTF-8
	// that Go's encoding/json would still decode) or that means two things
	// (duplicate members: the server takes the last) is refused.
	if r.rpc.Kind == envelope.Invalid || ambiguous(r.rpc) {
		logger.Info("body refused: access rules cannot judge it", "kind", r.rpc.Kind.String())
		p.reply(k, r, reasonUnjudgeable, "")
		return true
	}
	who := callerOf(k, r.headers)
	switch r.rpc.Kind {
	case envelope.Single:
		if kind := p.rules.ForCall(r.rpc.Method); kind != nil && !kind.Allows(who, r.rpc.Name) {
			logger.Info("call denied by access rules", "method", r.rpc.Method, "name", r.rpc.Name,
				"consumer", who.Username)
			p.reply(k, r, forbidden(kind), "")
			return true
		}
	case envelope.Batch:
		denied := false
		r.rpc.Elements(func(e envelope.Request) bool {
			kind := p.rules.ForCall(e.Method)
			denied = kind != nil && !kind.Allows(who, e.Name)
			return !denied
		})
		if denied {
			p.replyBatch(k, r, func(e envelope.Request) (reason, bool) {
				if kind := p.rules.ForCall(e.Method); kind != nil && !kind.Allows(who, e.Name) {
					return forbidden(kind), true
				}
				return reason{}, false
			})
			return true
		}
	}
	return false
}

// ambiguous reports a message, or a batch element, that the gateway and the
// server could read differently.
func ambiguous(rpc envelope.Request) bool {
	if rpc.Kind == envelope.Single {
		return rpc.Ambiguous
	}
	found := false
	rpc.Elements(func(e envelope.Request) bool {
		found = e.Ambiguous
		return !found
	})
	return found
}

// replyBatch answers every request element of a batch (2025-03-26, legacy
// only) with its own error: refused ones with their reason, the others with
// batch_refused, so that nothing of it runs.
func (p *Plugin) replyBatch(k kong.PDK, r *request, refused func(e envelope.Request) (reason, bool)) {
	body := make([]byte, 0, 256)
	n := 0
	r.rpc.Elements(func(e envelope.Request) bool {
		if e.IsNotification() || e.IsResponse() {
			return true
		}
		why := reasonBatchRefused
		if w, no := refused(e); no {
			why = w
		}
		if n == 0 {
			body = append(body, '[')
		} else {
			body = append(body, ',')
		}
		n++
		body, _ = envelope.Append(body, e, envelope.Error{Code: p.cfg.Envelope.AuthCode, Message: why.message,
			Data: envelope.Data{Status: why.status, Reason: why.name}})
		envelopes.WithLabelValues(why.name).Inc()
		return true
	})
	status := 403
	if n > 0 {
		body = append(body, ']')
		status = p.policyStatus(r, 403, "")
	}
	p.serializeFields(k, r, reasonBatchRefused.name)
	k.Exit(status, body, jsonOnly)
}

// filterList removes what the caller may not use from a buffered 2xx
// answer (Response phase) and reports whether it answered. The answer may
// be JSON (one message or a batch) or an SSE stream Kong buffered (see
// rules.Filter). The caller is the one Access named in the request's note.
// Cost: one call for the body, the exit when something is removed.
func (p *Plugin) filterList(k kong.PDK, status int, n note) bool {
	body, err := k.ServiceResponseBody()
	if err != nil {
		logger.Error("reading the upstream answer", "err", err)
		return false
	}
	f := rules.Filter{Rules: p.rules, Hidden: countHidden, Caller: func() *rules.Caller {
		return callerOf(k, map[string][]string{hConsumerID: {n.consumer}, hConsumerName: {n.username}})
	}}
	if p.pins != nil {
		hide, reject := p.judgeList(body)
		if reject {
			p.replyRequest(k, reasonStore)
			return true
		}
		f.HideTool = hide
	}
	out, changed := f.Body(body)
	if f.Unreadable {
		logger.Warn("list answer not readable as JSON or SSE: passed unfiltered (calls are still checked)")
	}
	if !changed {
		return false
	}
	// The upstream's headers stay (Content-Type, Mcp-Session-Id ...); Kong
	// sets Content-Length for the new body.
	k.Exit(status, out, nil)
	return true
}

// countHidden counts the entries access rules removed from a list answer.
func countHidden(list string, n int) {
	hiddenEntries.WithLabelValues(list).Add(float64(n))
}
