package handler

import (
	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/kong"
)

// MCP keys for Kong's own plugins (config.upstream.set_method_headers): a
// request that is not 2026-07-28 gets the Mcp-Method and Mcp-Name headers a
// 2026-07-28 request carries, taken from its body, in place of any the
// client sent, so that the plugins running after mcp-relay (priority 1000)
// see the method and the tool: rate-limiting with limit_by header (910),
// the logging plugins, request-termination. kong.service.request.set_headers
// writes the request's own headers (ngx.req.set_header), which
// kong.request.get_header reads. Kong chose the route before any plugin
// ran: routes cannot match on them. A 2026-07-28 request carries its own,
// checked against its body (upstream.check_method_headers).

// methodHeaderNames are the headers, as set and as Kong lists them.
var methodHeaderNames = [...]struct{ set, get string }{{"Mcp-Method", hMethod}, {"Mcp-Name", hName}}

// methodHeadersUnreadable answers an MCP request whose body cannot give
// its method and name (unreadable, over envelope.max_body_bytes, or a
// member spelled twice, which the server would read otherwise) and reports
// whether it did: a limit keyed on the tool must not be escaped that way.
func (p *Plugin) methodHeadersUnreadable(k kong.PDK, r *request) (exited bool) {
	if !p.cfg.Upstream.SetMethodHeaders || r.modern || !r.mcp {
		return false
	}
	if r.rpc.Kind == envelope.Invalid || (r.rpc.Kind == envelope.Single && r.rpc.Ambiguous) {
		logger.Info("body refused: its method and name cannot be read for Kong's plugins", "kind", r.rpc.Kind.String())
		p.reply(k, r, reasonUnjudgeable, "")
		return true
	}
	return false
}

// setMethodHeaders gives a request the Mcp-Method and Mcp-Name of its body,
// and removes those a client sent that the body does not back: one PDK
// call when the request's headers differ, none when they already match.
// A batch (2025-03-26) carries neither.
func (p *Plugin) setMethodHeaders(k kong.PDK, r *request) {
	if !p.cfg.Upstream.SetMethodHeaders || r.modern {
		return
	}
	var want [len(methodHeaderNames)]string
	if r.mcp && r.rpc.Kind == envelope.Single {
		if r.rpc.Method != "" {
			want[0] = envelope.EncodeHeader(r.rpc.Method)
		}
		if envelope.NeedsName(r.rpc.Method) && r.rpc.Name != "" {
			want[1] = envelope.EncodeHeader(r.rpc.Name)
		}
	}
	var set map[string][]string
	for i, h := range methodHeaderNames {
		cur := r.headers[h.get]
		if (want[i] == "" && len(cur) == 0) || (len(cur) == 1 && cur[0] == want[i]) {
			continue
		}
		if set == nil {
			set = make(map[string][]string, len(methodHeaderNames))
		}
		set[h.set] = []string{} // none: removed
		if want[i] != "" {
			set[h.set] = []string{want[i]}
		}
	}
	if set == nil {
		return
	}
	if err := k.SetUpstreamHeaders(set); err != nil {
		logger.Error("kong.service.request.set_headers failed", "err", err)
	}
}
