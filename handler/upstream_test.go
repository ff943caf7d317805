package handler

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestUpstreamMessage(t *testing.T) {
	long := strings.Repeat("é", 300)
	tests := []struct{ name, body, want string }{
		{"JSON-RPC error", `{"jsonrpc":"2.0","error":{"code":-32000,"message":"Invalid Host header: 127.0.0.1"},"id":null}`, "Invalid Host header: 127.0.0.1"},
		{"error string", `{"error":"invalid_token","error_description":"expired"}`, "invalid_token"},
		{"message", `{"message":"Forbidden by policy"}`, "Forbidden by policy"},
		{"error_description", `{"error_description":"token expired"}`, "token expired"},
		{"JSON without a reason", `{"ok":false}`, ""},
		{"plain text, control characters", "Invalid Origin\r\nX-Evil: 1\x00\t end", "Invalid Origin X-Evil: 1 end"},
		{"HTML title", "<html><head><title>403 Forbidden</title></head><body>nginx</body></html>", "403 Forbidden"},
		{"HTML without title", "<html><body>no</body></html>", ""},
		{"empty", "  ", ""},
		{"Unauthorized is lowered (mcp-remote)", `{"error":"Unauthorized"}`, "unauthorized"},
		{"invalid UTF-8 dropped", "bad \xff\xfe byte", "bad byte"},
		{"bounded at a rune boundary", long, strings.Repeat("é", maxUpstreamDetail/2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := upstreamMessage([]byte(tt.body))
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if len(got) > maxUpstreamDetail || !utf8.ValidString(got) {
				t.Errorf("unbounded or invalid: %q", got)
			}
		})
	}
}

func TestUpstream403CarriesItsReason(t *testing.T) {
	p := newPlugin(t, storeOff)
	f := &fakeKong{status: 403, method: "POST", headers: hdr(),
		body:         []byte(`{"jsonrpc":"2.0","id":"abc","method":"initialize"}`),
		upstreamBody: []byte(`{"jsonrpc":"2.0","error":{"code":-32000,"message":"Invalid Host header: 127.0.0.1"},"id":null}`)}
	p.response(f)
	want := `{"jsonrpc":"2.0","error":{"code":-32001,"message":"Forbidden (MCP server: Invalid Host header: 127.0.0.1)","data":{"status":403,"reason":"forbidden"}},"id":"abc"}`
	if !f.exited || string(f.exitBody) != want {
		t.Errorf("got %d %s\nwant %s", f.exitStatus, f.exitBody, want)
	}
}

func FuzzUpstreamMessage(f *testing.F) {
	f.Add([]byte(`{"error":{"message":"x"}}`))
	f.Add([]byte("<title>a</title>"))
	f.Add([]byte("plain\x00text"))
	f.Fuzz(func(t *testing.T, body []byte) {
		got := upstreamMessage(body)
		if len(got) > maxUpstreamDetail || !utf8.ValidString(got) || strings.Contains(got, "Unauthorized") {
			t.Fatalf("%q", got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", got)
			}
		}
	})
}
