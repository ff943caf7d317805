package handler

import (
	"fmt"
	"runtime/debug"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/kong"
)

// catchPanic turns a panic into a logged error and, where a client is
// still waiting, a 500 envelope (echoing the request's id when Access had
// read it), so the process serving the node lives on.
func (p *Plugin) catchPanic(k kong.PDK, phase string, r *request) {
	v := recover()
	if v == nil {
		return
	}
	panics.Inc()
	logger.Error("recovered from panic", "phase", phase, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	if phase == "log" {
		return
	}
	defer func() { _ = recover() }() // the connection may be gone
	envelopes.WithLabelValues(reasonInternal.name).Inc()
	k.Exit(500, internalEnvelope(r), jsonOnly)
}

// internalEnvelope answers a request whose handler panicked. The request
// may be what caused the panic: on a second one, answer with id null.
func internalEnvelope(r *request) (body []byte) {
	e := envelope.Error{Code: envelope.CodeInternalError, Message: reasonInternal.message,
		Data: envelope.Data{Status: 500, Reason: reasonInternal.name}}
	defer func() {
		if recover() != nil || len(body) == 0 {
			body, _ = envelope.Append(nil, envelope.Request{}, e)
		}
	}()
	if r != nil {
		body, _ = envelope.Append(nil, r.rpc, e)
	}
	return body
}
