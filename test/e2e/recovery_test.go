package e2e

// Transparent session recovery (config.session.recover): clients that keep
// one client object and never initialize again (the mcp-go client, the
// TypeScript SDK's Client) keep working when their replica dies, and across
// a rolling replacement of every replica.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
)

// recoveryProbeMS is the replica probe interval of the recovery tests.
const recoveryProbeMS = 200

// recoveryRig is stand-in nodes (1 with the memory store, which is
// node-local; 2 behind a round-robin balancer with Redis) in front of
// legacy mcp-go replicas.
type recoveryRig struct {
	t        *testing.T
	store    string
	nodes    []gateway
	metrics  []string // each node's metrics address
	url      string   // the MCP endpoint clients use
	replicas []*peers.Replica
	mu       sync.Mutex
	targets  []string
	gone     []*peers.Replica // killed replicas
	goneMis  int              // misroutes they had counted before they died
}

// newRecoveryRig starts the rig; spare are more upstream targets, where
// nothing listens yet.
func newRecoveryRig(t *testing.T, store string, replicas int, spare ...string) *recoveryRig {
	t.Helper()
	g := &recoveryRig{t: t, store: store, replicas: startLegacyReplicas(t, replicas)}
	g.targets = append(addrs(g.replicas...), spare...)
	relay := map[string]any{"session": map[string]any{"replica_probe_ms": recoveryProbeMS}}
	n := 1
	if store == "redis" {
		rd := redistest.StartServer(t)
		relay = redisSession(rd.Host(), rd.Port(), map[string]any{"replica_probe_ms": recoveryProbeMS})
		n = 2
	}
	opts := deckOptions{relay: relay}
	if len(spare) > 0 {
		// Until the first probes, the spare addresses count as healthy:
		// Kong's passive check takes each out at its first refused
		// connect, so one try more than there are spares reaches a
		// listening replica (kong/kong.yaml's 2 could meet three in a row).
		opts.service = map[string]any{"retries": len(spare) + 1}
	}
	cfg := deck(t, opts)
	for range n {
		m := freeport.Addr(t)
		g.metrics = append(g.metrics, m)
		g.nodes = append(g.nodes, startNode(t, cfg, g.targets, withMetrics(m)))
	}
	if n == 1 {
		g.url = g.nodes[0].URL() + "/mcp"
	} else {
		g.url = roundRobin(t, g.nodes...) + "/mcp"
	}
	return g
}

// client starts a keptClient on the rig's URL.
func (g *recoveryRig) client(t testing.TB, listen bool) *mcptest.Client {
	t.Helper()
	return keptClient(t, g.url, listen)
}

// keptClient starts an mcp-go client that keeps its session for good:
// legacy protocol, one client object, its GET stream open when listen
// (mcp-go samples on it).
func keptClient(t testing.TB, url string, listen bool) *mcptest.Client {
	t.Helper()
	c, _, err := mcptest.NewClient(t, url, mcptest.Config{
		Version: mcp.ProtocolVersion20251125, Listen: listen, Headers: map[string]string{"apikey": demoKey}})
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return c
}

// coverReplicas opens sessions (raw clients, through every node) until
// every running replica has one, as the sessions of other clients would in
// any deployment: the plugin recovers sessions onto replicas it has seen
// answer an initialize.
func (g *recoveryRig) coverReplicas() {
	g.t.Helper()
	for try := 0; try < 60; try++ {
		covered := true
		for _, r := range g.replicas {
			if r.Running() && r.MustStats(g.t).SessionsCreated == 0 {
				covered = false
			}
		}
		if covered {
			return
		}
		c := newRaw(demoKey)
		base := strings.TrimSuffix(g.url, "/mcp")
		if r := c.initialize(g.t, base); r.Status != 200 {
			g.t.Fatalf("initialize: %d %s", r.Status, r.Body)
		}
		c.initialized(g.t, base)
	}
	g.t.Fatal("60 sessions did not reach every replica")
}

// metric sums a sample over the nodes.
func (g *recoveryRig) metric(name string) float64 {
	sum := 0.0
	for _, m := range g.metrics {
		sum += metrics(g.t, m)[name]
	}
	return sum
}

// waitDown waits until every node's probes count at least n replicas down:
// from then on, requests for their sessions are recovered.
func (g *recoveryRig) waitDown(n int) time.Time {
	g.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		all := true
		for _, m := range g.metrics {
			if metrics(g.t, m)["mcp_relay_replicas_down"] < float64(n) {
				all = false
			}
		}
		if all {
			return time.Now()
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("the nodes' probes did not see %d replicas down within 20s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill kills r as a crash would, keeping what it had counted.
func (g *recoveryRig) kill(r *peers.Replica) {
	g.t.Helper()
	g.goneMis += misroutes(g.t, r)
	r.Kill()
	g.gone = append(g.gone, r)
}

// killOwnerOf runs the TypeScript SDK client (one Client object) with
// the steps before, a wait for a signal file, then the steps after;
// meanwhile it finds the replica that served the client's first
// tools/call, kills it as a crash would and waits until every node's
// probes count it down (kill: g.kill and g.waitDown, or more), then writes
// the file. owner is nil when the first call reached no replica within
// bound, or the client ended before (its result says why).
func (g *recoveryRig) killOwnerOf(o peers.NodeClientOptions, bound time.Duration, kill func(*peers.Replica),
	before, after []string) (res peers.NodeResult, owner *peers.Replica, err error) {
	t := g.t
	t.Helper()
	signal := filepath.Join(t.TempDir(), "replica-killed")
	type outcome struct {
		res peers.NodeResult
		err error
	}
	done := make(chan outcome, 1)
	args := append(append(slices.Clone(before), "wait-file", signal), after...)
	go func() {
		var out outcome
		defer func() { done <- out }()
		out.res, out.err = peers.RunNodeClientWith(goTB{t}, o, args...)
	}()
	for deadline := time.Now().Add(bound); owner == nil; {
		for _, r := range g.replicas {
			if r.Running() && r.MustStats(t).RequestsByRPC["tools/call"] > 0 {
				owner = r
			}
		}
		if owner != nil {
			break
		}
		select {
		case out := <-done:
			return out.res, nil, out.err
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return peers.NodeResult{}, nil, nil
		}
	}
	kill(owner)
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out := <-done
	return out.res, owner, out.err
}

// setTargets changes the upstream's targets on every node.
func (g *recoveryRig) setTargets(targets []string) {
	g.t.Helper()
	g.mu.Lock()
	g.targets = slices.Clone(targets)
	g.mu.Unlock()
	for _, n := range g.nodes {
		if err := n.SetTargets(upstream, targets); err != nil {
			g.t.Fatal(err)
		}
	}
}

func (g *recoveryRig) byName(name string) *peers.Replica {
	for _, r := range g.replicas {
		if r.Name() == name {
			return r
		}
	}
	g.t.Fatalf("no replica named %q", name)
	return nil
}

func whoami(c *mcptest.Client) (string, error) {
	res, err := mcptest.CallToolErr(c, "whoami", nil, nil, 10*time.Second)
	if err != nil {
		return "", err
	}
	if res.IsError {
		return "", fmt.Errorf("tool error: %s", mcptest.Text(res))
	}
	return mcptest.Text(res), nil
}

// askAndSample runs an elicitation and a sampling round trip.
func askAndSample(c *mcptest.Client) error {
	res, err := mcptest.CallToolErr(c, "ask", map[string]any{"message": "still there?"}, nil, 15*time.Second)
	if err != nil || res.IsError || mcptest.Text(res) != mcptest.ElicitAnswer {
		return fmt.Errorf("elicitation: %v %+v", err, res)
	}
	res, err = mcptest.CallToolErr(c, "sample", map[string]any{"prompt": "hi"}, nil, 15*time.Second)
	if err != nil || res.IsError || mcptest.Text(res) != mcptest.SampleAnswer {
		return fmt.Errorf("sampling: %v %+v", err, res)
	}
	return nil
}

// recoveryLatency reads the recovery latency histogram of every node.
func (g *recoveryRig) recoveryLatency() string {
	sum, n := g.metric("mcp_relay_recovery_latency_seconds_sum"), g.metric("mcp_relay_recovery_latency_seconds_count")
	if n == 0 {
		return "no recovery observed"
	}
	// Quantiles from the histogram: the upper bound of the bucket that
	// holds them.
	quantile := func(q float64) string {
		for _, le := range []string{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"} {
			if g.metric(`mcp_relay_recovery_latency_seconds_bucket{le="`+le+`"}`) >= q*n {
				return "≤" + le + "s"
			}
		}
		return ">10s"
	}
	return fmt.Sprintf("%.0f requests waited for a recovery: mean %.1f ms, median %s, p99 %s", n, 1000*sum/n, quantile(0.5), quantile(0.99))
}

// TestRecoveryReplicaKill: an mcp-go client that never initializes again
// keeps its session across the crash of its replica; elicitation and
// sampling work on the recovered session, and no request reaches a replica
// that does not know its session.
func TestRecoveryReplicaKill(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			g := newRecoveryRig(t, store, 3)
			g.coverReplicas()
			c := g.client(t, true)
			first, err := whoami(c)
			if err != nil {
				t.Fatal(err)
			}
			if err := askAndSample(c); err != nil {
				t.Fatalf("before the kill: %v", err)
			}
			g.kill(g.byName(first))
			g.waitDown(1)

			// Every call from now on succeeds, on another replica.
			second, err := whoami(c)
			if err != nil {
				t.Fatalf("first call after the probes saw the replica down: %v", err)
			}
			if second == first {
				t.Fatalf("whoami still answers %q, the killed replica", second)
			}
			if err := askAndSample(c); err != nil {
				t.Fatalf("after the recovery: %v", err)
			}
			for i := range 5 {
				if name, err := whoami(c); err != nil || name != second {
					t.Fatalf("call %d after the recovery: %q %v, want %q", i, name, err, second)
				}
			}
			if mis := misroutes(t, g.replicas...) + g.goneMis; mis != 0 {
				t.Errorf("%d requests reached a replica that did not own their session", mis)
			}
			if n := g.metric("mcp_relay_sessions_recovered_total"); n != 1 {
				t.Errorf("sessions_recovered_total = %v over the nodes, want 1 (one recovery per session)", n)
			}
			for _, reason := range []string{"no_init", "no_replica", "store", "busy", "kong", "internal"} {
				if n := g.metric(`mcp_relay_recovery_failures_total{reason="` + reason + `"}`); n != 0 {
					t.Errorf("recovery_failures_total{reason=%q} = %v", reason, n)
				}
			}
			t.Logf("%s store: session moved from %s to %s; %s", store, first, second, g.recoveryLatency())
		})
	}
}

// TestRecoveryRollingReplacement replaces all three replicas, one by one,
// with new ones on new addresses, under traffic from 50 sessions whose
// clients never initialize again. New sessions arriving during the roll
// are how the plugin sees the new replicas answer. The only errors allowed
// are calls that overlapped a kill and the probes noticing it.
func TestRecoveryRollingReplacement(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			rollingReplacement(t, store)
		})
	}
}

type callRecord struct {
	start, end time.Time
	err        error
	session    int
}

func rollingReplacement(t *testing.T, store string) {
	// The stand-in changes the upstream's targets at runtime, as Kong's
	// Admin API does. The real-Kong harness has none (a deck change is a
	// reload, a new plugin process): there the upstream lists the new
	// replicas' addresses from the start, and Kong's health checks keep
	// new sessions off them until they listen and off the killed ones.
	var spare []string
	if !onStandin(t, "targets added and removed at runtime (Admin API)",
		"the real-Kong harness has no Admin API: the upstream lists every address from the start") {
		spare = freeport.Addrs(t, 3)
	}
	g := newRecoveryRig(t, store, 3, spare...)
	g.coverReplicas()
	const sessions, listeners = 50, 5
	clients := make([]*mcptest.Client, sessions)
	for i := range clients {
		clients[i] = g.client(t, i < listeners)
	}

	var (
		mu    sync.Mutex
		calls []callRecord
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				_, err := whoami(c)
				mu.Lock()
				calls = append(calls, callRecord{start: start, end: time.Now(), err: err, session: i})
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}

	type window struct{ killed, seen time.Time }
	var windows []window
	old := slices.Clone(g.replicas)
	for i, victim := range old {
		var fresh *peers.Replica
		if spare != nil {
			fresh = peers.StartLegacyOn(t, fmt.Sprintf("new-%d", i+1), spare[i])
		} else {
			fresh = peers.StartLegacy(t, fmt.Sprintf("new-%d", i+1))
			g.setTargets(append(slices.Clone(g.targets), fresh.Addr()))
		}
		g.replicas = append(g.replicas, fresh)
		// New sessions arrive as always; one of them lands on the new
		// replica, and the plugin learns that it answers (Kong's active
		// health check lets the spare address in within a probe interval).
		landed := false
		for deadline := time.Now().Add(15 * time.Second); !landed && time.Now().Before(deadline); {
			c := g.client(t, false)
			name, err := whoami(c)
			if err != nil {
				t.Fatalf("new session during the roll: %v", err)
			}
			landed = name == fresh.Name()
			_ = c.Close()
			if !landed {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if !landed {
			t.Fatalf("no new session on %s within 15 s", fresh.Name())
		}
		if spare == nil {
			g.setTargets(slices.DeleteFunc(slices.Clone(g.targets), func(a string) bool { return a == victim.Addr() }))
		}
		killed := time.Now()
		g.kill(victim)
		windows = append(windows, window{killed, g.waitDown(i + 1)})
	}
	// Traffic goes on for a while on the new replicas only.
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	excused, failed := 0, 0
	perSession := make([]int, sessions)
	for _, c := range calls {
		perSession[c.session]++
		if c.err == nil {
			continue
		}
		ok := false
		for _, w := range windows {
			if c.start.Before(w.seen) && c.end.After(w.killed) {
				ok = true
			}
		}
		if ok {
			excused++
			continue
		}
		failed++
		if failed <= 5 {
			t.Errorf("session %d: call at +%v failed outside any kill window: %v", c.session, c.start.Sub(windows[0].killed), c.err)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d calls failed outside the kill windows", failed, len(calls))
	}

	// Every session still works, on a new replica; elicitation and sampling
	// (over the recovered GET stream) work after the recoveries.
	newNames := map[string]bool{"new-1": true, "new-2": true, "new-3": true}
	for i, c := range clients {
		name, err := whoami(c)
		if err != nil || !newNames[name] {
			t.Errorf("session %d after the roll: %q %v, want a new replica", i, name, err)
			continue
		}
		if i < listeners {
			if err := askAndSample(c); err != nil {
				t.Errorf("session %d after the roll: %v", i, err)
			}
		}
	}
	if mis := misroutes(t, g.replicas...) + g.goneMis; mis != 0 {
		t.Errorf("%d requests reached a replica that did not own their session", mis)
	}
	recovered := g.metric("mcp_relay_sessions_recovered_total")
	var fails []string
	for _, reason := range []string{"no_init", "no_replica", "store", "busy", "ended", "kong", "internal"} {
		if n := g.metric(`mcp_relay_recovery_failures_total{reason="` + reason + `"}`); n != 0 {
			fails = append(fails, fmt.Sprintf("%s=%v", reason, n))
		}
	}
	if len(fails) > 0 {
		t.Errorf("recovery failures: %s", strings.Join(fails, " "))
	}
	t.Logf("%s store: %d calls from %d sessions during the roll, %d failed inside kill windows (in flight or before the probes saw the kill), "+
		"%d outside; %.0f recoveries; %s", store, len(calls), sessions, excused, failed, recovered, g.recoveryLatency())
}

// TestRecoveryTypeScriptClient: the TypeScript SDK's Client (one object, as
// applications keep it) goes on working after its replica is killed: it is
// told to wait (a signal file) between its calls while the test kills the
// replica. Without recovery it would get 404 on every later call.
func TestRecoveryTypeScriptClient(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			g := newRecoveryRig(t, store, 3)
			g.coverReplicas()
			res, victim, err := g.killOwnerOf(peers.NodeClientOptions{
				URL: g.url, Headers: map[string]string{"apikey": demoKey}, Deadline: 60 * time.Second}, 30*time.Second,
				func(r *peers.Replica) { g.kill(r); g.waitDown(1) },
				[]string{"call", "whoami", "{}"}, []string{"call", "whoami", "{}", "elicitation", "sampling"})
			if victim == nil {
				t.Fatalf("the TypeScript client's first call reached no replica within 30s: %v\n%s", err, res.Raw)
			}
			if err != nil {
				t.Fatalf("TypeScript client: %v\n%s", err, res.Raw)
			}
			o := struct{ res peers.NodeResult }{res}
			var names []string
			for _, s := range o.res.Steps {
				if s.Scenario == "call" {
					names = append(names, s.Text)
				}
			}
			if len(names) != 2 || names[0] != victim.Name() || names[1] == victim.Name() {
				t.Errorf("whoami answers %v: want %s, then another replica", names, victim.Name())
			}
			for _, h := range o.res.HTTP {
				if h.Status == 404 {
					t.Errorf("the client saw a 404: %+v", h)
				}
			}
			if mis := misroutes(t, g.replicas...) + g.goneMis; mis != 0 {
				t.Errorf("%d requests reached a replica that did not own their session", mis)
			}
			// The client keeps the id it got from initialize unless an answer
			// hands it another (the SDK adopts any Mcp-Session-Id it sees).
			original := ""
			for _, h := range o.res.HTTP {
				if h.RPC == "initialize" {
					original = h.SessionID
				}
			}
			t.Logf("%s store: whoami %v; elicitation and sampling after the kill ok; %s; session id kept by the client: %v",
				store, names, g.recoveryLatency(), original != "" && o.res.SessionID == original)
		})
	}
}

// TestRecoveryReplicaRestart: a replica restarts on its address faster than
// any probe notices (probes are off here): it answers the session's next
// buffered request (tools/list) with 404. The plugin recovers the session,
// sends the request again to the new upstream session and answers with
// that: the client never sees the 404, and its later streamed calls reach
// the new session.
func TestRecoveryReplicaRestart(t *testing.T) {
	rs := startLegacyReplicas(t, 2)
	m := freeport.Addr(t)
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{"session": map[string]any{"replica_probe_ms": 0}}}),
		addrs(rs...), withMetrics(m))
	g := &recoveryRig{t: t, nodes: []gateway{node}, metrics: []string{m}, url: node.URL() + "/mcp", replicas: rs}
	g.coverReplicas()

	c := newPinRaw(demoKey, 10*time.Second)
	c.initialize(t, node.URL())
	c.initialized(t, node.URL())
	first, _ := c.whoami(t, node.URL())
	victim := g.byName(first)
	victim.Restart()
	if st := victim.MustStats(t); st.SessionsCreated != 0 {
		t.Fatalf("restarted replica still knows %d sessions", st.SessionsCreated)
	}

	r := c.request(t, node.URL(), "tools/list", "")
	tools, _ := r.Message["result"].(map[string]any)["tools"].([]any)
	if r.Status != 200 || len(tools) == 0 {
		t.Fatalf("tools/list after the restart: %d %s, want the recovered session's answer", r.Status, r.Body)
	}
	if st := victim.MustStats(t); st.StatusCodes["404"] != 1 {
		t.Errorf("the restarted replica answered 404 %d times, want once (the request the plugin re-sent)", st.StatusCodes["404"])
	}
	name, r := c.whoami(t, node.URL())
	if name == "" {
		t.Fatalf("streamed call after the recovery: %d %s", r.Status, r.Body)
	}
	if n := g.metric("mcp_relay_sessions_recovered_total"); n != 1 {
		t.Errorf("sessions_recovered_total = %v, want 1", n)
	}
	// The restarted replica counts the first tools/list as misrouted (it no
	// longer knows the id): that is the request the plugin answered for.
	if mis := misroutes(t, rs...); mis != 1 {
		t.Errorf("misroutes %d, want 1 (the 404 the plugin re-sent)", mis)
	}
	t.Logf("replica restarted on its address: the client got tools/list from the recovered session on %s; %s", name, g.recoveryLatency())
}
