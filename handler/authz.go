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

// authzResponse is Response's hook: list answers are filtered (access
// rules, tool pinning) before any other Response work, and it reports
// whether it answered. The request headers it had to read are handed on,
// so Response does not ask twice.
func (p *Plugin) authzResponse(k kong.PDK, status int) (read readHeaders, exited bool) {
	if (p.rules == nil && p.pins == nil) || status/100 != 2 {
		return nil, false
	}
	if p.store != nil {
		// Response reads the request headers anyway while a store is on:
		// read them first, and skip the answer's body for a request without
		// one (a DELETE), whose answer is no list.
		headers, err := k.RequestHeaders()
		if err != nil {
			logger.Error("reading request headers", "err", err)
			return nil, false
		}
		read = headers
		if r := newRequest(headers); !r.mayHaveBody() {
			return read, false
		}
	}
	return p.filterList(k, status, read)
}

// readHeaders are request headers a hook already read (nil: not read).
type readHeaders map[string][]string

func (h readHeaders) headers(k kong.PDK) (map[string][]string, error) {
	if h != nil {
		return h, nil
	}
	return k.RequestHeaders()
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
