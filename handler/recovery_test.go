package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mcp-relay/mcp-relay/handler/replica"
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
	"github.com/mcp-relay/mcp-relay/session/redistest"
)

const testInit = `{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"unit","version":"1"}}`

// fakeReplica is a minimal stateful MCP endpoint for unit tests: it mints
// session ids on initialize and answers other POSTs of its sessions, 404
// for sessions it does not know.
type fakeReplica struct {
	*httptest.Server
	mu       sync.Mutex
	n        int
	sessions map[string]bool
	seen     []http.Request
	bodies   []string
}

func startFakeReplica(t *testing.T) *fakeReplica {
	t.Helper()
	f := &fakeReplica{sessions: map[string]bool{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.seen = append(f.seen, *r.Clone(context.Background()))
		f.bodies = append(f.bodies, string(body))
		var msg struct{ Method string }
		_ = json.Unmarshal(body, &msg)
		if msg.Method == "initialize" {
			f.n++
			id := fmt.Sprintf("%s-up-%d", f.Listener.Addr(), f.n)
			f.sessions[id] = true
			w.Header().Set("Mcp-Session-Id", id)
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"mcp-relay-recovery\",\"result\":{\"protocolVersion\":\"2025-11-25\"}}\n\n")
			return
		}
		if !f.sessions[r.Header.Get("Mcp-Session-Id")] {
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
		if msg.Method == "notifications/initialized" {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":42,"result":{"from":%q}}`, f.Listener.Addr().String())
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeReplica) addr() string { return f.Listener.Addr().String() }

func (f *fakeReplica) requests() ([]http.Request, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Request(nil), f.seen...), append([]string(nil), f.bodies...)
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// ownFleet gives the test an empty process fleet and restores it after;
// instances built after it use it.
func ownFleet(t testing.TB) {
	t.Helper()
	saved := fleet
	fleet = replica.NewFleet()
	t.Cleanup(func() { fleet = saved })
	ownWatches(t) // the process's watches tell the fleet
}

// ownWatches gives the instances the test builds watches of their own: the
// process's remember replicas by address, and tests reuse freed ports.
func ownWatches(t testing.TB) {
	t.Helper()
	watches.mu.Lock()
	saved := watches.m
	watches.m = map[watchKey]*replica.Watch{}
	watches.mu.Unlock()
	t.Cleanup(func() {
		watches.mu.Lock()
		for _, w := range watches.m {
			w.Close()
		}
		watches.m = saved
		watches.mu.Unlock()
	})
}

// markDown makes the instance's probes report target down.
func markDown(p *Plugin, target string) {
	p.replicas.SetProbed(target, true, time.Now())
}

func recoverable(t *testing.T, s session.Store, id, target string) {
	t.Helper()
	err := s.Learn(context.Background(), id, session.Record{Target: target, Consumer: "alice",
		Created: time.Now().Add(-time.Minute), State: session.Active, Init: testInit, Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
}

func lookup(t *testing.T, s session.Store, id string) session.Record {
	t.Helper()
	rec, found, err := s.Lookup(context.Background(), id, 0)
	if err != nil || !found {
		t.Fatalf("Lookup(%s) = found %v, err %v", id, found, err)
	}
	return rec
}

func upstreamVarsKong() map[string]string {
	return map[string]string{"upstream_scheme": "http", "upstream_uri": "/mcp"}
}

func TestRecoverSessionOfDownReplica(t *testing.T) {
	ownFleet(t)
	live := startFakeReplica(t)
	fleet.Learned("svc", live.addr(), time.Now())
	dead := deadAddr(t)
	p, mem := pinned(t, `{"session":{"learn_wait_ms":0,"replica_probe_ms":60000}}`)
	markDown(p, dead)
	recoverable(t, mem, "client-1", dead)
	before := counterValue(sessionsRecovered)

	f := &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(),
		headers: hdr("mcp-session-id", "client-1", "x-consumer-id", "alice", "authorization", "Bearer t",
			"mcp-protocol-version", "2025-11-25", "connection", "keep-alive, x-hop", "x-hop", "1", "host", "kong.example")}
	p.access(f)
	if f.exited || f.target != live.addr() {
		t.Fatalf("recovered request: exited=%v %s target=%q, want %s", f.exited, f.exitBody, f.target, live.addr())
	}
	upstreamID := f.upstreamSet["Mcp-Session-Id"]
	if upstreamID == "" || upstreamID == "client-1" {
		t.Fatalf("upstream Mcp-Session-Id = %q, want the new upstream session", upstreamID)
	}
	if got := counterValue(sessionsRecovered) - before; got != 1 {
		t.Errorf("sessions_recovered_total grew by %v, want 1", got)
	}

	// What the plugin sent: the replayed initialize, then initialized on
	// the new session, with the client's end-to-end headers only.
	reqs, bodies := live.requests()
	if len(reqs) != 2 {
		t.Fatalf("replica saw %d requests, want initialize and notifications/initialized: %q", len(reqs), bodies)
	}
	var init struct{ Params json.RawMessage }
	if err := json.Unmarshal([]byte(bodies[0]), &init); err != nil || string(init.Params) != testInit {
		t.Errorf("replayed initialize = %s (%v), want params %s", bodies[0], err, testInit)
	}
	if !strings.Contains(bodies[1], "notifications/initialized") || reqs[1].Header.Get("Mcp-Session-Id") != upstreamID ||
		reqs[1].Header.Get("Mcp-Protocol-Version") != "2025-11-25" {
		t.Errorf("second request = %s %v, want initialized on %s", bodies[1], reqs[1].Header, upstreamID)
	}
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "Bearer t" || r.Header.Get("X-Consumer-Id") != "alice" {
			t.Errorf("end-to-end headers not sent: %v", r.Header)
		}
		if r.URL.Path != "/mcp" || r.Host != live.addr() {
			t.Errorf("request to %s Host %s", r.URL.Path, r.Host)
		}
		if r.Header.Get("X-Hop") != "" || r.Header.Get("Mcp-Protocol-Version") == "" && r.Header.Get("Mcp-Session-Id") != "" {
			t.Errorf("hop-by-hop header sent, or version missing: %v", r.Header)
		}
	}
	if reqs[0].Header.Get("Mcp-Session-Id") != "" {
		t.Errorf("initialize carried Mcp-Session-Id %q", reqs[0].Header.Get("Mcp-Session-Id"))
	}

	// The records: the client's id names the new replica and upstream id;
	// the upstream id names the client's as its alias.
	client, up := lookup(t, mem, "client-1"), lookup(t, mem, upstreamID)
	if client.Target != live.addr() || client.Upstream != upstreamID || client.Consumer != "alice" || client.Init != testInit {
		t.Errorf("client record = %+v", client)
	}
	if up.Target != live.addr() || up.Alias != "client-1" || up.Upstream != "" || up.Consumer != "alice" {
		t.Errorf("upstream record = %+v", up)
	}

	// Later requests: a healthy pinned one's calls and one set_header more
	// for the upstream id (Host and the id each through set_header: Kong
	// would send a Host given to set_headers as "table: 0x...").
	f = &fakeKong{method: "POST", body: []byte(callBody), headers: hdr("mcp-session-id", "client-1", "x-consumer-id", "alice")}
	p.access(f)
	if f.target != live.addr() || f.upstreamSet["Mcp-Session-Id"] != upstreamID || len(f.calls) != 6 {
		t.Errorf("later request: target %q header %q calls %v, want 6 calls", f.target, f.upstreamSet["Mcp-Session-Id"], f.calls)
	}
	// A client that adopted the new id is pinned alike, with only the Host.
	f = &fakeKong{method: "POST", body: []byte(callBody), headers: hdr("mcp-session-id", upstreamID, "x-consumer-id", "alice")}
	p.access(f)
	if f.target != live.addr() || f.upstreamSet["Mcp-Session-Id"] != "" || len(f.calls) != 5 {
		t.Errorf("adopted id: target %q set %v calls %v", f.target, f.upstreamSet, f.calls)
	}
	// Another consumer gets neither id.
	f = &fakeKong{method: "POST", body: []byte(callBody), headers: hdr("mcp-session-id", upstreamID, "x-consumer-id", "mallory")}
	p.access(f)
	if !f.exited || f.exitStatus != 404 {
		t.Errorf("another consumer: exited %v status %d", f.exited, f.exitStatus)
	}
}

func TestDeleteEndsBothIDs(t *testing.T) {
	for _, via := range []string{"client", "upstream"} {
		t.Run(via, func(t *testing.T) {
			p, mem := pinned(t, `{}`)
			ctx := context.Background()
			_ = mem.Learn(ctx, "c", session.Record{Target: "10.0.0.1:1", Consumer: "alice", Upstream: "u", Init: testInit})
			_ = mem.Learn(ctx, "u", session.Record{Target: "10.0.0.1:1", Consumer: "alice", Alias: "c", Init: testInit})
			id := map[string]string{"client": "c", "upstream": "u"}[via]
			req := &fakeKong{method: "DELETE", headers: map[string][]string{"mcp-session-id": {id}, "x-consumer-id": {"alice"}}}
			p.response(responseAfter(t, p, req, 200, nil))
			for _, x := range []string{"c", "u"} {
				if rec := lookup(t, mem, x); rec.State != session.Ended {
					t.Errorf("after DELETE of %s: %s is %v, want ended", id, x, rec.State)
				}
			}
		})
	}
}

// Without a live replica known, and where Kong's balancer cannot help (the
// replica it chose could not be told with an upstream host_header), the
// session is lost.
func TestRecoverFailsWithoutLiveReplica(t *testing.T) {
	ownFleet(t)
	dead := deadAddr(t)
	otherDead := deadAddr(t)
	fleet.Learned("svc", otherDead, time.Now()) // known, but refuses: tried, then 404
	p, mem := pinned(t, `{"session":{"learn_wait_ms":0,"replica_probe_ms":60000},"upstream":{"host_header":"mcp.internal"}}`)
	markDown(p, dead)
	recoverable(t, mem, "c", dead)
	before := counterValue(recoveryFailures.WithLabelValues(failNoReplica))
	f := &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(), headers: hdr("mcp-session-id", "c", "x-consumer-id", "alice")}
	p.access(f)
	if !f.exited || f.exitStatus != 404 {
		t.Fatalf("want the 404 envelope; exited %v status %d target %q", f.exited, f.exitStatus, f.target)
	}
	if rec := lookup(t, mem, "c"); rec.State != session.Lost {
		t.Errorf("state %v, want lost", rec.State)
	}
	if got := counterValue(recoveryFailures.WithLabelValues(failNoReplica)) - before; got != 1 {
		t.Errorf("recovery_failures_total{reason=no_replica} grew by %v, want 1", got)
	}

	// recover off: today's 404, no attempt (no get_var call).
	p2, mem2 := pinned(t, `{"session":{"learn_wait_ms":0,"replica_probe_ms":60000,"recover":false}}`)
	markDown(p2, dead)
	recoverable(t, mem2, "c", dead)
	f = &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(), headers: hdr("mcp-session-id", "c", "x-consumer-id", "alice")}
	p2.access(f)
	if !f.exited || f.exitStatus != 404 || strings.Contains(strings.Join(f.calls, ","), "get_var") {
		t.Errorf("recover off: exited %v status %d calls %v", f.exited, f.exitStatus, f.calls)
	}
}

// A replica that was refused by the probes since the session was created
// restarted on the same address: its sessions are gone, though it answers.
func TestRecoverAfterRestartOnSameAddress(t *testing.T) {
	ownFleet(t)
	live := startFakeReplica(t)
	fleet.Learned("svc", live.addr(), time.Now())
	p, mem := pinned(t, `{"session":{"learn_wait_ms":0,"replica_probe_ms":60000}}`)
	recoverable(t, mem, "c", live.addr())                                  // created a minute ago
	p.replicas.SetProbed(live.addr(), false, time.Now().Add(-time.Second)) // refused since, up again now
	f := &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(), headers: hdr("mcp-session-id", "c", "x-consumer-id", "alice")}
	p.access(f)
	if f.exited || f.target != live.addr() || f.upstreamSet["Mcp-Session-Id"] == "" {
		t.Fatalf("want a recovery on the restarted replica itself: exited %v target %q set %v", f.exited, f.target, f.upstreamSet)
	}
	// Recovered after the restart: no second recovery.
	f = &fakeKong{method: "POST", body: []byte(callBody), headers: hdr("mcp-session-id", "c", "x-consumer-id", "alice")}
	p.access(f)
	if len(f.calls) != 6 { // a pinned request's 5, and the upstream id
		t.Errorf("second request: calls %v, want 6 (no recovery)", f.calls)
	}
}

// A buffered request its replica answers 404 is re-sent to the recovered
// session, and the client gets that answer.
func TestResendAfterReplica404(t *testing.T) {
	ownFleet(t)
	live := startFakeReplica(t)
	fleet.Learned("svc", live.addr(), time.Now())
	p, mem := pinned(t, `{}`)
	recoverable(t, mem, "c", live.addr()) // the replica does not know "c"
	list := `{"jsonrpc":"2.0","id":42,"method":"tools/list"}`
	f := &fakeKong{status: 404, method: "POST", body: []byte(list), vars: upstreamVarsKong(),
		headers: hdr("mcp-session-id", "c", "x-consumer-id", "alice")}
	p.response(f)
	if !f.exited || f.exitStatus != 200 || !strings.Contains(string(f.exitBody), live.addr()) {
		t.Fatalf("want the re-sent request's answer: exited %v %d %s (calls %v)", f.exited, f.exitStatus, f.exitBody, f.calls)
	}
	_, bodies := live.requests()
	if len(bodies) != 3 || bodies[2] != list {
		t.Errorf("replica saw %q, want initialize, initialized, the request", bodies)
	}
}

func TestInitParams(t *testing.T) {
	small := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":` + testInit + `}`
	if got := paramsOf([]byte(small)); got != testInit {
		t.Errorf("paramsOf = %s", got)
	}
	big := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"x":"` + strings.Repeat("a", session.MaxInitBytes) + `"}}`
	before := counterValue(recoveryFailures.WithLabelValues(failInitTooLarge))
	if got := paramsOf([]byte(big)); got != "" {
		t.Errorf("params over %d bytes kept (%d bytes)", session.MaxInitBytes, len(got))
	}
	if counterValue(recoveryFailures.WithLabelValues(failInitTooLarge))-before != 1 {
		t.Errorf("init_too_large not counted")
	}
	if paramsOf([]byte(`{"method":"initialize"}`)) != "" {
		t.Errorf("missing params kept")
	}

	q := &initParams{seed: maphash.MakeSeed(), pending: map[uint64][]pendingInit{}}
	now := time.Now()
	h1 := map[string][]string{"content-length": {"10"}, "apikey": {"a"}}
	h2 := map[string][]string{"content-length": {"11"}, "apikey": {"a"}}
	k1 := q.put(h1, "one", now)
	q.put(h1, "two", now)
	k2 := q.put(h2, "three", now)
	if a, b, c := q.take(k1, now), q.take(k2, now), q.take(k1, now); a != "one" || b != "three" || c != "two" || k1 == k2 {
		t.Errorf("take = %q %q %q, want first in first out per headers", a, b, c)
	}
	if q.put(h1, "", now) != 0 || q.take(0, now) != "" {
		t.Errorf("no params: want key 0, taking nothing")
	}
	k1 = q.put(h1, "stale", now)
	if got := q.take(k1, now.Add(initTTL+time.Second)); got != "" {
		t.Errorf("stale params taken: %q", got)
	}
}

// Initialize params travel from Access to the learned record.
func TestLearnKeepsInitParams(t *testing.T) {
	p, mem := pinned(t, `{}`)
	p.hints = newLearnHints()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":` + testInit + `}`
	a := &fakeKong{method: "POST", headers: hdr("x-consumer-id", "alice"), body: []byte(body),
		vars: map[string]string{"upstream_host": "10.0.0.3:8080"}, route: kong.Route{ServiceID: "svc-1"}}
	p.response(responseAfter(t, p, a, 200, map[string]string{"Mcp-Session-Id": "new-1"}))
	if rec := lookup(t, mem, "new-1"); rec.Init != testInit || rec.Target != "10.0.0.3:8080" || rec.Service != "svc-1" {
		t.Errorf("learned in Response: %+v, want the initialize params and the service", rec)
	}

	// Learned in Log (a preserve_host route, -log-phase): the params travel
	// with the hint.
	p.logs.declared.Store(true)
	b := &fakeKong{method: "POST", headers: hdr("x-consumer-id", "alice"), body: []byte(body),
		route: kong.Route{ServiceID: "svc-1", PreserveHost: true}}
	p.response(responseAfter(t, p, b, 200, map[string]string{"Mcp-Session-Id": "new-2"}))
	log := strings.Replace(serialized("POST", 200, "", "new-2", "alice", "10.0.0.3", 8080), `"tries"`, `"service":{"id":"svc-1"},"tries"`, 1)
	p.log(&fakeKong{serialized: log})
	if rec := lookup(t, mem, "new-2"); rec.Init != testInit || rec.Target != "10.0.0.3:8080" || rec.Service != "svc-1" {
		t.Errorf("learned in Log: %+v, want the initialize params and the service", rec)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// BenchmarkRecovery measures one recovery as the requesting client waits
// for it: the Access phase of a request whose replica is down, with the
// replayed initialize and notifications/initialized to a live replica on
// loopback (an in-process HTTP server) and the memory store's writes.
func BenchmarkRecovery(b *testing.B) {
	ownFleet(b)

	live := &fakeReplica{sessions: map[string]bool{}}
	live.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"initialize"`) {
			live.mu.Lock()
			live.n++
			id := fmt.Sprintf("up-%d", live.n)
			live.mu.Unlock()
			w.Header().Set("Mcp-Session-Id", id)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":"mcp-relay-recovery","result":{"protocolVersion":"2025-11-25"}}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer live.Close()
	fleet.Learned("svc", live.addr(), time.Now())

	cfg := `{"session":{"learn_wait_ms":0,"replica_probe_ms":60000}}`
	p := newPlugin(b, cfg)
	mem := session.NewMemory(session.MemoryOptions{TTL: time.Hour, MaxSessions: 1 << 20})
	defer mem.Close()
	p.store = mem
	dead := "127.0.0.1:9"
	p.replicas.SetProbed(dead, true, time.Time{})
	headers := hdr("x-consumer-id", "alice", "mcp-protocol-version", "2025-11-25")
	vars := upstreamVarsKong()
	var lat []time.Duration
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("client-%d", i)
		b.StopTimer()
		_ = mem.Learn(context.Background(), id, session.Record{Target: dead, Consumer: "alice",
			Created: time.Now(), State: session.Active, Init: testInit, Service: "svc"})
		h := make(map[string][]string, len(headers)+1)
		for k, v := range headers {
			h[k] = v
		}
		h["mcp-session-id"] = []string{id}
		f := &fakeKong{method: "POST", body: []byte(callBody), headers: h, vars: vars}
		b.StartTimer()
		start := time.Now()
		p.access(f)
		lat = append(lat, time.Since(start))
		if f.target != live.addr() {
			b.Fatalf("not recovered: %v %s", f.calls, f.exitBody)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// A process that learned no session itself (a restarted plugin whose
// records came back from elsewhere) knows the replicas its pinned requests
// go to: a session of a dead replica recovers onto one of them.
func TestFleetSeededByPinnedRecords(t *testing.T) {
	ownFleet(t)
	live := startFakeReplica(t)
	dead := deadAddr(t)
	p, mem := pinned(t, `{"session":{"learn_wait_ms":0,"replica_probe_ms":60000}}`)
	recoverable(t, mem, "healthy", live.addr())
	recoverable(t, mem, "orphan", dead)
	f := &fakeKong{method: "POST", body: []byte(callBody), headers: hdr("mcp-session-id", "healthy", "x-consumer-id", "alice")}
	p.access(f)
	if f.target != live.addr() {
		t.Fatalf("healthy session pinned to %q", f.target)
	}
	markDown(p, dead)
	f = &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(), headers: hdr("mcp-session-id", "orphan", "x-consumer-id", "alice")}
	p.access(f)
	if f.exited || f.target != live.addr() {
		t.Fatalf("orphan session: exited %v %s target %q, want recovered onto %s", f.exited, f.exitBody, f.target, live.addr())
	}
}

// A candidate replica that refuses is skipped for the next one.
func TestRecoverTriesNextReplica(t *testing.T) {
	ownFleet(t)
	live := startFakeReplica(t)
	refusing := deadAddr(t)
	now := time.Now()
	fleet.Learned("svc", refusing, now) // least loaded: tried first
	for range 3 {
		fleet.Learned("svc", live.addr(), now)
	}
	dead := deadAddr(t)
	p, mem := pinned(t, `{"session":{"learn_wait_ms":0,"replica_probe_ms":60000}}`)
	markDown(p, dead)
	recoverable(t, mem, "c", dead)
	f := &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(), headers: hdr("mcp-session-id", "c", "x-consumer-id", "alice")}
	p.access(f)
	if f.exited || f.target != live.addr() {
		t.Fatalf("exited %v %s target %q, want %s after %s refused", f.exited, f.exitBody, f.target, live.addr(), refusing)
	}
}

// TestRecoveryClaimedByAnotherProcess: with Redis, another plugin process
// holds the session's recovery claim and ends without a record: it gave
// the recovery up (Kong's balancer found no replica), or it died mid-way
// (a Kong reload stopped it). The waiting request takes the claim then and
// recovers the session itself, in seconds: not after the claim's whole
// life (about 20 s, past every client's call timeout).
func TestRecoveryClaimedByAnotherProcess(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(release func(), holder *session.Redis)
	}{
		{"holder gave up", func(release func(), _ *session.Redis) { release() }},
		{"holder died", func(_ func(), holder *session.Redis) { _ = holder.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ownFleet(t)
			live := startFakeReplica(t)
			fleet.Learned("svc", live.addr(), time.Now())
			dead := deadAddr(t)
			srv := redistest.StartServer(t)
			node := func() *session.Redis {
				s, err := session.NewRedis(session.RedisConfig{Host: srv.Host(), Port: srv.Port(), KeyPrefix: "claim:"},
					session.RedisOptions{TTL: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
			holder, store := node(), node()
			p, _ := pinned(t, `{"session":{"learn_wait_ms":0,"replica_probe_ms":60000}}`)
			p.store = store
			markDown(p, dead)
			recoverable(t, store, "client-1", dead)
			release, ok, err := holder.Claim(context.Background(), "client-1", recoverWait)
			if err != nil || !ok {
				t.Fatalf("the other process's claim: %v %v", ok, err)
			}
			time.AfterFunc(300*time.Millisecond, func() { tc.end(release, holder) })

			f := &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(),
				headers: hdr("mcp-session-id", "client-1", "x-consumer-id", "alice")}
			start := time.Now()
			p.access(f)
			took := time.Since(start)
			if f.exited || f.target != live.addr() {
				t.Fatalf("after %v: exited %v %d %s, target %q; want the session recovered on %s",
					took, f.exited, f.exitStatus, f.exitBody, f.target, live.addr())
			}
			if took > 8*time.Second {
				t.Errorf("recovered after %v: the claim's end went unseen", took)
			}
			t.Logf("recovered %v after the request came", took.Round(time.Millisecond))
		})
	}
}
