package handler

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
)

const listBody = `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`

// ownReroutes gives the test an empty set of recoveries through Kong's
// balancer, ending what it leaves behind.
func ownReroutes(t *testing.T) {
	t.Helper()
	saved := reroutes
	reroutes = &rerouteSet{byToken: map[string]*reroute{}, byKey: map[flightKey]*reroute{}}
	t.Cleanup(func() {
		reroutes.mu.Lock()
		left := make([]*reroute, 0, len(reroutes.byToken))
		for _, rr := range reroutes.byToken {
			left = append(left, rr)
		}
		reroutes.mu.Unlock()
		for _, rr := range left {
			rr.finish(recovered{reason: failInternal})
		}
		reroutes = saved
	})
}

// orphanRig is a session whose replica is down, on an instance that knows
// no other replica: its recovery goes through Kong's balancer.
func orphanRig(t *testing.T, config string) (*Plugin, *session.Memory, *fakeReplica) {
	t.Helper()
	ownFleet(t)
	ownReroutes(t)
	dead := deadAddr(t)
	p, mem := pinned(t, config)
	markDown(p, dead)
	recoverable(t, mem, "client-1", dead)
	return p, mem, startFakeReplica(t)
}

const orphanConfig = `{"session":{"learn_wait_ms":0,"replica_probe_ms":60000}}`

// rerouted runs Access for a request of client-1 and checks that it goes
// upstream as the session's initialize, unpinned and buffered.
func rerouted(t *testing.T, p *Plugin, method, body string) (*fakeKong, string) {
	t.Helper()
	f := &fakeKong{method: method, body: []byte(body), vars: upstreamVarsKong(),
		headers: hdr("mcp-session-id", "client-1", "x-consumer-id", "alice", "mcp-protocol-version", "2025-11-25",
			"host", "kong.example", "accept", "text/event-stream")}
	if body == "" {
		f.headers["accept"] = []string{"text/event-stream"}
	} else {
		f.headers["content-type"] = []string{"application/json"}
	}
	p.access(f)
	if f.exited || f.target != "" || f.cleared {
		t.Fatalf("rerouted %s: exited %v %s, target %q, buffering cleared %v; calls %v", method, f.exited, f.exitBody, f.target, f.cleared, f.calls)
	}
	var init struct {
		Method string
		Params json.RawMessage
	}
	if err := json.Unmarshal(f.upstreamBodySet, &init); err != nil || init.Method != "initialize" || string(init.Params) != testInit {
		t.Fatalf("upstream body %s: want the replayed initialize", f.upstreamBodySet)
	}
	token := f.upstreamSet["x-mcp-relay-recovery"]
	if token == "" || len(f.upstreamCleared) != 1 || f.upstreamCleared[0] != "Mcp-Session-Id" ||
		f.upstreamSet["Content-Type"] != "application/json" || !strings.Contains(f.upstreamSet["Accept"], "application/json") {
		t.Fatalf("upstream headers %v, cleared %v", f.upstreamSet, f.upstreamCleared)
	}
	wantMethod := ""
	if method != "POST" {
		wantMethod = "POST"
	}
	if f.upstreamMethod != wantMethod {
		t.Errorf("upstream method %q, want %q", f.upstreamMethod, wantMethod)
	}
	t.Logf("%s rerouted: %d PDK calls in Access %v", method, len(f.calls), f.calls)
	return f, token
}

// mint opens a session on the fake replica as Kong's proxying of the
// initialize would, and returns its id and the answer's body.
func mint(t *testing.T, r *fakeReplica) (string, []byte) {
	t.Helper()
	resp, err := http.Post(r.URL+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":`+testInit+`}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.Header.Get("Mcp-Session-Id"), body
}

// respond runs the Response phase of the rerouted request as Kong balanced
// it to live: the note Access left, the route (preserve_host as given).
func respond(t *testing.T, p *Plugin, access *fakeKong, token string, live *fakeReplica, preserveHost bool) (*fakeKong, string) {
	t.Helper()
	id, body := mint(t, live)
	if n := decodeNote(access.notes[noteKey]); n.kind != noteReroute || n.session != token {
		t.Fatalf("Access left the note %q, want the recovery's", access.notes[noteKey])
	}
	upstreamHost := live.addr()
	if preserveHost {
		upstreamHost = "kong.example"
	}
	f := &fakeKong{status: 200, notes: access.notes, respHeaders: map[string]string{"Mcp-Session-Id": id}, upstreamBody: body,
		route: kong.Route{ServiceID: "svc", PreserveHost: preserveHost},
		vars:  map[string]string{"upstream_host": upstreamHost, "request_uri": "/prefix/mcp?x=1"}}
	p.response(f)
	t.Logf("Response: %d PDK calls %v", len(f.calls), f.calls)
	return f, id
}

// TestRerouteBufferedPOST: a buffered request (tools/list) of a session
// no known replica can take goes upstream as its initialize; in Response
// the plugin sends notifications/initialized to the target Kong chose,
// records the recovery, sends tools/list again in the new session and
// answers with that.
func TestRerouteBufferedPOST(t *testing.T) {
	p, mem, live := orphanRig(t, orphanConfig)
	before := counterValue(reroutesDone)
	access, token := rerouted(t, p, "POST", listBody)
	f, upID := respond(t, p, access, token, live, false)
	if !f.exited || f.exitStatus != 200 || !strings.Contains(string(f.exitBody), live.addr()) {
		t.Fatalf("answer %v %d %s, want the tools/list answer of %s", f.exited, f.exitStatus, f.exitBody, live.addr())
	}
	reqs, bodies := live.requests()
	// mint's initialize, then the plugin's initialized and tools/list.
	if len(reqs) != 3 || !strings.Contains(bodies[1], "notifications/initialized") || !strings.Contains(bodies[2], "tools/list") ||
		reqs[1].Header.Get("Mcp-Session-Id") != upID || reqs[2].Header.Get("Mcp-Session-Id") != upID {
		t.Fatalf("replica saw %q", bodies)
	}
	if rec := lookup(t, mem, "client-1"); rec.Target != live.addr() || rec.Upstream != upID || rec.State != session.Active {
		t.Errorf("client record %+v", rec)
	}
	if rec := lookup(t, mem, upID); rec.Alias != "client-1" || rec.Target != live.addr() {
		t.Errorf("upstream record %+v", rec)
	}
	if got := counterValue(reroutesDone) - before; got != 1 {
		t.Errorf("recoveries_via_balancer_total grew by %v", got)
	}
	if reroutes.any() {
		t.Error("the recovery is still registered")
	}
	// The next request is pinned as any recovered session's.
	next := &fakeKong{method: "POST", body: []byte(callBody), headers: hdr("mcp-session-id", "client-1", "x-consumer-id", "alice")}
	p.access(next)
	if next.target != live.addr() || next.upstreamSet["Mcp-Session-Id"] != upID {
		t.Errorf("next request pinned to %q with %v", next.target, next.upstreamSet)
	}
}

// TestRerouteGETAndStreamedPOST: a GET stream's request is answered with a
// stream that ends at once asking to reconnect in 500 ms; a tools/call
// (whose answer streams) with a 307 to its own URL, so that the client
// sends it again, pinned.
func TestRerouteGETAndStreamedPOST(t *testing.T) {
	p, _, live := orphanRig(t, orphanConfig)
	access, token := rerouted(t, p, "GET", "")
	f, _ := respond(t, p, access, token, live, false)
	if !f.exited || f.exitStatus != 200 || string(f.exitBody) != "retry: 500\n\n" ||
		f.exitHeaders["Content-Type"][0] != "text/event-stream" {
		t.Fatalf("GET answered %d %q %v", f.exitStatus, f.exitBody, f.exitHeaders)
	}

	p, _, live = orphanRig(t, orphanConfig)
	access, token = rerouted(t, p, "POST", callBody)
	f, _ = respond(t, p, access, token, live, false)
	if !f.exited || f.exitStatus != 307 || f.exitHeaders["Location"][0] != "mcp?x=1" {
		t.Fatalf("tools/call answered %d %v", f.exitStatus, f.exitHeaders)
	}
	if _, bodies := live.requests(); len(bodies) != 2 {
		t.Errorf("replica saw %q: want initialize and initialized only (the client sends the call again)", bodies)
	}
}

// TestRerouteWaiters: requests of the session that arrive while Kong's
// balancer recovers it wait, and are pinned to the recovered session.
func TestRerouteWaiters(t *testing.T) {
	p, _, live := orphanRig(t, orphanConfig)
	access, token := rerouted(t, p, "POST", listBody)
	var wg sync.WaitGroup
	waiters := make([]*fakeKong, 3)
	for i := range waiters {
		waiters[i] = &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(),
			headers: hdr("mcp-session-id", "client-1", "x-consumer-id", "alice")}
		wg.Add(1)
		go func() { defer wg.Done(); p.access(waiters[i]) }()
	}
	time.Sleep(20 * time.Millisecond)
	_, upID := respond(t, p, access, token, live, false)
	wg.Wait()
	for i, w := range waiters {
		if w.exited || w.target != live.addr() || w.upstreamSet["Mcp-Session-Id"] != upID {
			t.Errorf("waiter %d: exited %v %s target %q headers %v", i, w.exited, w.exitBody, w.target, w.upstreamSet)
		}
	}
}

// TestRerouteKong502: when no target takes the initialize, Kong answers
// 502 and skips Response; Log ends the recovery, so that the next request
// tries again at once.
func TestRerouteKong502(t *testing.T) {
	p, mem, _ := orphanRig(t, orphanConfig)
	_, token := rerouted(t, p, "POST", callBody)
	before := counterValue(recoveryFailures.WithLabelValues(failBalancer))
	f := &fakeKong{serialized: `{"response":{"status":502},"request":{"headers":{"x-mcp-relay-recovery":"` + token + `"}},"tries":[]}`}
	p.log(f)
	if reroutes.any() {
		t.Fatal("the recovery is still registered after Log")
	}
	if got := counterValue(recoveryFailures.WithLabelValues(failBalancer)) - before; got != 1 {
		t.Errorf("recovery_failures_total{reason=balancer} grew by %v", got)
	}
	if rec := lookup(t, mem, "client-1"); rec.State != session.Active {
		t.Errorf("state %v: the session must stay, to be recovered by its next request", rec.State)
	}
	rerouted(t, p, "POST", callBody)
}

// TestRerouteWaiterOfKong502: Kong answered the recovery's own request
// with its 502 (no target took it) and skipped Response; without
// -log-phase nothing tells the plugin, and the recovery ends when overdue.
// A request of the session that waited for it is told to send again (503
// recovery_interrupted) and the session stands: a 404 would end it for
// clients that never initialize again. Its next request tries again.
func TestRerouteWaiterOfKong502(t *testing.T) {
	saved := rerouteWait
	rerouteWait = 200 * time.Millisecond
	t.Cleanup(func() { rerouteWait = saved })
	p, mem, _ := orphanRig(t, orphanConfig)
	rerouted(t, p, "POST", callBody) // Kong's 502 answers it: no Response
	w := &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(),
		headers: hdr("mcp-session-id", "client-1", "x-consumer-id", "alice")}
	p.access(w)
	if !w.exited || w.exitStatus != 503 || !strings.Contains(string(w.exitBody), "recovery_interrupted") {
		t.Fatalf("waiter: exited %v %d %s, want the 503 recovery_interrupted envelope", w.exited, w.exitStatus, w.exitBody)
	}
	if rec := lookup(t, mem, "client-1"); rec.State != session.Active {
		t.Errorf("state %v: the session must stand, to be recovered by a later request", rec.State)
	}
	rerouted(t, p, "POST", callBody)
}

// TestRerouteWaiterOfRefusal: the replica Kong chose refused the session's
// initialize (a 4xx): retrying would not help, the session is lost, and a
// request that waited for the recovery gets the 404 its leader gets, not
// a 503 that would have it sent again.
func TestRerouteWaiterOfRefusal(t *testing.T) {
	p, mem, _ := orphanRig(t, orphanConfig)
	access, _ := rerouted(t, p, "POST", listBody)
	w := &fakeKong{method: "POST", body: []byte(callBody), vars: upstreamVarsKong(),
		headers: hdr("mcp-session-id", "client-1", "x-consumer-id", "alice")}
	done := make(chan struct{})
	go func() { defer close(done); p.access(w) }()
	time.Sleep(20 * time.Millisecond) // let it wait; the test holds either way
	leader := &fakeKong{status: 403, notes: access.notes, route: kong.Route{ServiceID: "svc"},
		vars: map[string]string{"request_uri": "/mcp"}}
	p.response(leader)
	<-done
	if !leader.exited || leader.exitStatus != 404 {
		t.Errorf("leader: exited %v %d %s, want the 404 envelope", leader.exited, leader.exitStatus, leader.exitBody)
	}
	if !w.exited || w.exitStatus != 404 {
		t.Errorf("waiter: exited %v %d %s, want the 404 envelope", w.exited, w.exitStatus, w.exitBody)
	}
	if rec := lookup(t, mem, "client-1"); rec.State != session.Lost {
		t.Errorf("state %v, want lost", rec.State)
	}
}

// TestReroutePreservedHost: with the route's preserve_host, Kong's Host is
// the client's: the replica Kong chose cannot be told, the session is lost
// and the client told so.
func TestReroutePreservedHost(t *testing.T) {
	p, mem, live := orphanRig(t, orphanConfig)
	access, token := rerouted(t, p, "POST", listBody)
	f, _ := respond(t, p, access, token, live, true)
	if !f.exited || f.exitStatus != 404 {
		t.Fatalf("answer %d %s, want the 404 envelope", f.exitStatus, f.exitBody)
	}
	if rec := lookup(t, mem, "client-1"); rec.State != session.Lost {
		t.Errorf("state %v, want lost", rec.State)
	}
}

// TestRerouteUnknownToken: an answer whose recovery this process does not
// hold (its Access ran in the process before a restart) is answered 503.
func TestRerouteUnknownToken(t *testing.T) {
	p, _, _ := orphanRig(t, orphanConfig)
	rerouted(t, p, "POST", callBody) // keeps the set busy
	f := &fakeKong{status: 200, notes: map[string]string{noteKey: note{kind: noteReroute, session: "not-a-token"}.encode()}}
	p.response(f)
	if !f.exited || f.exitStatus != 503 {
		t.Fatalf("answer %d %s, want 503", f.exitStatus, f.exitBody)
	}
}

func TestSelfReference(t *testing.T) {
	for uri, want := range map[string]string{
		"/mcp": "mcp", "/a/b/mcp?x=1&y=2": "mcp?x=1&y=2", "/mcp/": "./", "/": "./", "/x:y": "./x:y",
	} {
		if got := selfReference(uri); got != want {
			t.Errorf("selfReference(%q) = %q, want %q", uri, got, want)
		}
	}
}
