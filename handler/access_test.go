package handler

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/session"
)

const (
	legacyAccept = "application/json, text/event-stream"
	storeOff     = `{"session":{"store":"off"}}`
)

func hdr(kv ...string) map[string][]string {
	h := map[string][]string{"accept": {legacyAccept}, "content-type": {"application/json"}}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

func TestAccessAnswers(t *testing.T) {
	tests := []struct {
		name       string
		config     string
		config2    string
		method     string
		headers    map[string][]string
		body       string
		wantStatus int    // 0: no exit
		wantID     string // raw JSON id expected in the envelope
		wantCode   float64
		wantStream bool // buffered_proxying cleared
		wantCalls  int
	}{
		{name: "anonymous numeric id gets 200 envelope", config: storeOff, method: "POST",
			headers:    hdr("x-anonymous-consumer", "true", "x-consumer-id", "anon-id"),
			body:       `{"jsonrpc":"2.0","id":7,"method":"initialize","params":{}}`,
			wantStatus: 200, wantID: "7", wantCode: -32001, wantCalls: 3},
		{name: "anonymous string id echoed", config: storeOff, method: "POST",
			headers:    hdr("x-consumer-username", "anonymous"),
			body:       `{"jsonrpc":"2.0","id":"req-1","method":"tools/call","params":{"name":"x"}}`,
			config2:    `{"auth":{"anonymous":"anonymous"},"session":{"store":"off"}}`,
			wantStatus: 200, wantID: `"req-1"`, wantCode: -32001, wantCalls: 3},
		{name: "anonymous with resource_metadata keeps 401", method: "POST",
			config:     `{"auth":{"www_authenticate":"Bearer resource_metadata=\"https://as.example/.well-known/oauth-protected-resource\""},"session":{"store":"off"}}`,
			headers:    hdr("x-anonymous-consumer", "true"),
			body:       `{"jsonrpc":"2.0","id":1,"method":"initialize"}`,
			wantStatus: 401, wantID: "1", wantCode: -32001, wantCalls: 3},
		{name: "anonymous 2026-07-28 keeps 401 with modern code", config: storeOff, method: "POST",
			headers:    hdr("x-anonymous-consumer", "true", "mcp-protocol-version", "2026-07-28", "mcp-method", "tools/list"),
			body:       `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`,
			wantStatus: 401, wantID: "3", wantCode: -31001, wantCalls: 3},
		{name: "anonymous notification is never 200", config: storeOff, method: "POST",
			headers:    hdr("x-anonymous-consumer", "true"),
			body:       `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			wantStatus: 401, wantID: "null", wantCode: -32001, wantCalls: 3},
		{name: "anonymous keep mode", method: "POST",
			config:     `{"envelope":{"status":"keep"},"session":{"store":"off"}}`,
			headers:    hdr("x-anonymous-consumer", "true"),
			body:       `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			wantStatus: 401, wantID: "1", wantCode: -32001, wantCalls: 3},
		{name: "anonymous GET stream gets 401 envelope with null id", config: storeOff, method: "GET",
			headers:    map[string][]string{"accept": {"text/event-stream"}, "x-anonymous-consumer": {"true"}},
			wantStatus: 401, wantID: "null", wantCode: -32001, wantCalls: 2},
		{name: "preflight passes untouched even anonymous", config: storeOff, method: "OPTIONS",
			headers:    map[string][]string{"access-control-request-method": {"POST"}, "x-anonymous-consumer": {"true"}},
			wantStream: true, wantCalls: 3},
		{name: "a preflight header on a POST does not skip the auth check", config: storeOff, method: "POST",
			headers:    hdr("access-control-request-method", "POST", "x-anonymous-consumer", "true"),
			body:       `{"jsonrpc":"2.0","id":5,"method":"tools/call"}`,
			wantStatus: 200, wantID: "5", wantCode: -32001, wantCalls: 3},
		{name: "non-MCP request passes", config: storeOff, method: "GET",
			headers: map[string][]string{"accept": {"text/html"}}, wantStream: true, wantCalls: 2},
		{name: "tools/call streams", config: storeOff, method: "POST",
			headers: hdr(), body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`,
			wantStream: true, wantCalls: 3},
		{name: "tools/list stays buffered for rewrites", config: storeOff, method: "POST",
			headers: hdr(), body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, wantCalls: 2},
		{name: "batch of buffered methods stays buffered", config: storeOff, method: "POST",
			headers: hdr(), body: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`,
			wantCalls: 2},
		{name: "batch with a tools/call streams", config: storeOff, method: "POST",
			headers: hdr(), body: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call"}]`,
			wantStream: true, wantCalls: 3},
		{name: "modern header mismatch is 400 -32020", config: storeOff, method: "POST",
			headers:    hdr("mcp-protocol-version", "2026-07-28", "mcp-method", "tools/list"),
			body:       `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x"}}`,
			wantStatus: 400, wantID: "9", wantCode: -32020, wantCalls: 3},
		{name: "modern without the header check: two calls, body unread", method: "POST",
			config:  `{"upstream":{"check_method_headers":false},"session":{"store":"off"}}`,
			headers: hdr("mcp-protocol-version", "2026-07-28", "mcp-method", "tools/call", "mcp-name", "x"),
			body:    `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x"}}`, wantStream: true, wantCalls: 2},
		{name: "modern without the header check buffers by Mcp-Method", method: "POST",
			config:  `{"upstream":{"check_method_headers":false},"session":{"store":"off"}}`,
			headers: hdr("mcp-protocol-version", "2026-07-28", "mcp-method", "tools/list"),
			body:    `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`, wantCalls: 1},
		{name: "modern without the header check lets a mismatch pass", method: "POST",
			config:  `{"upstream":{"check_method_headers":false},"session":{"store":"off"}}`,
			headers: hdr("mcp-protocol-version", "2026-07-28", "mcp-method", "tools/list"),
			body:    `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x"}}`, wantCalls: 1},
		{name: "modern anonymous without the header check still echoes the id", method: "POST",
			config:     `{"upstream":{"check_method_headers":false},"session":{"store":"off"}}`,
			headers:    hdr("x-anonymous-consumer", "true", "mcp-protocol-version", "2026-07-28", "mcp-method", "tools/list"),
			body:       `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`,
			wantStatus: 401, wantID: "3", wantCode: -31001, wantCalls: 3},
		{name: "modern matching headers stream", config: storeOff, method: "POST",
			headers:    hdr("mcp-protocol-version", "2026-07-28", "mcp-method", "tools/call", "mcp-name", "x"),
			body:       `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x"}}`,
			wantStream: true, wantCalls: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.config
			if tt.config2 != "" {
				cfg = tt.config2
			}
			p := newPlugin(t, cfg)
			f := &fakeKong{method: tt.method, headers: tt.headers, body: []byte(tt.body)}
			p.access(f)
			if len(f.calls) != tt.wantCalls {
				t.Errorf("PDK calls = %d %v, want %d", len(f.calls), f.calls, tt.wantCalls)
			}
			if f.cleared != tt.wantStream {
				t.Errorf("buffering cleared = %v, want %v", f.cleared, tt.wantStream)
			}
			if tt.wantStatus == 0 {
				if f.exited {
					t.Fatalf("unexpected answer %d %s", f.exitStatus, f.exitBody)
				}
				return
			}
			if f.exitStatus != tt.wantStatus {
				t.Errorf("status = %d, want %d (%s)", f.exitStatus, tt.wantStatus, f.exitBody)
			}
			env := f.exitJSON(t)
			if !strings.Contains(string(f.exitBody), `"id":`+tt.wantID) {
				t.Errorf("id not echoed as %s: %s", tt.wantID, f.exitBody)
			}
			if code := env["error"].(map[string]any)["code"].(float64); code != tt.wantCode {
				t.Errorf("code = %v, want %v", code, tt.wantCode)
			}
			if ct := f.exitHeaders["Content-Type"]; !slices.Equal(ct, []string{"application/json"}) {
				t.Errorf("Content-Type = %v", ct)
			}
		})
	}
}

func TestAccessAnonymousNonMCPGetsPlain401(t *testing.T) {
	p := newPlugin(t, storeOff)
	f := &fakeKong{method: "GET", headers: map[string][]string{"x-anonymous-consumer": {"true"}}}
	p.access(f)
	if !f.exited || f.exitStatus != 401 || string(f.exitBody) != `{"message":"Unauthorized"}` {
		t.Fatalf("got %v %d %s", f.exited, f.exitStatus, f.exitBody)
	}
}

func TestAccessPanicEchoesTheID(t *testing.T) {
	p := newPlugin(t, `{"session":{"store":"memory","learn_wait_ms":0}}`)
	p.store = nil
	// A panic after the body was read: a nil store dereference stands in.
	f := &fakeKong{method: "POST", headers: hdr("mcp-session-id", "s"), body: []byte(`{"jsonrpc":"2.0","id":"p-1","method":"ping"}`)}
	p.store = panicStore{}
	p.access(f)
	if !f.exited || f.exitStatus != 500 {
		t.Fatalf("want 500 envelope, got exited=%v %d", f.exited, f.exitStatus)
	}
	if env := f.exitJSON(t); env["id"] != "p-1" {
		t.Fatalf("want the id echoed: %s", f.exitBody)
	}
}

func TestAccessRecoversFromPanic(t *testing.T) {
	p := newPlugin(t, storeOff)
	f := &fakeKong{method: "POST", headers: hdr(), body: []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`),
		panicOn: "request.get_raw_body"}
	p.access(f) // must not panic
	if !f.exited || f.exitStatus != 500 {
		t.Fatalf("want 500 envelope, got exited=%v %d", f.exited, f.exitStatus)
	}
	if env := f.exitJSON(t); env["error"].(map[string]any)["code"].(float64) != -32603 {
		t.Fatalf("want -32603: %s", f.exitBody)
	}
}

// panicStore panics on every call, as a bug in a store would.
type panicStore struct{ session.Store }

func (panicStore) Lookup(context.Context, string, time.Duration) (session.Record, bool, error) {
	panic("store bug")
}

// TestBodyAndMethodFromHeaders: when Access reads the body and when it must
// ask Kong for the method, from the headers alone.
func TestBodyAndMethodFromHeaders(t *testing.T) {
	tests := []struct {
		name       string
		headers    map[string][]string
		wantBody   bool
		wantMethod bool // without a JSON-RPC body
	}{
		{"Content-Length", map[string][]string{"content-length": {"12"}}, true, false},
		{"Content-Length 0", map[string][]string{"content-length": {"0"}, "content-type": {"application/json"}}, false, false},
		{"chunked", map[string][]string{"transfer-encoding": {"chunked"}}, true, false},
		{"HTTP/2 without Content-Length", map[string][]string{"content-type": {"application/json"}}, true, false},
		{"bodyless", map[string][]string{"accept": {"text/html"}}, false, false},
		{"a session's bodyless request", map[string][]string{"mcp-session-id": {"s"}}, false, true},
		{"a preflight header", map[string][]string{"access-control-request-method": {"POST"}}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRequest(tt.headers)
			if got := r.mayHaveBody(); got != tt.wantBody {
				t.Errorf("mayHaveBody = %v, want %v", got, tt.wantBody)
			}
			if got := r.needsMethod(); got != tt.wantMethod {
				t.Errorf("needsMethod = %v, want %v", got, tt.wantMethod)
			}
			r.withBody(envelope.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), 1<<20))
			if r.needsMethod() || r.method != "POST" {
				t.Errorf("with a JSON-RPC body: needsMethod %v, method %q; want false, POST", r.needsMethod(), r.method)
			}
		})
	}
}

// TestInitializeBufferedWhileStoreOn: the Response phase must see every
// initialize answer to learn its session, whatever buffer_methods says.
func TestInitializeBufferedWhileStoreOn(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize"}`)
	for _, tt := range []struct {
		config     string
		wantStream bool
	}{
		{`{"upstream":{"buffer_methods":[]}}`, false},
		{`{"upstream":{"buffer_methods":[]},"session":{"store":"off"}}`, true},
	} {
		f := &fakeKong{headers: hdr(), body: body}
		newPlugin(t, tt.config).access(f)
		if f.cleared != tt.wantStream {
			t.Errorf("%s: streamed %v, want %v (calls %v)", tt.config, f.cleared, tt.wantStream, f.calls)
		}
	}
}
