package handler

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestSetMethodHeaders(t *testing.T) {
	const on = `{"session":{"store":"off"},"upstream":{"set_method_headers":true}}`
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`
	tests := []struct {
		name    string
		config  string
		headers map[string][]string
		body    string
		want    map[string][]string // nil: no set_headers call
		reason  string              // the request is answered
	}{
		{name: "off: nothing", config: storeOff, headers: hdr("mcp-name", "other"), body: call},
		{name: "a tool call gets both", config: on, headers: hdr(), body: call,
			want: map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo"}}},
		{name: "a client's Mcp-Name is replaced", config: on, headers: hdr("mcp-name", "cheap_tool", "mcp-method", "tools/call"), body: call,
			want: map[string][]string{"Mcp-Name": {"echo"}}},
		{name: "two client values are replaced", config: on, headers: map[string][]string{"mcp-name": {"echo", "x"}, "mcp-method": {"tools/call"}}, body: call,
			want: map[string][]string{"Mcp-Name": {"echo"}}},
		{name: "already right: no call", config: on, headers: hdr("mcp-name", "echo", "mcp-method", "tools/call"), body: call},
		{name: "a list has no name: a client's is removed", config: on, headers: hdr("mcp-name", "echo"),
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
			want: map[string][]string{"Mcp-Method": {"tools/list"}, "Mcp-Name": {}}},
		{name: "prompts/get", config: on, headers: hdr(), body: `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}`,
			want: map[string][]string{"Mcp-Method": {"prompts/get"}, "Mcp-Name": {"p"}}},
		{name: "resources/read names its uri", config: on, headers: hdr(),
			body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b.txt"}}`,
			want: map[string][]string{"Mcp-Method": {"resources/read"}, "Mcp-Name": {"file:///a b.txt"}}},
		{name: "a name that is not plain ASCII travels in Base64", config: on, headers: hdr(),
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"héllo"}}`,
			want: map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?base64?aMOpbGxv?="}}},
		{name: "a notification", config: on, headers: hdr(), body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			want: map[string][]string{"Mcp-Method": {"notifications/initialized"}}},
		{name: "a client's answer carries neither", config: on, headers: hdr("mcp-method", "tools/call", "mcp-name", "echo"),
			body: `{"jsonrpc":"2.0","id":5,"result":{}}`,
			want: map[string][]string{"Mcp-Method": {}, "Mcp-Name": {}}},
		{name: "a batch carries neither", config: on, headers: hdr("mcp-name", "echo"),
			body: `[` + call + `]`, want: map[string][]string{"Mcp-Name": {}}},
		{name: "not MCP: a client's are removed", config: on, headers: map[string][]string{"mcp-name": {"echo"}, "content-type": {"text/plain"}},
			body: "hello", want: map[string][]string{"Mcp-Name": {}}},
		{name: "2026-07-28 keeps its own", config: on,
			headers: hdr("mcp-protocol-version", "2026-07-28", "mcp-method", "tools/call", "mcp-name", "echo"), body: call},
		{name: "a name spelled twice is refused", config: on, headers: hdr(),
			body:   `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"cheap","name":"echo"}}`,
			reason: "unverifiable_request"},
		{name: "an unreadable body is refused", config: on, headers: hdr("mcp-protocol-version", "2025-06-18"),
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call",`, reason: "unverifiable_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, tt.config)
			f := &fakeKong{method: "POST", headers: tt.headers, body: []byte(tt.body)}
			p.access(f)
			if tt.reason != "" {
				if env := f.exitJSON(t); env["error"].(map[string]any)["data"].(map[string]any)["reason"] != tt.reason {
					t.Errorf("answered %s", f.exitBody)
				}
				return
			}
			if f.exited {
				t.Fatalf("answered %d %s", f.exitStatus, f.exitBody)
			}
			n := strings.Count(strings.Join(f.calls, " "), "set_headers")
			if tt.want == nil {
				if n != 0 {
					t.Errorf("set_headers called: %v", f.optional.headersSet)
				}
				return
			}
			if n != 1 || !maps.EqualFunc(f.optional.headersSet, tt.want, slices.Equal) {
				t.Errorf("set_headers %d× %v, want %v", n, f.optional.headersSet, tt.want)
			}
		})
	}
}

// The headers cost one PDK call at most, and none when they are right.
func TestSetMethodHeadersCost(t *testing.T) {
	p := newPlugin(t, `{"session":{"store":"off"},"upstream":{"set_method_headers":true}}`)
	f := &fakeKong{method: "POST", headers: hdr("mcp-name", "x"),
		body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`)}
	p.access(f)
	if want := []string{"request.get_headers", "request.get_raw_body", "service.request.set_headers", "nginx.set_ctx"}; !slices.Equal(f.calls, want) {
		t.Errorf("calls %v, want %v", f.calls, want)
	}
}
