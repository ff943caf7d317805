package handler

import (
	"slices"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/handler/rules"
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/schema"
)

// initAuthz prepares access rules and the protected-resource metadata. List
// methods of primitives with rules are always buffered: their answers are
// filtered in the Response phase.
func (p *Plugin) initAuthz(cfg *schema.Config) error {
	p.rules = rules.New(cfg)
	if p.rules != nil {
		for _, m := range p.rules.ListMethods() {
			if !slices.Contains(p.bufferMethods, m) {
				p.bufferMethods = append(p.bufferMethods, m)
			}
		}
	}
	md, err := newResourceMetadata(cfg.Auth.ResourceMetadata)
	if err != nil {
		return err
	}
	p.metadata = md
	return nil
}

// authzAccess is Access's hook for access rules, after the header check and
// before pinning: it reports whether it answered.
func (p *Plugin) authzAccess(k kong.PDK, r *request) (exited bool) {
	return (p.rules != nil && p.denyCall(k, r)) || p.refuseUnapproved(k, r)
}

// judgesList tells whether the answer to r is a list that access rules or
// tool pinning judge in the Response phase (Access then leaves a note
// naming the caller, so Response needs neither the request headers nor a
// guess from the answer).
func (p *Plugin) judgesList(r *request) bool {
	if p.rules == nil && p.pins == nil {
		return false
	}
	method := r.rpc.Method
	switch {
	case r.bodyUnread:
		method = first(r.headers, hMethod)
	case r.rpc.Kind == envelope.Batch:
		return p.batchHasFilteredList(r)
	case r.rpc.Kind != envelope.Single:
		return false
	}
	return (p.pins != nil && method == "tools/list") ||
		(p.rules != nil && slices.Contains(p.rules.ListMethods(), method))
}

// batchHasFilteredList: a batch holding a list method whose answers are
// filtered is buffered whole, or its list answer would stream unfiltered
// (2025-03-26 batches only; its tool calls' SSE then arrive at the end).
func (p *Plugin) batchHasFilteredList(r *request) bool {
	if p.rules == nil && p.pins == nil {
		return false
	}
	var lists []string
	if p.rules != nil {
		lists = p.rules.ListMethods()
	}
	found := false
	r.rpc.Elements(func(e envelope.Request) bool {
		found = slices.Contains(lists, e.Method) || (p.pins != nil && e.Method == "tools/list")
		return !found
	})
	return found
}
