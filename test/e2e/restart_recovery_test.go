package e2e

// Session recovery and the memory store's sessions file together: clients
// that never initialize again keep working across plugin restarts, a
// recovered session (alias records) keeps its new replica across them, and
// a replica lost while the plugin restarts is recovered from after it.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// restartKind is one way the plugin process goes away: Kong's stop
// (SIGTERM, the store is written on the way out), or a crash (SIGKILL) that
// comes after a periodic write holding every record.
type restartKind struct {
	name  string
	crash bool
}

var restartKinds = []restartKind{{"SIGTERM", false}, {"SIGKILL after a periodic write", true}}

// restartRecoveryRig is one stand-in node with the memory store (the
// default kong/kong.yaml, with quick replica probes) in front of legacy
// mcp-go replicas, writing its sessions file every second.
type restartRecoveryRig struct {
	*recoveryRig
}

func newRestartRecoveryRig(t *testing.T, replicas int) *restartRecoveryRig {
	t.Helper()
	g := &restartRecoveryRig{recoveryRig: &recoveryRig{t: t, store: "memory", replicas: startLegacyReplicas(t, replicas)}}
	g.targets = addrs(g.replicas...)
	m := freeport.Addr(t)
	cfg := deck(t, deckOptions{relay: map[string]any{"session": map[string]any{"replica_probe_ms": recoveryProbeMS}}})
	node := startNode(t, cfg, g.targets, withMetrics(m), withPluginArgs("-sessions-write-interval", "1s"))
	g.nodes, g.metrics, g.url = []gateway{node}, []string{m}, node.URL()+"/mcp"
	return g
}

// minted is every session id the replicas minted, the killed ones'
// (killed) included: with recovery, the memory store holds one record for
// each.
func (g *restartRecoveryRig) minted(killed int64) int64 {
	n := killed
	for _, r := range g.replicas {
		if r.Running() {
			n += r.MustStats(g.t).SessionsCreated
		}
	}
	return n
}

// restartPlugin stops the plugin process as kind says and waits (bounded)
// for the node to spawn the next one. For a crash it first waits for a
// periodic write that holds records records. It returns when the signal
// was sent.
func (g *restartRecoveryRig) restartPlugin(kind restartKind, records int64) time.Time {
	g.t.Helper()
	if kind.crash {
		g.waitWrite(records)
	}
	node := g.nodes[0]
	pid, starts := node.PluginPID(), node.PluginStarts()
	sent := time.Now()
	var err error
	if kind.crash {
		err = node.KillPlugin()
	} else {
		err = node.TerminatePlugin()
	}
	if err != nil {
		g.t.Fatal(err)
	}
	g.waitRespawn(pid, starts)
	return sent
}

// waitWrite waits (bounded) until the sessions file holds records records:
// a periodic write of this process, or, when nothing changed since it
// restored them (a session's use is noted at most once a second), the
// file it restored them from.
func (g *restartRecoveryRig) waitWrite(records int64) {
	g.t.Helper()
	for i := 0; ; i++ {
		m := metrics(g.t, g.metrics[0])
		if m["mcp_relay_snapshot_records"] == float64(records) ||
			m["mcp_relay_snapshot_writes_total"] == 0 && m["mcp_relay_sessions_restored_total"] == float64(records) {
			return
		}
		if i == 100 {
			g.t.Fatalf("no periodic write of %d records within 10 s: %v (restored %v, writes %v)", records,
				m["mcp_relay_snapshot_records"], m["mcp_relay_sessions_restored_total"], m["mcp_relay_snapshot_writes_total"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (g *restartRecoveryRig) waitRespawn(pid, starts int) {
	g.t.Helper()
	node := g.nodes[0]
	for range 200 { // up to 10 s
		if p := node.PluginPID(); p != 0 && p != pid && node.PluginStarts() > starts {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("plugin not respawned within 10 s (starts %d)", node.PluginStarts())
}

// listening tells whether the latest plugin process has opened its socket
// (go-pdk logs it; Kong answers 500 until then).
func (g *restartRecoveryRig) listening() bool {
	return strings.Count(g.nodes[0].pluginOutput(), "Listening on socket: ") >= g.nodes[0].PluginStarts()
}

// waitFile waits (bounded) for a file the TypeScript client creates.
func waitFile(t *testing.T, path string, done <-chan struct{}) {
	t.Helper()
	for range 600 { // up to 60 s
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-done:
			t.Fatalf("the TypeScript client ended before creating %s", filepath.Base(path))
		default:
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the TypeScript client did not create %s within 60 s", filepath.Base(path))
}

// TestRestartClientsKeepWorking: an mcp-go client and the TypeScript SDK's
// Client, each one client object that never initializes again, keep their
// session across a graceful plugin restart and a crash with the memory
// store: the only errors they may see are Kong's plain 500s right after
// the restart, and elicitation and sampling work after each.
func TestRestartClientsKeepWorking(t *testing.T) {
	g := newRestartRecoveryRig(t, 3)
	goClient := g.client(t, true)
	goOwner, err := whoami(goClient)
	if err != nil {
		t.Fatal(err)
	}
	if err := askAndSample(goClient); err != nil {
		t.Fatalf("mcp-go before the restarts: %v", err)
	}

	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	type outcome struct {
		res peers.NodeResult
		err error
	}
	result := make(chan outcome, 1)
	done := make(chan struct{})
	go func() {
		var o outcome
		defer func() { result <- o; close(done) }()
		after := []string{"call", "whoami", "{}", "call", "whoami", "{}", "elicitation", "sampling"}
		args := []string{"call", "whoami", "{}", "elicitation", "sampling", "touch-file", file("ready-0")}
		for i := range restartKinds {
			args = append(args, "wait-file", file(fmt.Sprintf("go-%d", i)))
			args = append(args, after...)
			args = append(args, "touch-file", file(fmt.Sprintf("ready-%d", i+1)))
		}
		o.res, o.err = peers.RunNodeClientWith(goTB{t}, peers.NodeClientOptions{
			URL: g.url, Headers: map[string]string{"apikey": demoKey}, Deadline: 120 * time.Second}, args...)
	}()
	waitFile(t, file("ready-0"), done)

	type phase struct {
		goCalls int
		// Kong's plain 500s the mcp-go client got: for calls sent before the
		// new process opened its socket, and after (pooled connections to
		// the old process's socket).
		goStarting500s, goListening500s int
		goFirst                         time.Duration // the first answered mcp-go call
		sinceSignal                     time.Duration // from the signal to that answer
	}
	phases := make([]phase, len(restartKinds))
	goCalls := 3 // whoami and askAndSample above
	for i, kind := range restartKinds {
		// Records: the mcp-go and the TypeScript sessions.
		sent := g.restartPlugin(kind, g.minted(0))
		p := &phases[i]
		// The TypeScript client goes on as soon as the new process listens,
		// alongside the mcp-go client: both meet Kong's 500s for pooled
		// connections to the old process's socket.
		goOn := make(chan error, 1)
		go func() {
			for try := 0; try < 1000 && !g.listening(); try++ { // up to 10 s
				time.Sleep(10 * time.Millisecond)
			}
			goOn <- os.WriteFile(file(fmt.Sprintf("go-%d", i)), nil, 0o600)
		}()
		// The mcp-go client calls on at once, as an application would, every 50 ms
		// while Kong answers 500 (bounded: 10 s).
		for try := 0; ; try++ {
			listening := g.listening()
			start := time.Now()
			name, err := whoami(goClient)
			p.goCalls++
			if err == nil {
				p.goFirst, p.sinceSignal = time.Since(start), time.Since(sent)
				if name != goOwner {
					t.Errorf("%s: mcp-go whoami %q, want %q", kind.name, name, goOwner)
				}
				break
			}
			if !isKong500(err) || try == 200 {
				t.Fatalf("%s: mcp-go call %d after the restart: %v", kind.name, try+1, err)
			}
			if listening {
				p.goListening500s++
			} else {
				p.goStarting500s++
			}
			time.Sleep(50 * time.Millisecond)
		}
		if p.goListening500s > 2 {
			t.Errorf("%s: mcp-go got %d plain 500s once the new process listened, want at most Kong's 1-2", kind.name, p.goListening500s)
		}
		if err := askAndSample(goClient); err != nil {
			t.Errorf("%s: mcp-go after the restart: %v", kind.name, err)
		}
		p.goCalls += 2
		goCalls += p.goCalls
		if err := <-goOn; err != nil {
			t.Fatal(err)
		}
		waitFile(t, file(fmt.Sprintf("ready-%d", i+1)), done)
	}
	o := <-result

	// The TypeScript client's steps, split by restart: the steps between
	// wait-file go-i and touch-file ready-(i+1) ran after restart i.
	tsOwner := ""
	tsErrors := make([]int, len(restartKinds))
	tsSteps := make([]int, len(restartKinds))
	ph := -1
	for _, s := range o.res.Steps {
		switch s.Scenario {
		case "wait-file":
			ph++
			continue
		case "touch-file", "initialize":
			if !s.OK {
				t.Errorf("TypeScript step %s failed", s.Scenario)
			}
			continue
		}
		if ph >= 0 {
			tsSteps[ph]++
		}
		if s.Scenario == "call" && s.OK {
			if tsOwner == "" {
				tsOwner = s.Text
			} else if s.Text != tsOwner {
				t.Errorf("TypeScript whoami %q after %d restarts, want %q", s.Text, ph+1, tsOwner)
			}
		}
		if s.OK {
			continue
		}
		if ph < 0 || s.Scenario != "call" || s.Error == nil || s.Error.HTTPStatus != http.StatusInternalServerError {
			t.Errorf("TypeScript %s failed (after %d restarts): %+v", s.Scenario, ph+1, s.Error)
			continue
		}
		tsErrors[ph]++
	}
	if ph != len(restartKinds)-1 {
		t.Fatalf("TypeScript client ran %d phases, want %d: %v\n%s", ph+1, len(restartKinds), o.err, o.res.Raw)
	}
	// Every failed call was one of Kong's plain 500s, and at most 2 per
	// restart: the whoami calls of a phase are its first two steps.
	tsStatus := map[int]int{}
	for _, h := range o.res.HTTP {
		tsStatus[h.Status]++
	}
	for code, n := range tsStatus {
		if code >= 400 && code != http.StatusInternalServerError {
			t.Errorf("the TypeScript client saw %d answers %d", n, code)
		}
	}
	for i, n := range tsErrors {
		if n > 2 {
			t.Errorf("%s: %d TypeScript calls failed, want at most Kong's 1-2 plain 500s", restartKinds[i].name, n)
		}
	}
	if n := tsStatus[http.StatusInternalServerError]; n != sum(tsErrors) {
		t.Errorf("the TypeScript client saw %d 500s, but %d of its calls failed", n, sum(tsErrors))
	}
	if mis := misroutes(t, g.replicas...); mis != 0 {
		t.Errorf("%d requests reached a replica that did not own their session", mis)
	}
	var replicaRequests int64
	for _, r := range g.replicas {
		replicaRequests += r.MustStats(t).RequestsTotal
	}
	for i, p := range phases {
		t.Logf("%s: mcp-go %d calls, plain 500s %d while the new process started + %d after it listened, first answered call took %v (%v after the signal); "+
			"TypeScript %d steps after the restart, %d failed (plain 500s)",
			restartKinds[i].name, p.goCalls, p.goStarting500s, p.goListening500s, p.goFirst.Round(time.Millisecond), p.sinceSignal.Round(time.Millisecond), tsSteps[i], tsErrors[i])
	}
	t.Logf("mcp-go %d tool calls on %s; TypeScript %d HTTP exchanges %v on %s; %d requests at the replicas, 0 misrouted; recoveries since the last restart: %v",
		goCalls, goOwner, len(o.res.HTTP), tsStatus, tsOwner, replicaRequests, g.metric("mcp_relay_sessions_recovered_total"))
}

// isKong500 tells Kong's plain 500 as the mcp-go client reports it: the
// body is kong/error_template.json's envelope (code -31002, which mcp-go
// reports by its message) with Kong's message for a 500.
func isKong500(err error) bool {
	return strings.Contains(err.Error(), "An unexpected error occurred")
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// TestRestartKeepsRecoveredSession: a session recovered onto another
// replica (its client's id names the new replica and upstream id, the new
// id is its alias) keeps both across a crash after a periodic write and a
// graceful restart: requests on either id reach the new replica with the
// new upstream id, nothing is recovered again, and a DELETE of either id
// ends both.
func TestRestartKeepsRecoveredSession(t *testing.T) {
	g := newRestartRecoveryRig(t, 3)
	g.coverReplicas()
	base := g.nodes[0].URL()

	// Two sessions on one replica: one ended later by its client's id, one
	// by its new upstream id.
	first := newPinRaw(demoKey, 10*time.Second)
	first.initialize(t, base)
	first.initialized(t, base)
	dead, _ := first.whoami(t, base)
	if dead == "" {
		t.Fatal("whoami gave no replica name")
	}
	sessions := []*rawMCP{first}
	for try := 0; len(sessions) < 2; try++ {
		if try == 30 {
			t.Fatalf("30 sessions, none on %s", dead)
		}
		c := newPinRaw(demoKey, 10*time.Second)
		c.initialize(t, base)
		c.initialized(t, base)
		if name, _ := c.whoami(t, base); name == dead {
			sessions = append(sessions, c)
		}
	}
	victim := g.byName(dead)
	killedMinted := victim.MustStats(t).SessionsCreated
	g.kill(victim)
	g.waitDown(1)

	// Each session is recovered, one at a time: its new upstream id is
	// the one session its new replica minted meanwhile.
	type recovered struct {
		client, alias *rawMCP
		upstream      string
		owner         string
	}
	var recs []recovered
	for i, c := range sessions {
		minted := map[string][]string{}
		for _, r := range g.replicas {
			if r.Running() {
				minted[r.Name()] = r.MustStats(t).Sessions
			}
		}
		name, r := c.whoami(t, base)
		if r.Status != http.StatusOK || name == "" || name == dead {
			t.Fatalf("session %d after its replica died: %d %q", i, r.Status, name)
		}
		fresh := slices.DeleteFunc(g.byName(name).MustStats(t).Sessions, func(id string) bool { return slices.Contains(minted[name], id) })
		if len(fresh) != 1 {
			t.Fatalf("session %d: %s minted %d sessions during its recovery, want 1", i, name, len(fresh))
		}
		up := fresh[0]
		if got := g.byName(name).MustStats(t).RequestsBySession[up]; got < 2 {
			t.Fatalf("session %d: %s saw %d requests with the new upstream id, want the replayed notifications/initialized and the call", i, name, got)
		}
		alias := newPinRaw(demoKey, 10*time.Second)
		alias.session = up
		recs = append(recs, recovered{client: c, alias: alias, upstream: up, owner: name})
	}
	if n := g.metric("mcp_relay_sessions_recovered_total"); n != float64(len(sessions)) {
		t.Fatalf("sessions_recovered_total = %v, want %d", n, len(sessions))
	}

	// Crash first: the alias records then come back only from a periodic write.
	kinds := []restartKind{restartKinds[1], restartKinds[0]}
	for _, kind := range kinds {
		before := map[string]int64{}
		for _, s := range recs {
			before[s.upstream] = g.byName(s.owner).MustStats(t).RequestsBySession[s.upstream]
		}
		sent := g.restartPlugin(kind, g.minted(killedMinted))
		n500 := 0
		var firstCall time.Duration
		for i, s := range recs {
			for j, c := range []*rawMCP{s.client, s.alias} {
				start := time.Now()
				r, n := whoamiAfterRestart(t, c, base)
				if i == 0 && j == 0 {
					firstCall = time.Since(start)
				}
				n500 += n
				if r.status != http.StatusOK || r.text != s.owner {
					t.Errorf("%s: session %d by its %s id: %d %q, want 200 from %s", kind.name, i, []string{"client's", "upstream"}[j], r.status, r.text, s.owner)
				}
			}
			if got := g.byName(s.owner).MustStats(t).RequestsBySession[s.upstream] - before[s.upstream]; got != 2 {
				t.Errorf("%s: session %d: %s saw %d requests with the upstream id, want 2", kind.name, i, s.owner, got)
			}
		}
		if n := g.metric("mcp_relay_sessions_recovered_total"); n != 0 {
			t.Errorf("%s: %v sessions recovered again after the restart", kind.name, n)
		}
		if mis := misroutes(t, g.replicas...) + g.goneMis; mis != 0 {
			t.Errorf("%s: %d requests reached a replica that did not own their session", kind.name, mis)
		}
		t.Logf("%s: %d requests on recovered sessions answered by their new replica, %d plain 500s first; the first one answered in %v (500s and 100 ms retry pauses included), %v after the signal",
			kind.name, 2*len(recs), n500, firstCall.Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
	}

	// DELETE by the client's id ends the upstream id too, and the reverse.
	for i, s := range recs {
		del, other := s.client, s.alias
		if i == 1 {
			del, other = s.alias, s.client
		}
		if r := del.delete(t, base); r.Status != http.StatusOK {
			t.Errorf("session %d: DELETE: %d %s", i, r.Status, r.Body)
		}
		if r := tryWhoami(other, base); r.status != http.StatusNotFound {
			t.Errorf("session %d: the other id after the DELETE: %d %q, want 404", i, r.status, r.text)
		}
		if r := tryWhoami(del, base); r.status != http.StatusNotFound {
			t.Errorf("session %d: the deleted id: %d %q, want 404", i, r.status, r.text)
		}
	}
	if mis := misroutes(t, g.replicas...) + g.goneMis; mis != 0 {
		t.Errorf("%d requests reached a replica that did not own their session", mis)
	}
}

// TestRestartRecoversReplicaLostMeanwhile: a replica dies while the plugin
// process restarts. The new process knows no replica from its own
// traffic yet; the replicas of the sessions it restored are known again at
// start, so the dead replica's session is recovered on one of them on its
// first requests, even when no other session sends any.
func TestRestartRecoversReplicaLostMeanwhile(t *testing.T) {
	for _, kind := range restartKinds {
		t.Run(strings.Fields(kind.name)[0], func(t *testing.T) {
			g := newRestartRecoveryRig(t, 3)
			g.coverReplicas()
			base := g.nodes[0].URL()
			c := newPinRaw(demoKey, 10*time.Second)
			c.initialize(t, base)
			c.initialized(t, base)
			dead, _ := c.whoami(t, base)
			victim := g.byName(dead)
			records := g.minted(0)

			node := g.nodes[0]
			if kind.crash {
				g.waitWrite(records)
			}
			pid, starts := node.PluginPID(), node.PluginStarts()
			var err error
			if kind.crash {
				err = node.KillPlugin()
			} else {
				err = node.TerminatePlugin()
			}
			if err != nil {
				t.Fatal(err)
			}
			g.kill(victim) // while the plugin process restarts
			g.waitRespawn(pid, starts)

			// Only this session sends requests. Its first pins the dead
			// replica, whose probe then fails; requests sent before that
			// get Kong's 502 (as without a restart), none a 404.
			var statuses []int
			recoveredOn := ""
			for try := 0; try < 50 && recoveredOn == ""; try++ { // up to 5 s and more
				r := tryWhoami(c, base)
				if r.err != nil {
					t.Fatalf("transport error: %v", r.err)
				}
				statuses = append(statuses, r.status)
				switch r.status {
				case http.StatusOK:
					recoveredOn = r.text
				case http.StatusInternalServerError, http.StatusBadGateway:
				default:
					t.Fatalf("after the restart: %d %q (statuses so far %v)", r.status, r.text, statuses)
				}
				if recoveredOn == "" {
					time.Sleep(100 * time.Millisecond)
				}
			}
			if recoveredOn == "" || recoveredOn == dead {
				t.Fatalf("session answered by %q after %v, want a live replica", recoveredOn, statuses)
			}
			for i := range 3 {
				if name, r := c.whoami(t, base); name != recoveredOn {
					t.Errorf("call %d after the recovery: %d %q, want %s", i, r.Status, name, recoveredOn)
				}
			}
			if n := g.metric("mcp_relay_sessions_recovered_total"); n != 1 {
				t.Errorf("sessions_recovered_total = %v, want 1", n)
			}
			if n := g.metric(`mcp_relay_recovery_failures_total{reason="no_replica"}`); n != 0 {
				t.Errorf("recovery_failures_total{reason=no_replica} = %v", n)
			}
			if mis := misroutes(t, g.replicas...) + g.goneMis; mis != 0 {
				t.Errorf("%d requests reached a replica that did not own their session", mis)
			}
			t.Logf("%s with %s killed meanwhile: answers %v, then recovered on %s; %s", kind.name, dead, statuses, recoveredOn, g.recoveryLatency())
		})
	}
}
