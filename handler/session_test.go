package handler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
)

// pinned builds an instance with its own memory store so tests do not share
// records through the node-wide store registry. Replica probes are off
// unless the config sets them: the records name made-up replicas.
func pinned(t *testing.T, config string) (*Plugin, *session.Memory) {
	t.Helper()
	ownWatches(t)
	p := newPlugin(t, config)
	if !strings.Contains(config, "replica_probe_ms") {
		p.replicas = nil
	}
	mem := session.NewMemory(session.MemoryOptions{TTL: time.Hour, MaxSessions: 1000})
	t.Cleanup(func() { _ = mem.Close() })
	p.store = mem
	return p, mem
}

func learn(t testing.TB, s session.Store, id, target, consumer string) {
	t.Helper()
	err := s.Learn(context.Background(), id, session.Record{Target: target, Consumer: consumer, Created: time.Now(), State: session.Active})
	if err != nil {
		t.Fatal(err)
	}
}

const callBody = `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo"}}`

func TestPinKnownSession(t *testing.T) {
	p, mem := pinned(t, `{"session":{"learn_wait_ms":50}}`)
	learn(t, mem, "sess-1", "10.0.0.7:8080", "alice")
	f := &fakeKong{method: "POST", headers: hdr("mcp-session-id", "sess-1", "x-consumer-id", "alice"), body: []byte(callBody)}
	p.access(f)
	if f.exited || f.target != "10.0.0.7:8080" || !f.cleared {
		t.Fatalf("want pinned stream to 10.0.0.7:8080; exited=%v target=%q cleared=%v", f.exited, f.target, f.cleared)
	}
	// headers, body, set_target, set_header (Host), set_ctx: no get_method
	if len(f.calls) != 5 || f.upstreamSet["Host"] != "10.0.0.7:8080" {
		t.Errorf("PDK calls = %v, Host %q", f.calls, f.upstreamSet["Host"])
	}
}

func TestPinHostHeader(t *testing.T) {
	p, mem := pinned(t, `{"upstream":{"host_header":"mcp.internal"}}`)
	learn(t, mem, "sess-1", "10.0.0.7:8080", "")
	f := &fakeKong{method: "GET", headers: map[string][]string{"accept": {"text/event-stream"}, "mcp-session-id": {"sess-1"}}}
	p.access(f)
	if f.upstreamSet["Host"] != "mcp.internal" || f.target != "10.0.0.7:8080" {
		t.Fatalf("host=%q target=%q", f.upstreamSet["Host"], f.target)
	}
}

func TestPinRecordArrivingDuringWait(t *testing.T) {
	p, mem := pinned(t, `{"session":{"learn_wait_ms":2000}}`)
	p.logs.declared.Store(true) // records may come from Log, after their answer
	go func() {
		time.Sleep(20 * time.Millisecond) // the Log phase of initialize, late
		learn(t, mem, "late", "10.0.0.8:8080", "")
	}()
	f := &fakeKong{method: "POST", headers: hdr("mcp-session-id", "late"), body: []byte(callBody)}
	p.access(f)
	if f.exited || f.target != "10.0.0.8:8080" {
		t.Fatalf("request arriving before its record was not pinned: exited=%v %s target=%q", f.exited, f.exitBody, f.target)
	}
}

func TestUnknownSessions(t *testing.T) {
	tests := []struct {
		name       string
		config     string
		prepare    func(s session.Store)
		headers    map[string][]string
		wantStatus int // 0: passed to Kong's balancer
		wantReason string
	}{
		{name: "unknown id is 404", config: `{"session":{"learn_wait_ms":10}}`,
			headers: hdr("mcp-session-id", "nope"), wantStatus: 404, wantReason: "session_not_found"},
		{name: "unknown id with unknown=pass is balanced", config: `{"session":{"learn_wait_ms":10,"unknown":"pass"}}`,
			headers: hdr("mcp-session-id", "nope")},
		{name: "lost session is 404", config: `{"session":{"learn_wait_ms":10}}`,
			prepare: func(s session.Store) {
				learn(t, s, "gone", "10.0.0.1:1", "")
				_ = s.MarkLost(context.Background(), "gone")
			},
			headers: hdr("mcp-session-id", "gone"), wantStatus: 404, wantReason: "session_not_found"},
		{name: "ended session is 404", config: `{"session":{"learn_wait_ms":10}}`,
			prepare: func(s session.Store) {
				learn(t, s, "done", "10.0.0.1:1", "")
				_ = s.End(context.Background(), "done")
			},
			headers: hdr("mcp-session-id", "done"), wantStatus: 404, wantReason: "session_not_found"},
		{name: "another consumer's session is 404", config: `{"session":{"learn_wait_ms":10}}`,
			prepare: func(s session.Store) { learn(t, s, "alices", "10.0.0.1:1", "alice") },
			headers: hdr("mcp-session-id", "alices", "x-consumer-id", "mallory"), wantStatus: 404, wantReason: "session_not_found"},
		{name: "binding off lets another consumer in", config: `{"session":{"bind_consumer":false}}`,
			prepare: func(s session.Store) { learn(t, s, "alices", "10.0.0.1:1", "alice") },
			headers: hdr("mcp-session-id", "alices", "x-consumer-id", "mallory")},
		{name: "space in id is 400", headers: hdr("mcp-session-id", "a b"), wantStatus: 400, wantReason: "invalid_session_id"},
		{name: "control char in id is 400", headers: hdr("mcp-session-id", "a\x01b"), wantStatus: 400, wantReason: "invalid_session_id"},
		{name: "non-ASCII id is 400", headers: hdr("mcp-session-id", "sésame"), wantStatus: 400, wantReason: "invalid_session_id"},
		{name: "overlong id is 400", headers: hdr("mcp-session-id", string(make([]byte, 300))), wantStatus: 400, wantReason: "invalid_session_id"},
		{name: "duplicated header is 400", headers: hdr("mcp-session-id", "a", "mcp-session-id", "b"), wantStatus: 400, wantReason: "invalid_session_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.config
			if cfg == "" {
				cfg = `{}`
			}
			p, mem := pinned(t, cfg)
			if tt.prepare != nil {
				tt.prepare(mem)
			}
			f := &fakeKong{method: "POST", headers: tt.headers, body: []byte(callBody)}
			p.access(f)
			if tt.wantStatus == 0 {
				if f.exited {
					t.Fatalf("unexpected answer %d %s", f.exitStatus, f.exitBody)
				}
				return
			}
			if f.exitStatus != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", f.exitStatus, tt.wantStatus, f.exitBody)
			}
			env := f.exitJSON(t)
			if env["id"] != float64(42) {
				t.Errorf("id not echoed: %s", f.exitBody)
			}
			data := env["error"].(map[string]any)["data"].(map[string]any)
			if data["reason"] != tt.wantReason {
				t.Errorf("reason %v, want %s", data["reason"], tt.wantReason)
			}
		})
	}
}

func TestModernRequestsAreNeverLookedUp(t *testing.T) {
	p, _ := pinned(t, `{"session":{"learn_wait_ms":5000}}`)
	f := &fakeKong{method: "POST",
		headers: hdr("mcp-session-id", "legacy-id", "mcp-protocol-version", "2026-07-28", "mcp-method", "tools/call", "mcp-name", "echo"),
		body:    []byte(callBody)}
	start := time.Now()
	p.access(f)
	if f.exited || f.target != "" {
		t.Fatalf("modern request was answered or pinned: %d %s %q", f.exitStatus, f.exitBody, f.target)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("modern request waited %v for a session record", waited)
	}
}

func serialized(method string, status int, reqSession, respSession, consumer, ip string, port int) string {
	tries := "[]"
	if ip != "" {
		tries = fmt.Sprintf(`[{"ip":%q,"port":%d,"balancer_latency":0}]`, ip, port)
	}
	return fmt.Sprintf(`{"request":{"method":%q,"headers":{"mcp-session-id":%q,"x-consumer-id":%q}},
		"response":{"status":%d,"headers":{"mcp-session-id":%q}},"tries":%s}`,
		method, reqSession, consumer, status, respSession, tries)
}

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`

// balancedTo is the Response phase's view of a request Kong balanced to
// upstreamHost (its upstream_host) on a route of service svc-1.
func balancedTo(upstreamHost string) (map[string]string, kong.Route) {
	return map[string]string{"upstream_host": upstreamHost, "upstream_scheme": "http"}, kong.Route{ServiceID: "svc-1"}
}

// TestLearnInResponse: an initialize's Response phase records its session
// before the client has the answer: status, the note Access left, the
// answer's Mcp-Session-Id, the route and upstream_host; the Log phase, which
// Kong does not run, is not needed.
func TestLearnInResponse(t *testing.T) {
	ctx := context.Background()
	p, mem := pinned(t, `{}`)
	req := &fakeKong{method: "POST", headers: hdr("x-consumer-id", "alice"), body: []byte(initBody)}
	req.vars, req.route = balancedTo("10.0.0.7:8080")
	f := responseAfter(t, p, req, 200, map[string]string{"Mcp-Session-Id": "new-sess"})
	// Access: headers, body, the note (buffered: no set_ctx to stream).
	if want := []string{"request.get_headers", "request.get_raw_body", "nginx.set_ctx"}; !slices.Equal(req.calls, want) || req.cleared {
		t.Fatalf("Access calls %v (cleared %v), want %v", req.calls, req.cleared, want)
	}
	p.response(f)
	want := []string{"response.get_status", "nginx.get_ctx", "response.get_header", "router.get_route", "nginx.get_var"}
	if !slices.Equal(f.calls, want) || f.exited {
		t.Fatalf("Response calls %v (exited %v), want %v", f.calls, f.exited, want)
	}
	rec, found, _ := mem.Lookup(ctx, "new-sess", 0)
	if !found || rec.Target != "10.0.0.7:8080" || rec.Consumer != "alice" || rec.Service != "svc-1" || rec.State != session.Active {
		t.Fatalf("initialize not learned: %+v found=%v", rec, found)
	}
	if p.hints.pending() {
		t.Error("a session learned in Response left a hint for Log")
	}
	// No wait once a Kong reload's handover window is over.
	defer func(t time.Time) { processStart = t }(processStart)
	processStart = time.Now().Add(-handoverWindow)
	if p.learnWait() != 0 {
		t.Errorf("memory store without Log events: learn wait %v, want none", p.learnWait())
	}
	processStart = time.Now()
	if p.learnWait() != p.settings.learnWait {
		t.Errorf("memory store in a new process's handover window: learn wait %v, want %v", p.learnWait(), p.settings.learnWait)
	}

	// A 2026-07-28 answer never creates a session: no note, nothing read.
	modern := &fakeKong{method: "POST", headers: hdr("mcp-protocol-version", "2026-07-28", "mcp-method", "initialize"), body: []byte(initBody)}
	g := responseAfter(t, p, modern, 200, map[string]string{"Mcp-Session-Id": "modern-sess"})
	p.response(g)
	if _, found, _ := mem.Lookup(ctx, "modern-sess", 0); found || len(g.calls) != 2 {
		t.Fatalf("2026-07-28 answer learned (%v) or calls %v", found, g.calls)
	}
	// An error answer creates nothing.
	failed := &fakeKong{method: "POST", headers: hdr(), body: []byte(initBody)}
	failed.vars, failed.route = balancedTo("10.0.0.7:8080")
	h := responseAfter(t, p, failed, 500, map[string]string{"Mcp-Session-Id": "err-sess"})
	p.response(h)
	if _, found, _ := mem.Lookup(ctx, "err-sess", 0); found {
		t.Fatal("a 500 answer's session was learned")
	}
}

// TestLearnedTargetAndHost: what the Response phase makes of upstream_host,
// and the Host pinned requests of the session then send.
func TestLearnedTargetAndHost(t *testing.T) {
	tests := []struct {
		upstreamHost, scheme string
		wantTarget, wantHost string // wantHost "": set_target's bare host, no set_header
	}{
		{"10.0.0.7:8080", "http", "10.0.0.7:8080", "10.0.0.7:8080"},
		{"10.0.0.7", "http", "10.0.0.7:80", ""},
		{"10.0.0.7", "https", "10.0.0.7:443", ""},
		{"10.0.0.7:80", "https", "10.0.0.7:80", "10.0.0.7:80"},
		{"10.0.0.7:443", "http", "10.0.0.7:443", "10.0.0.7:443"},
		{"[fd00::7]:8080", "http", "[fd00::7]:8080", "[fd00::7]:8080"},
		{"[fd00::7]", "http", "[fd00::7]:80", ""},
	}
	for _, tt := range tests {
		t.Run(tt.upstreamHost+" "+tt.scheme, func(t *testing.T) {
			p, mem := pinned(t, `{}`)
			req := &fakeKong{method: "POST", headers: hdr(), body: []byte(initBody)}
			req.vars, req.route = balancedTo(tt.upstreamHost)
			req.vars["upstream_scheme"] = tt.scheme
			f := responseAfter(t, p, req, 200, map[string]string{"Mcp-Session-Id": "s"})
			p.response(f)
			rec, found, _ := mem.Lookup(context.Background(), "s", 0)
			if !found || rec.Target != tt.wantTarget {
				t.Fatalf("learned %+v (found %v), want target %s", rec, found, tt.wantTarget)
			}
			pin := &fakeKong{method: "POST", headers: hdr("mcp-session-id", "s"), body: []byte(callBody)}
			p.access(pin)
			if pin.target != tt.wantTarget || pin.upstreamSet["Host"] != tt.wantHost {
				t.Errorf("pinned to %q with Host %q, want %q with %q", pin.target, pin.upstreamSet["Host"], tt.wantTarget, tt.wantHost)
			}
		})
	}
}

// TestUnnamedReplicaNeedsLogPhase: on a preserve_host route, or when Kong
// balanced to a name, the answer does not name the replica. Without Log
// events the session is not pinned, counted and logged; with them the Log
// phase learns it from serialize's tries, making no call for other requests.
func TestUnnamedReplicaNeedsLogPhase(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		why   string
		route kong.Route
		host  string
	}{
		{unnamedPreserveHost, kong.Route{ServiceID: "svc-1", PreserveHost: true}, "gateway.example:8000"},
		{unnamedName, kong.Route{ServiceID: "svc-1"}, "mcp-1.internal:8080"},
	} {
		t.Run(tt.why, func(t *testing.T) {
			p, mem := pinned(t, `{}`)
			p.hints = newLearnHints()
			before := counterValue(sessionsUnlearned.WithLabelValues(tt.why))
			req := &fakeKong{method: "POST", headers: hdr("x-consumer-id", "alice"), body: []byte(initBody),
				vars: map[string]string{"upstream_host": tt.host}, route: tt.route}
			f := responseAfter(t, p, req, 200, map[string]string{"Mcp-Session-Id": "lost-" + tt.why})
			p.response(f)
			if _, found, _ := mem.Lookup(ctx, "lost-"+tt.why, 0); found {
				t.Fatal("a session whose replica is unnamed was learned")
			}
			if got := counterValue(sessionsUnlearned.WithLabelValues(tt.why)) - before; got != 1 {
				t.Errorf("sessions_unlearned_total{reason=%s} grew by %v, want 1", tt.why, got)
			}

			// With -log-phase: Log learns it from Kong's balancer tries.
			p.hints = newLearnHints()
			p.logs.declared.Store(true)
			if p.learnWait() != p.settings.learnWait {
				t.Errorf("with Log events the learn wait is %v, want %v", p.learnWait(), p.settings.learnWait)
			}
			before = counterValue(sessionsUnlearned.WithLabelValues(tt.why))
			id := "later-" + tt.why
			g := responseAfter(t, p, req, 200, map[string]string{"Mcp-Session-Id": id})
			p.response(g)
			if counterValue(sessionsUnlearned.WithLabelValues(tt.why)) != before || !p.hints.pending() {
				t.Fatalf("with Log events: counted as unlearned, or no hint for Log (pending %v)", p.hints.pending())
			}
			other := &fakeKong{serialized: serialized("POST", 200, "", "not-hinted", "bob", "127.0.0.1", 9102)}
			p.log(other)
			if _, found, _ := mem.Lookup(ctx, "not-hinted", 0); found || len(other.calls) != 1 {
				t.Fatalf("unhinted session learned (%v) or calls %v", found, other.calls)
			}
			l := &fakeKong{serialized: serialized("POST", 200, "", id, "alice", "127.0.0.1", 9101)}
			p.log(l)
			rec, found, _ := mem.Lookup(ctx, id, 0)
			if !found || rec.Target != "127.0.0.1:9101" || rec.Consumer != "alice" || len(l.calls) != 1 {
				t.Fatalf("Log learned %+v (found %v) with calls %v, want 127.0.0.1:9101 with one serialize", rec, found, l.calls)
			}
			idle := &fakeKong{}
			p.log(idle)
			if p.hints.pending() || len(idle.calls) != 0 {
				t.Errorf("after the hint was taken: pending %v, Log calls %v", p.hints.pending(), idle.calls)
			}
		})
	}
}

func TestLearnHintsExpireAndOverflow(t *testing.T) {
	h := newLearnHints()
	now := time.Now()
	h.add("a", now)
	if !h.pending() {
		t.Fatal("no hint pending after add")
	}
	// A Log that never came: the hint is dropped after hintTTL.
	if h.take("b", now.Add(hintTTL+2*time.Second)) || h.pending() {
		t.Fatalf("stale hint kept: pending=%v", h.pending())
	}
	// Beyond maxHints, every session is learned until the overflow passes.
	for i := range maxHints + 1 {
		h.add(fmt.Sprint("id-", i), now)
	}
	if !h.take("never-hinted", now) {
		t.Fatal("overflow did not fall back to learning every session")
	}
	if h.take("never-hinted", now.Add(2*hintTTL)) {
		t.Fatal("overflow never ended")
	}
}

// TestResponseEndsDeletedSessions: the end lands before the client has the
// DELETE answer, so its next request cannot reach the replica.
func TestResponseEndsDeletedSessions(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		method    string
		status    int
		consumer  string
		wantState session.State
		wantCalls int
	}{
		{"owner's DELETE accepted", "DELETE", 200, "alice", session.Ended, 2},
		{"owner's DELETE answered 405", "DELETE", 405, "alice", session.Ended, 2},
		{"owner's DELETE refused", "DELETE", 400, "alice", session.Active, 1},
		{"a buffered POST", "POST", 200, "alice", session.Active, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, mem := pinned(t, `{}`)
			learn(t, mem, "s2", "127.0.0.1:9102", "alice")
			req := &fakeKong{method: tt.method, headers: map[string][]string{"mcp-session-id": {"s2"}, "x-consumer-id": {tt.consumer}}}
			if tt.method == "POST" {
				req.body = []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/list"}`)
			}
			f := responseAfter(t, p, req, tt.status, nil)
			p.response(f)
			if rec, _, _ := mem.Lookup(ctx, "s2", 0); rec.State != tt.wantState {
				t.Errorf("state %v, want %v", rec.State, tt.wantState)
			}
			if len(f.calls) != tt.wantCalls || f.exited {
				t.Errorf("calls %v (exited %v), want %d", f.calls, f.exited, tt.wantCalls)
			}
		})
	}
	// The note names the consumer Access saw: another consumer's DELETE
	// (bind_consumer keeps it from the replica anyway) ends nothing.
	p, mem := pinned(t, `{}`)
	learn(t, mem, "s3", "127.0.0.1:9102", "alice")
	f := &fakeKong{status: 200, notes: map[string]string{noteKey: note{kind: noteEnd, consumer: "mallory", session: "s3"}.encode()}}
	p.response(f)
	if rec, _, _ := mem.Lookup(ctx, "s3", 0); rec.State != session.Active {
		t.Errorf("another consumer's DELETE: state %v, want active", rec.State)
	}
}

func TestLogIgnoresModernAndErrors(t *testing.T) {
	p, mem := pinned(t, `{}`)
	p.hints = newLearnHints()
	p.hints.add("x", time.Now())
	p.hints.add("err-sess", time.Now())
	modern := `{"request":{"method":"POST","headers":{"mcp-protocol-version":"2026-07-28"}},"response":{"status":200,"headers":{"mcp-session-id":"x"}},"tries":[{"ip":"127.0.0.1","port":1}]}`
	p.log(&fakeKong{serialized: modern})
	p.log(&fakeKong{serialized: serialized("POST", 500, "", "err-sess", "", "127.0.0.1", 1)})
	p.log(&fakeKong{serialized: `not json`})
	if mem.Len() != 0 {
		t.Fatalf("store has %d records, want 0", mem.Len())
	}
}

// TestResponseLosesOnUpstream502: a 502 the replica itself sent is rewritten
// into an envelope (so Log sees 200) and the session is lost at once.
func TestResponseLosesOnUpstream502(t *testing.T) {
	p, mem := pinned(t, `{}`)
	learn(t, mem, "s3", "127.0.0.1:9102", "alice")
	f := &fakeKong{method: "POST", status: 502, body: []byte(`{"jsonrpc":"2.0","id":4,"method":"tools/list"}`),
		headers: hdr("mcp-session-id", "s3", "x-consumer-id", "alice")}
	p.response(f)
	if rec, _, _ := mem.Lookup(context.Background(), "s3", 0); rec.State != session.Lost {
		t.Errorf("state %v, want lost", rec.State)
	}
	if env := f.exitJSON(t); env["id"] != float64(4) {
		t.Errorf("envelope %s", f.exitBody)
	}
}

// TestPinToDownReplicaLosesSession: Access answers 404 for a session whose
// replica is down and that cannot be recovered (its record keeps no
// initialize to replay), and marks it lost for every node.
func TestPinToDownReplicaLosesSession(t *testing.T) {
	p, mem := pinned(t, `{"session":{"learn_wait_ms":0,"replica_probe_ms":10}}`)
	addr := deadAddr(t) // nothing listens: connections are refused
	learn(t, mem, "s-dead", addr, "alice")

	// The watch dials the replica as soon as a request is pinned to it,
	// and finds it refusing: requests before that are pinned to it.
	answered404 := false
	for deadline := time.Now().Add(2 * time.Second); !answered404 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		g := &fakeKong{headers: hdr("mcp-session-id", "s-dead", "x-consumer-id", "alice"), body: []byte(callBody)}
		p.access(g)
		answered404 = g.exited && g.exitStatus == 404
		if !g.exited && g.target != addr {
			t.Fatalf("request pinned to %q, want %s", g.target, addr)
		}
	}
	if !answered404 {
		t.Fatal("session of a dead replica never answered 404")
	}
	rec, found, _ := mem.Lookup(context.Background(), "s-dead", 0)
	if !found || rec.State != session.Lost {
		t.Fatalf("record %+v found=%v, want lost", rec, found)
	}
}
