package handler

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
)

// benchKong answers PDK calls from fixed values without recording them, so
// the benchmarks measure the plugin's own logic (the round trips themselves
// are counted by the Kong stand-in).
type benchKong struct {
	method  string
	headers map[string][]string
	body    []byte
	status  int
	log     []byte
}

func (b *benchKong) RequestMethod() (string, error)               { return b.method, nil }
func (b *benchKong) RequestHeaders() (map[string][]string, error) { return b.headers, nil }
func (b *benchKong) RequestBody() ([]byte, error)                 { return b.body, nil }
func (b *benchKong) ClearBuffering() error                        { return nil }
func (b *benchKong) SetTarget(string, int) error                  { return nil }
func (b *benchKong) SetUpstreamHeader(string, string) error       { return nil }
func (b *benchKong) Exit(int, []byte, map[string][]string)        {}
func (b *benchKong) NginxVar(string) (string, error)              { return "", nil }
func (b *benchKong) ResponseStatus() (int, error)                 { return b.status, nil }
func (b *benchKong) ResponseHeader(string) (string, error)        { return "", nil }
func (b *benchKong) UpstreamBody() ([]byte, error)                { return nil, nil }
func (b *benchKong) Serialize() ([]byte, error)                   { return b.log, nil }
func (b *benchKong) SetRequestNote(string, string) error          { return nil }
func (b *benchKong) RequestNote(string) (string, error)           { return "", nil }
func (b *benchKong) Route() (kong.Route, error)                   { return kong.Route{}, nil }

func BenchmarkAccess(b *testing.B) {
	mem := session.NewMemory(session.MemoryOptions{TTL: time.Hour, MaxSessions: 1000})
	defer mem.Close()
	p := newPlugin(b, `{"auth":{"anonymous":"anonymous"}}`)
	p.store = mem
	// The pinned replica listens on loopback, so the replica probes the
	// pinned path starts find it up (and touch nothing else).
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	learn(b, mem, "sess-hot", srv.Listener.Addr().String(), "alice")

	kinds := []struct {
		name string
		k    *benchKong
	}{
		{"pinned_legacy_post", &benchKong{method: "POST", body: []byte(callBody),
			headers: hdr("mcp-session-id", "sess-hot", "x-consumer-id", "alice", "mcp-protocol-version", "2025-06-18")}},
		{"initialize", &benchKong{method: "POST", headers: hdr("x-consumer-id", "alice"),
			body: []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`)}},
		{"stateless_2026_post", &benchKong{method: "POST", body: []byte(callBody),
			headers: hdr("mcp-protocol-version", "2026-07-28", "mcp-method", "tools/call", "mcp-name", "echo")}},
		{"get_stream_pinned", &benchKong{method: "GET",
			headers: map[string][]string{"accept": {"text/event-stream"}, "mcp-session-id": {"sess-hot"}, "x-consumer-id": {"alice"}}}},
		{"non_mcp_get", &benchKong{method: "GET", headers: map[string][]string{"accept": {"text/html"}}}},
		{"anonymous_envelope", &benchKong{method: "POST", body: []byte(callBody),
			headers: hdr("x-anonymous-consumer", "true", "x-consumer-username", "anonymous")}},
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.access(k.k)
			}
		})
	}
}

func BenchmarkResponse(b *testing.B) {
	p := newPlugin(b, storeOff)
	b.Run("pass_200", func(b *testing.B) {
		k := &benchKong{status: 200}
		b.ReportAllocs()
		for b.Loop() {
			p.response(k)
		}
	})
	b.Run("rewrite_401", func(b *testing.B) {
		k := &benchKong{status: 401, method: "POST", headers: hdr(), body: []byte(callBody)}
		b.ReportAllocs()
		for b.Loop() {
			p.response(k)
		}
	})
}

func BenchmarkLog(b *testing.B) {
	mem := session.NewMemory(session.MemoryOptions{TTL: time.Hour, MaxSessions: 1 << 20})
	defer mem.Close()
	p := newPlugin(b, `{}`)
	p.store = mem
	b.Run("pinned_post_200", func(b *testing.B) { // nothing to learn: no PDK call
		p.hints = newLearnHints()
		k := &benchKong{log: []byte(serialized("POST", 200, "sess-hot", "", "alice", "10.0.0.7", 8080))}
		b.ReportAllocs()
		for b.Loop() {
			p.log(k)
		}
	})
	b.Run("learn_initialize", func(b *testing.B) {
		p.hints = newLearnHints()
		k := &benchKong{log: []byte(serialized("POST", 200, "", "new-session-id", "alice", "10.0.0.7", 8080))}
		b.ReportAllocs()
		for b.Loop() {
			p.hints.add("new-session-id", time.Now()) // what Response leaves for this Log
			p.log(k)
		}
	})
}

// TestPinnedAccessAllocatesNothing: the healthy pinned path (lookup,
// replica check, set_target, the balanced Host) makes no heap allocation,
// so the hot path costs the garbage collector nothing. (AllocsPerRun counts
// allocations, not time.)
func TestPinnedAccessAllocatesNothing(t *testing.T) {
	mem := session.NewMemory(session.MemoryOptions{TTL: time.Hour, MaxSessions: 1000})
	defer mem.Close()
	p := newPlugin(t, `{"auth":{"anonymous":"anonymous"}}`)
	p.store = mem
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	learn(t, mem, "sess-hot", srv.Listener.Addr().String(), "alice")
	for _, k := range []struct {
		name string
		k    *benchKong
	}{
		{"POST", &benchKong{method: "POST", body: []byte(callBody),
			headers: hdr("mcp-session-id", "sess-hot", "x-consumer-id", "alice", "mcp-protocol-version", "2025-06-18")}},
		{"GET stream", &benchKong{method: "GET",
			headers: map[string][]string{"accept": {"text/event-stream"}, "mcp-session-id": {"sess-hot"}, "x-consumer-id": {"alice"}}}},
	} {
		p.access(k.k) // the first pin starts the replica watch
		if n := testing.AllocsPerRun(100, func() { p.access(k.k) }); n != 0 {
			t.Errorf("pinned %s: %.1f allocations per Access, want 0", k.name, n)
		}
	}
}
