package e2e

// Session recovery as a user expects it, through the stand-in or through
// real Kong nodes (MCP_RELAY_GATEWAY=kong), with the deck's defaults
// (replica_probe_ms 500):
//
//   - a fresh node finds a live replica it has never seen answer (Kong's
//     balancer does) when its first session's replica dies;
//   - a replica restarted on its address faster than any probe is noticed
//     before its old sessions' next request reaches it;
//   - clients that never initialize again keep working across a replica
//     kill, a restart in place and a rolling replacement of every replica,
//     with 0 requests reaching a replica that did not mint their session id.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session"
	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/legacy"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

// recoveryNode is one gateway node of these tests, with its plugin
// process's metrics address.
type recoveryNode struct {
	gateway
	url     string
	metrics string
}

// setTargets replaces the upstream's targets (real Kong reloads the node:
// a new plugin process takes over).
func (n *recoveryNode) setTargets(targets []string) error {
	return n.SetTargets(upstream, targets)
}

// killPlugin kills the node's plugin process and waits (bounded) until
// Kong's next one has opened its socket.
func (n *recoveryNode) killPlugin(t *testing.T) { killPluginAndWait(t, n) }

// startGateways starts n nodes in front of targets, each serving its plugin
// process's metrics.
func startGateways(t *testing.T, n int, deckYAML []byte, targets []string) []*recoveryNode {
	t.Helper()
	var out []*recoveryNode
	for range n {
		m := freeport.Addr(t)
		g := startNode(t, deckYAML, targets, withMetrics(m))
		out = append(out, &recoveryNode{gateway: g, url: g.URL(), metrics: m})
	}
	return out
}

// userRig is gateway nodes (one with the memory store; two behind a
// round-robin balancer with Redis) in front of legacy mcp-go replicas,
// configured as kong/kong.yaml ships.
type userRig struct {
	t        *testing.T
	nodes    []*recoveryNode
	url      string // the MCP endpoint clients use
	replicas []*peers.Replica
	targets  []string
	goneMis  int               // misroutes counted by replica processes that are gone
	redis    *redistest.Server // with the redis store
	// Per address of a replica restarted in place: the session ids its
	// earlier processes minted, and when its current process listened.
	earlier map[string]map[string]bool
	upAt    map[string]time.Time
}

func newUserRig(t *testing.T, store string, replicas int) *userRig {
	t.Helper()
	g := &userRig{t: t, replicas: startLegacyReplicas(t, replicas)}
	g.targets = addrs(g.replicas...)
	relay := map[string]any{}
	n := 1
	if store == "redis" {
		g.redis = redistest.StartServer(t)
		relay, n = redisSession(g.redis.Host(), g.redis.Port(), nil), 2
	}
	g.nodes = startGateways(t, n, deck(t, deckOptions{relay: relay}), g.targets)
	if n == 1 {
		g.url = g.nodes[0].url + "/mcp"
	} else {
		var urls []string
		for _, n := range g.nodes {
			urls = append(urls, n.url)
		}
		g.url = roundRobinURLs(t, urls) + "/mcp"
	}
	return g
}

func (g *userRig) client(t testing.TB, listen bool) *mcptest.Client {
	t.Helper()
	return keptClient(t, g.url, listen)
}

// metric sums a sample over the nodes' plugin processes.
func (g *userRig) metric(name string) float64 {
	sum := 0.0
	for _, n := range g.nodes {
		sum += metrics(g.t, n.metrics)[name]
	}
	return sum
}

// waitDown waits until every node counts at least n replicas down.
func (g *userRig) waitDown(n int) {
	g.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		all := true
		for _, node := range g.nodes {
			if metrics(g.t, node.metrics)["mcp_relay_replicas_down"] < float64(n) {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("the nodes did not see %d replicas down within 20s", n)
		}
	}
}

func (g *userRig) byName(name string) *peers.Replica {
	for _, r := range g.replicas {
		if r.Name() == name {
			return r
		}
	}
	g.t.Fatalf("no replica named %q", name)
	return nil
}

// kill kills r as a crash would, keeping what it had counted.
func (g *userRig) kill(r *peers.Replica) {
	g.t.Helper()
	g.keepMisroutes(r)
	r.Kill()
}

// keepMisroutes adds what r counted to goneMis: r's process is about to
// end. It returns the session ids the process minted.
func (g *userRig) keepMisroutes(r *peers.Replica) []string {
	g.t.Helper()
	if !r.Running() {
		return nil
	}
	st := r.MustStats(g.t)
	g.goneMis += g.misrouted(r, st, "(process ending) ")
	return st.Sessions
}

// restartInPlace kills r and starts a new process on its address after
// pause (0: at once); it returns the time from the kill to the new process
// listening.
func (g *userRig) restartInPlace(r *peers.Replica, pause time.Duration) time.Duration {
	g.t.Helper()
	minted := g.keepMisroutes(r)
	start := time.Now()
	r.RestartAfter(pause)
	if g.earlier == nil {
		g.earlier, g.upAt = map[string]map[string]bool{}, map[string]time.Time{}
	}
	if g.earlier[r.Addr()] == nil {
		g.earlier[r.Addr()] = map[string]bool{}
	}
	for _, id := range minted {
		g.earlier[r.Addr()][id] = true
	}
	g.upAt[r.Addr()] = time.Now()
	return time.Since(start)
}

// managerPause is how long the tests with traffic during restarts in place
// leave a replica's address dark, as a service manager restarting a crashed
// server does (systemd's RestartSec is 100 ms by default): the new process
// listens 60-90 ms after the kill, within the 100 ms these tests promise.
// A restart faster than Kong's own connect retries can meet a request Kong
// was already sending (see misrouted).
const managerPause = 50 * time.Millisecond

// retrySpan bounds how long after a replica's new process listens Kong may
// still be retrying a connect it began toward the old one.
const retrySpan = 250 * time.Millisecond

// misrouted is what r's process (stats st) counted as misrouted, less what
// Kong's own connect retries explain: the plugin pins a request in Access;
// when the replica's process exits before Kong connects, nginx retries the
// refused connect to the same address (the service's retries, which a Go
// plugin cannot change per request), and a process restarted there faster
// than the retries reaches it. Such a request was on its way before the
// process died: a POST carrying an id the address's earlier process
// minted, arriving within retrySpan of the new process listening, once
// for its session (a session the plugin failed to recover would come
// again). It is logged, not counted; anything else is counted.
func (g *userRig) misrouted(r *peers.Replica, st legacy.Stats, when string) int {
	g.t.Helper()
	if st.MisroutedTotal == 0 {
		return 0
	}
	explained := int64(0)
	for id, n := range st.MisroutedSessions {
		at := st.MisroutedFirst[id]
		if up, ok := g.upAt[r.Addr()]; ok && n == 1 && g.earlier[r.Addr()][id] && at.Sub(up) < retrySpan {
			explained++
			g.t.Logf("%s: a request Kong had begun sending before the earlier process at %s exited reached the new one (its connect retried), %v after it listened",
				r.Name(), r.Addr(), at.Sub(up).Round(time.Millisecond))
		}
	}
	explained = min(explained, st.MisroutedByMethod[http.MethodPost])
	if n := st.MisroutedTotal - explained; n > 0 {
		g.t.Logf("%s %scounted misroutes: by method %v, by JSON-RPC method %v, sessions %s", r.Name(), when, st.MisroutedByMethod, st.MisroutedByRPC, misroutedSessions(st))
		return int(n)
	}
	return 0
}

// misroutedSessions says which foreign session ids a replica saw, how often,
// and when first: to be set against the nodes' logs.
func misroutedSessions(st legacy.Stats) string {
	var out []string
	for id, n := range st.MisroutedSessions {
		out = append(out, fmt.Sprintf("%s x%d first at %s", id, n, st.MisroutedFirst[id].Format("15:04:05.000")))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// misroutes counts the requests that reached a replica that did not mint
// their session id, less those Kong's connect retries explain.
func (g *userRig) misroutes() int {
	g.t.Helper()
	n := g.goneMis
	for _, r := range g.replicas {
		if r.Running() {
			n += g.misrouted(r, r.MustStats(g.t), "")
		}
	}
	return n
}

// setTargets changes the upstream's targets on every node.
func (g *userRig) setTargets(targets []string) {
	g.t.Helper()
	g.targets = slices.Clone(targets)
	for _, n := range g.nodes {
		if err := n.setTargets(targets); err != nil {
			g.t.Fatal(err)
		}
	}
}

// tsRun is a TypeScript SDK client run in the background: its scenarios
// pause at wait-file steps until the test calls next.
type tsRun struct {
	t    *testing.T
	dir  string
	done chan struct{}
	res  peers.NodeResult
	err  error
}

// startTS runs client.mjs with: whoami, elicitation, sampling, then for each
// of phases: touch-file ready-i, wait-file go-i, whoami twice, elicitation,
// sampling; then touch-file ready-<phases>.
func (g *userRig) startTS(t *testing.T, phases int) *tsRun {
	t.Helper()
	ts := &tsRun{t: t, dir: t.TempDir(), done: make(chan struct{})}
	args := []string{"call", "whoami", "{}", "elicitation", "sampling"}
	for i := range phases {
		args = append(args, "touch-file", ts.file("ready", i), "wait-file", ts.file("go", i),
			"call", "whoami", "{}", "call", "whoami", "{}", "elicitation", "sampling")
	}
	args = append(args, "touch-file", ts.file("ready", phases))
	go func() {
		defer close(ts.done)
		ts.res, ts.err = peers.RunNodeClientWith(goTB{t}, peers.NodeClientOptions{
			URL: g.url, Headers: map[string]string{"apikey": demoKey}, Deadline: 170 * time.Second}, args...)
	}()
	return ts
}

func (ts *tsRun) file(kind string, i int) string {
	return filepath.Join(ts.dir, fmt.Sprintf("%s-%d", kind, i))
}

// ready waits until the client finished the steps before phase i.
func (ts *tsRun) ready(i int) { waitFile(ts.t, ts.file("ready", i), ts.done) }

// next lets the client run phase i.
func (ts *tsRun) next(i int) {
	if err := os.WriteFile(ts.file("go", i), nil, 0o600); err != nil {
		ts.t.Fatal(err)
	}
}

// check waits for the client's end: every step ok, no answer with an error
// status, the session id kept; it returns the whoami answers.
func (ts *tsRun) check() []string {
	ts.t.Helper()
	<-ts.done
	if ts.err != nil {
		ts.t.Fatalf("TypeScript client: %v\n%s", ts.err, ts.res.Raw)
	}
	var names []string
	for _, s := range ts.res.Steps {
		if !s.OK {
			ts.t.Errorf("TypeScript step %s failed: %+v", s.Scenario, s.Error)
		}
		if s.Scenario == "call" {
			names = append(names, s.Text)
		}
	}
	for _, h := range ts.res.HTTP {
		if h.Status >= 400 {
			ts.t.Errorf("the TypeScript client got %d for %s %s", h.Status, h.Method, h.RPC)
		}
	}
	return names
}

// sessionID is the session id the client got from initialize.
func (ts *tsRun) sessionID() string {
	for _, h := range ts.res.HTTP {
		if h.RPC == "initialize" {
			return h.SessionID
		}
	}
	return ""
}

// checkThroughBalancer: one session was recovered, on the replica Kong's
// balancer chose, and nothing failed.
func (g *userRig) checkThroughBalancer() {
	g.t.Helper()
	if n, via := g.metric("mcp_relay_sessions_recovered_total"), g.metric("mcp_relay_recoveries_via_balancer_total"); n != 1 || via != 1 {
		g.t.Errorf("sessions_recovered_total %v, recoveries_via_balancer_total %v: want one recovery, through Kong's balancer", n, via)
	}
	for _, reason := range []string{"no_init", "no_replica", "store", "busy", "ended", "kong", "internal", "balancer", "target_unknown"} {
		if n := g.metric(`mcp_relay_recovery_failures_total{reason="` + reason + `"}`); n != 0 {
			g.t.Errorf("recovery_failures_total{reason=%q} = %v", reason, n)
		}
	}
}

// TestRecoveryUnseenReplica: a fresh node (memory store) in front of two
// replicas serves one client, whose session is the node's first: the node
// has seen only that replica answer. When it dies, the session is recovered
// on the other replica, which Kong's balancer finds, and the client's later
// calls, elicitation and sampling (on its GET stream) work.
func TestRecoveryUnseenReplica(t *testing.T) {
	t.Run("mcp-go", func(t *testing.T) {
		g := newUserRig(t, "memory", 2)
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
		second, err := whoami(c)
		if err != nil || second == "" || second == first {
			t.Fatalf("first call after the kill: %q %v, want the other replica", second, err)
		}
		if err := askAndSample(c); err != nil {
			t.Fatalf("after the recovery: %v", err)
		}
		for i := range 3 {
			if name, err := whoami(c); err != nil || name != second {
				t.Fatalf("call %d after the recovery: %q %v, want %q", i, name, err, second)
			}
		}
		if mis := g.misroutes(); mis != 0 {
			t.Errorf("%d requests reached a replica that did not mint their session id", mis)
		}
		g.checkThroughBalancer()
		t.Logf("mcp-go session moved from %s to %s, a replica the node had not seen answer, through Kong's balancer", first, second)
	})
	// The GET stream reconnects first (mcp-go's listener, a second after
	// the stream broke): it is the request Kong sends as the initialize,
	// answered with a stream that ends at once; its reconnect, pinned,
	// carries the sampling question.
	t.Run("mcp-go GET stream first", func(t *testing.T) {
		g := newUserRig(t, "memory", 2)
		c := g.client(t, true)
		first, err := whoami(c)
		if err != nil {
			t.Fatal(err)
		}
		g.kill(g.byName(first))
		g.waitDown(1)
		for deadline := time.Now().Add(10 * time.Second); g.metric("mcp_relay_recoveries_via_balancer_total") == 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the GET stream's reconnect started no recovery within 10s")
			}
		}
		if err := askAndSample(c); err != nil {
			t.Fatalf("after the recovery: %v", err)
		}
		if second, err := whoami(c); err != nil || second == first {
			t.Fatalf("after the recovery: %q %v", second, err)
		}
		if mis := g.misroutes(); mis != 0 {
			t.Errorf("%d requests reached a replica that did not mint their session id", mis)
		}
		g.checkThroughBalancer()
	})
	t.Run("typescript", func(t *testing.T) {
		g := newUserRig(t, "memory", 2)
		ts := g.startTS(t, 1)
		ts.ready(0)
		var victim *peers.Replica
		for _, r := range g.replicas {
			if r.MustStats(t).SessionsCreated > 0 {
				victim = r
			}
		}
		if victim == nil {
			t.Fatal("no replica minted the TypeScript client's session")
		}
		g.kill(victim)
		g.waitDown(1)
		ts.next(0)
		ts.ready(1)
		names := ts.check()
		if len(names) != 3 || names[0] != victim.Name() || names[1] == victim.Name() || names[2] != names[1] {
			t.Errorf("whoami answers %v: want %s, then the other replica twice", names, victim.Name())
		}
		if mis := g.misroutes(); mis != 0 {
			t.Errorf("%d requests reached a replica that did not mint their session id", mis)
		}
		g.checkThroughBalancer()
		t.Logf("TypeScript session moved from %s to %s through Kong's balancer; session id kept by the client: %v", victim.Name(), names[1],
			ts.res.SessionID == ts.sessionID())
	})
}

// TestRecoveryNoLiveReplica: every replica dies. The session's next
// request goes upstream as its initialize through Kong's balancer, which
// finds no target and answers itself (no plugin phase sees that answer);
// a request of the session that waited for that recovery is told to send
// again (503 recovery_interrupted), not 404: mcp-go's client takes a 404
// for the session's end and never initializes again. Once a replica is
// back, the same client object goes on, its session recovered.
func TestRecoveryNoLiveReplica(t *testing.T) {
	g := newUserRig(t, "memory", 2)
	c := g.client(t, false)
	first, err := whoami(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range g.replicas {
		g.kill(r)
	}
	g.waitDown(1) // the plugin watches the replicas its sessions are on
	if name, err := whoami(c); err == nil {
		t.Fatalf("whoami answered %q with every replica dead", name)
	} else {
		t.Logf("with every replica dead, the recovery's own request: %v", err)
	}
	// Waits for that recovery, which ends once overdue (about 10 s).
	res, err := mcptest.CallToolErr(c, "whoami", nil, nil, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "Session recovery interrupted") {
		t.Fatalf("the waiting request: %+v %v, want the 503 recovery_interrupted envelope", res, err)
	}
	back := g.byName(first)
	back.Restart()
	// A new session opens once Kong's health checks take the target back.
	for try := 0; ; try++ {
		if _, _, err := mcptest.NewClient(t, g.url, mcptest.Config{Headers: map[string]string{"apikey": demoKey}}); err == nil {
			break
		} else if try == 40 {
			t.Fatalf("no new session through Kong 20s after the restart: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	name, err := whoami(c)
	if err != nil || name != first {
		t.Fatalf("after a replica came back: %q %v, want the session recovered on %s", name, err, first)
	}
	if mis := g.misroutes(); mis != 0 {
		t.Errorf("%d requests reached a replica that did not mint their session id", mis)
	}
}

// TestRecoveryRestartInPlace: the replicas that own an mcp-go and a
// TypeScript SDK client's sessions are killed and restarted on the same
// address at once, twice, between the clients' calls. The restarted
// processes know none of the old ids: no request may reach them with one
// (the replicas count such misroutes), and both clients go on, elicitation
// and sampling (mcp-go samples on the GET stream) included.
func TestRecoveryRestartInPlace(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			g := newUserRig(t, store, 3)
			goClient := g.client(t, true)
			goOwner, err := whoami(goClient)
			if err != nil {
				t.Fatal(err)
			}
			if err := askAndSample(goClient); err != nil {
				t.Fatalf("mcp-go before the restarts: %v", err)
			}
			const restarts = 2
			ts := g.startTS(t, restarts)
			ts.ready(0)
			var gaps []time.Duration
			for i := range restarts {
				// The replicas that own the clients' sessions now.
				owners := map[*peers.Replica]bool{}
				for _, r := range g.replicas {
					st := r.MustStats(t)
					if st.SessionsCreated > 0 && st.RequestsTotal > 0 {
						owners[r] = true
					}
				}
				for r := range owners {
					gaps = append(gaps, g.restartInPlace(r, 0))
				}
				name, err := whoami(goClient)
				if err != nil || name == "" {
					t.Fatalf("restart %d: mcp-go whoami: %q %v", i+1, name, err)
				}
				if err := askAndSample(goClient); err != nil {
					t.Fatalf("restart %d: mcp-go: %v", i+1, err)
				}
				ts.next(i)
				ts.ready(i + 1)
				if mis := g.misroutes(); mis != 0 {
					t.Fatalf("restart %d: %d requests reached a replica that did not mint their session id", i+1, mis)
				}
			}
			names := ts.check()
			if mis := g.misroutes(); mis != 0 {
				t.Errorf("%d requests reached a replica that did not mint their session id", mis)
			}
			t.Logf("%s: %d restarts in place, kill to listening %v; mcp-go first on %s, TypeScript whoami %v; recoveries %v",
				store, len(gaps), gaps, goOwner, names, g.metric("mcp_relay_sessions_recovered_total"))
		})
	}
}

// TestRecoveryRestartSeenByAnotherNode: node B's plugin process starts
// after a session's replica was last seen by it (a crash, a reload), and
// the replica restarts in place: node A, which watches it, finds it gone
// and tells the others through Redis. The session's next request, through
// B, is recovered instead of reaching the new process with an id it never
// minted.
func TestRecoveryRestartSeenByAnotherNode(t *testing.T) {
	g := newUserRig(t, "redis", 2)
	a, b := g.nodes[0], g.nodes[1]
	c := newPinRaw(demoKey, 10*time.Second)
	c.initialize(t, a.url)
	c.initialized(t, a.url)
	owner, r := c.whoami(t, a.url)
	if owner == "" {
		t.Fatalf("whoami through A: %d %s", r.Status, r.Body)
	}
	b.killPlugin(t) // B's new process has not seen the replica
	gap := g.restartInPlace(g.byName(owner), 0)
	// A's news in Redis (the key prefix is the default).
	news, err := session.NewRedis(session.RedisConfig{Host: g.redis.Host(), Port: g.redis.Port(), KeyPrefix: "mcp-relay:"}, session.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer news.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if at, err := news.ReplicaGoneAt(context.Background(), g.byName(owner).Addr()); err == nil && !at.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node A told no one that the replica was gone within 10s")
		}
	}
	// Kong has dropped its keepalive connections to the killed process's
	// socket (TestPluginRestartedServesAtOnce): every call is answered.
	for i := 0; i < 3; i++ {
		name, r := c.whoami(t, b.url)
		if name == "" || r.Status != 200 {
			t.Fatalf("call %d through B after the restart: %d %s", i, r.Status, r.Body)
		}
	}
	if mis := g.misroutes(); mis != 0 {
		t.Errorf("%d requests reached a replica that did not mint their session id", mis)
	}
	t.Logf("%s restarted in place in %v while B's plugin process was new; B recovered the session: %v recoveries",
		owner, gap, metrics(t, b.metrics)["mcp_relay_sessions_recovered_total"])
}

// callLog records the outcome of a client's calls made in the background.
type callLog struct {
	mu    sync.Mutex
	calls []callRecord
}

func (l *callLog) add(c callRecord) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

// failedOutside lists the failed calls that overlapped no kill window,
// and counts those excused: overlapping a kill window, or Kong's plain 500
// within a reload window (see below).
func (l *callLog) failedOutside(kills, reloads [][2]time.Time) (failed []callRecord, inKills, inReloads, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	overlaps := func(c callRecord, ws [][2]time.Time) bool {
		for _, w := range ws {
			if c.start.Before(w[1]) && c.end.After(w[0]) {
				return true
			}
		}
		return false
	}
	for _, c := range l.calls {
		switch {
		case c.err == nil:
		case overlaps(c, kills):
			inKills++
		case (isKong500(c.err) || strings.Contains(c.err.Error(), frontBalancerError)) && overlaps(c, reloads):
			inReloads++
		default:
			failed = append(failed, c)
		}
	}
	return failed, inKills, inReloads, len(l.calls)
}

// TestRecoveryRestartsUnderTraffic: two nodes with Redis, three replicas
// restarted in place within 100 ms (managerPause), one right after the
// other, round after round, while eight mcp-go sessions call, every 20 ms
// or every 400 ms: sessions are recovered from a replica that is
// restarting onto one that restarts next, or meet their replica's new
// process only on their next call. No request that reached Kong after a
// replica's process exited may reach its new process (the replicas
// count), and every session works at the end. Four rounds; twenty in the
// long profile (MCP_RELAY_SOAK=long, make soak).
func TestRecoveryRestartsUnderTraffic(t *testing.T) {
	rounds := 4
	if os.Getenv("MCP_RELAY_SOAK") == "long" {
		rounds = 20
	}
	g := newUserRig(t, "redis", 3)
	const sessions = 8
	// Half the sessions call every 20 ms, and meet a replica while it is
	// down; the others every 400 ms, mostly after its new process listens.
	pace := func(i int) time.Duration {
		if i%2 == 0 {
			return 20 * time.Millisecond
		}
		return 400 * time.Millisecond
	}
	clients := make([]*mcptest.Client, sessions)
	for i := range clients {
		clients[i] = g.client(t, i < 2)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, failed [sessions]int // each written by its session's goroutine
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
				calls[i]++
				if _, err := whoami(c); err != nil {
					failed[i]++
				}
				time.Sleep(pace(i))
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	var gaps []time.Duration
	for range rounds {
		for _, r := range g.replicas {
			gaps = append(gaps, g.restartInPlace(r, managerPause))
		}
		time.Sleep(700 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for i, c := range clients {
		if name, err := whoami(c); err != nil || name == "" {
			t.Errorf("session %d after the restarts: %q %v", i, name, err)
		}
	}
	if mis := g.misroutes(); mis != 0 {
		t.Errorf("%d requests reached a replica that did not mint their session id", mis)
	}
	var summary []string
	for i := range sessions {
		summary = append(summary, fmt.Sprintf("%d/%d", calls[i], failed[i]))
	}
	t.Logf("%d restarts in place (kill to listening %v .. %v); calls/failed per session %s; recovered %v",
		len(gaps), slices.Min(gaps), slices.Max(gaps), strings.Join(summary, " "), g.metric("mcp_relay_sessions_recovered_total"))
}

// TestRecoveryAcceptance: two gateway nodes sharing Redis, three replicas,
// an mcp-go and a TypeScript SDK client that never initialize again, plus
// background mcp-go sessions calling every 50 ms. The replicas go through a
// kill, a restart in place within 100 ms (managerPause), and a rolling
// replacement of every replica by new ones on new addresses (real Kong
// reloads each node for each target change). Afterwards every session still works, elicitation and sampling
// included, and no request reached a replica with a session id it did not
// mint. Calls of the background sessions may fail only while a replica
// they were on was being killed (in flight, or before the node noticed).
func TestRecoveryAcceptance(t *testing.T) {
	g := newUserRig(t, "redis", 3)
	goClient := g.client(t, true)
	if _, err := whoami(goClient); err != nil {
		t.Fatal(err)
	}
	if err := askAndSample(goClient); err != nil {
		t.Fatalf("mcp-go at the start: %v", err)
	}
	const phases = 3 // kill, restart in place, rolling replacement
	ts := g.startTS(t, phases)
	ts.ready(0)

	const background = 8
	var log callLog
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range background {
		c := g.client(t, i < 2)
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
				log.add(callRecord{start: start, end: time.Now(), err: err, session: i})
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	// A kill window lasts from the kill until a second after the nodes saw
	// it; a reload window from a target change until a second after it.
	// Real Kong reloads the node for it: a request Kong had sent to the
	// plugin process that stops gets Kong's plain 500 ("pluginserver error:
	// connection reset by peer"), and the front balancer's kept-alive
	// connections that nginx closes under a request fail.
	var windows, reloads [][2]time.Time
	mark := func(from time.Time) { windows = append(windows, [2]time.Time{from, time.Now().Add(time.Second)}) }
	setTargets := func(targets []string) {
		from := time.Now()
		g.setTargets(targets)
		reloads = append(reloads, [2]time.Time{from, time.Now().Add(time.Second)})
	}
	at := func(what string) { t.Logf("%s %s", time.Now().Format("15:04:05.000"), what) }
	check := func(phase string) {
		t.Helper()
		if _, err := whoami(goClient); err != nil {
			t.Fatalf("%s: mcp-go whoami: %v", phase, err)
		}
		if err := askAndSample(goClient); err != nil {
			t.Fatalf("%s: mcp-go: %v", phase, err)
		}
		if mis := g.misroutes(); mis != 0 {
			t.Fatalf("%s: %d requests reached a replica that did not mint their session id", phase, mis)
		}
	}
	time.Sleep(500 * time.Millisecond)

	// 1. A replica crashes.
	victim := g.replicas[0]
	at("kill " + victim.Name())
	killed := time.Now()
	g.kill(victim)
	g.waitDown(1)
	mark(killed)
	check("kill")
	ts.next(0)
	ts.ready(1)

	// 2. Each live replica restarts in place.
	var gaps []time.Duration
	for _, r := range g.replicas[1:] {
		at("restart " + r.Name())
		from := time.Now()
		gaps = append(gaps, g.restartInPlace(r, managerPause))
		mark(from)
	}
	check("restart in place")
	ts.next(1)
	ts.ready(2)

	// 3. Rolling replacement: a new replica joins, an old one leaves and
	// dies, one at a time (the killed one is replaced too).
	live := slices.DeleteFunc(slices.Clone(g.replicas), func(r *peers.Replica) bool { return !r.Running() })
	at("targets without " + victim.Name())
	setTargets(addrs(live...))
	for i, old := range live {
		fresh := peers.StartLegacy(t, fmt.Sprintf("new-%d", i+1))
		g.replicas = append(g.replicas, fresh)
		at("add " + fresh.Name())
		setTargets(append(slices.Clone(g.targets), fresh.Addr()))
		at("remove " + old.Name())
		setTargets(slices.DeleteFunc(slices.Clone(g.targets), func(a string) bool { return a == old.Addr() }))
		at("kill " + old.Name())
		from := time.Now()
		g.kill(old)
		mark(from)
		time.Sleep(time.Second)
	}
	if len(live) < 3 { // the first victim's place
		fresh := peers.StartLegacy(t, "new-3")
		g.replicas = append(g.replicas, fresh)
		setTargets(append(slices.Clone(g.targets), fresh.Addr()))
	}
	check("rolling replacement")
	ts.next(2)
	ts.ready(3)
	close(stop)
	wg.Wait()

	names := ts.check()
	failed, inKills, inReloads, total := log.failedOutside(windows, reloads)

	for i, c := range failed {
		if i < 5 {
			t.Errorf("background session %d: call at %v failed outside the kill and reload windows: %v", c.session, c.start.Format("15:04:05.000"), c.err)
		}
	}
	newNames := map[string]bool{"new-1": true, "new-2": true, "new-3": true}
	if name, err := whoami(goClient); err != nil || !newNames[name] {
		t.Errorf("mcp-go after the roll: %q %v, want a new replica", name, err)
	}
	if last := names[len(names)-1]; !newNames[last] {
		t.Errorf("TypeScript whoami after the roll: %q, want a new replica (all: %v)", last, names)
	}
	if mis := g.misroutes(); mis != 0 {
		t.Errorf("%d requests reached a replica that did not mint their session id", mis)
	}
	var status []string
	for _, h := range ts.res.HTTP {
		status = append(status, fmt.Sprint(h.Status))
	}
	t.Logf("restarts in place: kill to listening %v; background: %d calls, %d failed in kill windows, %d in reload windows (Kong's 500 or the front balancer's 502), %d failed otherwise; "+
		"TypeScript whoami %v, HTTP statuses %s; recovered %v, through Kong's balancer %v (the last plugin processes)",
		gaps, total, inKills, inReloads, len(failed), names, strings.Join(status, " "),
		g.metric("mcp_relay_sessions_recovered_total"), g.metric("mcp_relay_recoveries_via_balancer_total"))
}

// TestPDKCallBudgetViaBalancer counts what a recovery through Kong's
// balancer costs the request that runs it (the stand-in counts; real Kong
// cannot), besides what it read as any request (headers, and the body or
// the method: 2): Access reads upstream_scheme and upstream_uri (2), turns
// the request into the initialize (3, a GET 4) and leaves the Response
// phase its note (1): 8, a GET 9. Response reads the status and the note
// (2; while a recovery is under way every buffered answer's Response reads
// the note), the new session id, the initialize's answer, the route and
// upstream_host, and answers (5; a streamed POST's 307 reads request_uri
// too): 7, or 8. Kong's log lines a request flushes (kong.log.*) are not
// counted: they are the watch's, written where the plugin already is.
// Healthy requests pay nothing for it (TestPDKCallBudget).
func TestPDKCallBudgetViaBalancer(t *testing.T) {
	needStandin(t, "PDK call counts are the stand-in's records")
	for _, c := range []struct {
		name           string
		send           func(t *testing.T, c *rawMCP, base string) rpcResult
		status         int
		access, answer int // PDK calls in Access and Response
	}{
		{"streamed POST (tools/call), answered 307", func(t *testing.T, c *rawMCP, base string) rpcResult {
			return c.request(t, base, "tools/call", `{"name":"whoami","arguments":{}}`)
		}, http.StatusTemporaryRedirect, 2 + 2 + 3 + 1, 2 + 5 + 1},
		{"buffered POST (tools/list), sent again", func(t *testing.T, c *rawMCP, base string) rpcResult {
			return c.request(t, base, "tools/list", "")
		}, http.StatusOK, 2 + 2 + 3 + 1, 2 + 5},
		{"GET stream, answered retry", func(t *testing.T, c *rawMCP, base string) rpcResult {
			req, _ := http.NewRequest(http.MethodGet, base+"/mcp", nil)
			req.Header.Set("Accept", "text/event-stream")
			c.headers(req)
			return c.do(t, req)
		}, http.StatusOK, 2 + 2 + 4 + 1, 2 + 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			seen, unseen := peers.StartLegacy(t, "seen"), peers.StartLegacy(t, "unseen")
			var recs recordLog
			m := freeport.Addr(t)
			node := startNode(t, deck(t, deckOptions{}), addrs(seen), withRecords(&recs), withMetrics(m))
			raw := newPinRaw(demoKey, 10*time.Second)
			raw.client = &http.Client{Timeout: 10 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			raw.initialize(t, node.URL())
			raw.initialized(t, node.URL())
			if err := node.SetTargets(upstream, addrs(seen, unseen)); err != nil {
				t.Fatal(err)
			}
			seen.Kill()
			for metrics(t, m)["mcp_relay_replicas_down"] < 1 {
				time.Sleep(20 * time.Millisecond)
			}
			r := c.send(t, raw, node.URL())
			rec := recs.of(t, r)
			if r.Status != c.status || metrics(t, m)["mcp_relay_recoveries_via_balancer_total"] != 1 {
				t.Fatalf("status %d (want %d), recoveries through the balancer %v: %s", r.Status, c.status,
					metrics(t, m)["mcp_relay_recoveries_via_balancer_total"], r.Body)
			}
			access, answer := rec.PhaseCalls("access")-kongLogCalls(rec, "access"), rec.PhaseCalls("response")-kongLogCalls(rec, "response")
			t.Logf("%d PDK calls in Access %v, %d in Response %v", access, rec.Calls["access"], answer, rec.Calls["response"])
			if access != c.access || answer != c.answer {
				t.Errorf("PDK calls: Access %d (want %d), Response %d (want %d)", access, c.access, answer, c.answer)
			}
			// The recovered session's next request costs what any recovered
			// session's does.
			name, r := raw.whoami(t, node.URL())
			if next := recs.of(t, r); name != "unseen" || pdkCalls(next) != 6 {
				t.Errorf("next request: %q, %d PDK calls (want 6): %v", name, pdkCalls(next), next.Calls)
			}
		})
	}
}

// kongLogCalls counts the kong.log.* calls a phase made: Kong's log lines
// the plugin flushes where it already is.
func kongLogCalls(rec standin.RequestRecord, phase string) int {
	n := 0
	for m, c := range rec.Calls[phase] {
		if strings.HasPrefix(m, "kong.log.") {
			n += c
		}
	}
	return n
}
