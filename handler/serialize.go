package handler

import (
	"sync"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/kong"
)

// serializeFields adds the `mcp` object to kong.log.serialize() when
// config.log.serialize is on (one PDK call; none when off), so that Kong's
// logging plugins see what the request was. reason names the answer the
// plugin wrote ("" when the request went upstream). Never the session id:
// its fingerprint.
func (p *Plugin) serializeFields(k kong.PDK, r *request, reason string) {
	if !p.cfg.Log.Serialize || r == nil || !r.mcp {
		return
	}
	v := map[string]any{}
	method := r.rpc.Method
	if r.rpc.Kind == envelope.Batch {
		method = "batch"
	} else if method == "" {
		method = first(r.headers, hMethod)
	}
	if method == "" && r.method != "" {
		method = r.method // a session's GET stream or DELETE
	}
	if method != "" {
		v["method"] = method
	}
	if method == "tools/call" && r.rpc.Name != "" {
		v["tool"] = r.rpc.Name
	}
	if pv := first(r.headers, hProtocolVersion); pv != "" {
		v["protocol"] = pv
	}
	if id := first(r.headers, hSessionID); id != "" {
		v["session"] = fingerprint(id)
	}
	if reason != "" {
		v["reason"] = reason
	}
	if err := k.SetSerializeValue("mcp", v); err != nil {
		logger.Error("kong.log.set_serialize_value failed", "err", err)
	}
}

// specMethods are the JSON-RPC methods of the MCP specification (2024-11-05
// to 2026-07-28) a client sends, or answers with (notifications).
var specMethods = func() map[string]bool {
	m := map[string]bool{}
	for _, s := range []string{
		"initialize", "ping", "server/discover",
		"tools/list", "tools/call", "prompts/list", "prompts/get",
		"resources/list", "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe",
		"completion/complete", "logging/setLevel",
		"tasks/get", "tasks/list", "tasks/result", "tasks/cancel",
		"notifications/initialized", "notifications/cancelled", "notifications/progress",
		"notifications/roots/list_changed", "notifications/tasks/status",
	} {
		m[s] = true
	}
	return m
}()

// toolLabels is the process's set of tool names used as labels: tools
// beyond the first config.metrics.tool_labels names count as "other".
var toolLabels struct {
	sync.Mutex
	seen map[string]bool
}

func toolLabel(name string, limit int) string {
	if name == "" {
		return ""
	}
	toolLabels.Lock()
	defer toolLabels.Unlock()
	if toolLabels.seen[name] {
		return name
	}
	if len(toolLabels.seen) >= limit {
		return "other"
	}
	if toolLabels.seen == nil {
		toolLabels.seen = map[string]bool{}
	}
	toolLabels.seen[name] = true
	return name
}

// countRequest counts an MCP request by method (and tool): no PDK call.
// Batches count each element.
func (p *Plugin) countRequest(r *request) {
	if !r.mcp {
		return
	}
	one := func(method, name string) {
		if method == "" {
			return
		}
		tool := ""
		if !specMethods[method] {
			method = "other"
		} else if method == "tools/call" {
			tool = toolLabel(name, p.cfg.Metrics.ToolLabels)
		}
		requestsByMethod.WithLabelValues(method, tool).Inc()
	}
	switch r.rpc.Kind {
	case envelope.Single:
		if !r.rpc.IsResponse() {
			one(r.rpc.Method, r.rpc.Name)
		}
	case envelope.Batch:
		r.rpc.Elements(func(e envelope.Request) bool {
			if e.Kind == envelope.Single && !e.IsResponse() {
				one(e.Method, e.Name)
			}
			return true
		})
	default:
		if r.bodyUnread {
			one(first(r.headers, hMethod), first(r.headers, hName))
		}
	}
}
