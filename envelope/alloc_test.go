package envelope_test

import (
	"testing"

	"github.com/mcp-relay/mcp-relay/envelope"
)

// The plugin reads every MCP request body: reading and answering must not feed
// the garbage collector. (AllocsPerRun counts heap allocations, not time.)
func TestAllocs(t *testing.T) {
	single := []byte(toolsCall)
	batch := []byte(`[` + toolsCall + `,{"jsonrpc":"2.0","method":"notifications/progress"},{"jsonrpc":"2.0","id":"b","method":"ping"}]`)
	invalid := []byte("nope")
	buf := make([]byte, 0, 4096)
	tests := []struct {
		name string
		fn   func()
	}{
		{"Parse single", func() { _ = envelope.Parse(single, 1<<20) }},
		{"Parse batch and walk elements", func() {
			envelope.Parse(batch, 0).Elements(func(e envelope.Request) bool { return e.Method != "" })
		}},
		{"Append single", func() {
			buf, _ = envelope.Append(buf[:0], envelope.Parse(single, 0), errUnauthorized)
		}},
		{"Append batch", func() {
			buf, _ = envelope.Append(buf[:0], envelope.Parse(batch, 0), errUpstream)
		}},
		{"Append invalid", func() {
			buf, _ = envelope.Append(buf[:0], envelope.Parse(invalid, 0), errUpstream)
		}},
		{"MatchesHeaders plain", func() {
			_ = envelope.MatchesHeaders(envelope.Parse(single, 0), "tools/call", "echo")
		}},
		{"MatchesHeaders base64", func() {
			_ = envelope.MatchesHeaders(envelope.Parse(single, 0), "tools/call", "=?base64?ZWNobw==?=")
		}},
		{"DecodeHeader plain", func() { _, _ = envelope.DecodeHeader("tools/call") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
				t.Errorf("%v allocations per run, want 0", n)
			}
		})
	}
	// Check the work was real, not optimised away.
	if r := envelope.Parse(single, 1<<20); r.ID != "7" || r.Name != "echo" {
		t.Fatalf("Parse = %+v", fields(r))
	}
}
