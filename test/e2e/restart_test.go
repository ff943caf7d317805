package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
)

// restartFixture is one node with the memory store (kong/kong.yaml's
// default), two legacy replicas, raw sessions and one mcp-go client.
type restartFixture struct {
	rs          []*peers.Replica
	node        gateway
	metrics     string
	raw         []*rawMCP
	owner       map[string]string
	client      *mcptest.Client
	clientOwner string
}

// newRestartFixture starts the node with pluginArgs added to the plugin's
// start command.
func newRestartFixture(t *testing.T, pluginArgs ...string) *restartFixture {
	f := &restartFixture{rs: startLegacyReplicas(t, 2), metrics: freeport.Addr(t)}
	f.node = startNode(t, deck(t, deckOptions{}), addrs(f.rs...), withMetrics(f.metrics), withPluginArgs(pluginArgs...))
	return f
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// newSessions opens n raw sessions and checks where each is pinned.
func (f *restartFixture) newSessions(t *testing.T, n int) []*rawMCP {
	t.Helper()
	out := make([]*rawMCP, n)
	for i := range out {
		c := newPinRaw(demoKey, 10*time.Second)
		if r := c.initialize(t, f.node.URL()); r.Status != http.StatusOK || c.session == "" {
			t.Fatalf("initialize: %d %s", r.Status, r.Body)
		}
		if r := c.initialized(t, f.node.URL()); r.Status != http.StatusAccepted {
			t.Fatalf("initialized: %d %s", r.Status, r.Body)
		}
		if name, r := c.whoami(t, f.node.URL()); name == "" {
			t.Fatalf("whoami: %d %s", r.Status, r.Body)
		}
		out[i] = c
	}
	f.owner = creators(t, f.rs...)
	f.raw = append(f.raw, out...)
	return out
}

// startClient connects the mcp-go client (legacy protocol pinned) and
// checks an elicitation round trip.
func (f *restartFixture) startClient(t *testing.T) {
	t.Helper()
	c, _, err := mcptest.NewClient(t, f.node.URL()+"/mcp", mcptest.Config{
		Version: mcp.ProtocolVersion20251125, Headers: map[string]string{"apikey": demoKey}})
	if err != nil {
		t.Fatalf("mcp-go initialize: %v", err)
	}
	f.client = c
	f.clientOwner = mcptest.Text(mcptest.CallTool(t, c, "whoami", nil, nil))
	f.ask(t, "before the restart")
}

func (f *restartFixture) ask(t *testing.T, when string) {
	t.Helper()
	res, err := mcptest.CallToolErr(f.client, "ask", map[string]any{"message": "q?"}, nil, 10*time.Second)
	if err != nil || res.IsError || mcptest.Text(res) != mcptest.ElicitAnswer {
		t.Fatalf("elicitation round trip %s: %v %+v", when, err, res)
	}
}

// waitRestart waits (bounded) until the node runs a new plugin process.
func (f *restartFixture) waitRestart(t *testing.T, oldPID int) time.Duration {
	t.Helper()
	start := time.Now()
	for range 200 { // up to 10 s
		if pid := f.node.PluginPID(); pid != 0 && pid != oldPID && f.node.PluginStarts() >= 2 {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("plugin not respawned within 10 s (starts %d)", f.node.PluginStarts())
	return 0
}

// whoamiAfterRestart asks a session's replica, retrying only Kong's own
// plain 500s (requests on pooled connections to the old process's socket,
// kong/runloop/plugin_servers/rpc/pb_rpc.lua); it returns the answer and
// how many 500s it took.
func whoamiAfterRestart(t *testing.T, c *rawMCP, url string) (tryResult, int) {
	t.Helper()
	n500 := 0
	for range 5 {
		r := tryWhoami(c, url)
		if r.err != nil {
			t.Fatalf("transport error after the restart: %v", r.err)
		}
		if r.status != http.StatusInternalServerError {
			return r, n500
		}
		n500++
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("5 plain 500s in a row after the restart")
	return tryResult{}, n500
}

// checkPinned checks that every session still reaches its creator, and that
// the mcp-go client works (a call, then an elicitation round trip). It
// returns how many of Kong's 500s the raw sessions and the client met.
func (f *restartFixture) checkPinned(t *testing.T, sessions []*rawMCP) (raw500, client500 int) {
	t.Helper()
	for i, c := range sessions {
		r, n := whoamiAfterRestart(t, c, f.node.URL())
		raw500 += n
		if r.status != http.StatusOK || r.text != f.owner[c.session] {
			t.Errorf("session %d after the restart: %d %q, want 200 from %q", i, r.status, r.text, f.owner[c.session])
		}
	}
	var err error
	var res *mcp.CallToolResult
	for range 3 {
		res, err = mcptest.CallToolErr(f.client, "whoami", nil, nil, 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), "500") {
			break
		}
		client500++
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || mcptest.Text(res) != f.clientOwner {
		t.Errorf("mcp-go client after the restart: %v %+v, want %q", err, res, f.clientOwner)
	}
	f.ask(t, "after the restart")
	return raw500, client500
}

func (f *restartFixture) sessionsFile() string {
	return filepath.Join(f.node.Prefix(), "mcp-relay.sessions")
}

// TestGracefulPluginRestartKeepsSessions: Kong stops plugin servers with
// SIGTERM (process.lua's stop_pluginservers); the plugin writes its memory
// store's sessions then, and the respawned process restores them: every
// session keeps its replica, an ended one stays ended, and the mcp-go
// client (which never re-initializes after a 404) goes on working.
func TestGracefulPluginRestartKeepsSessions(t *testing.T) {
	f := newRestartFixture(t) // default file, default 5 s interval
	sessions := f.newSessions(t, 10)
	f.startClient(t)
	ended := f.newSessions(t, 1)[0]
	if r := ended.delete(t, f.node.URL()); r.Status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.Status, r.Body)
	}
	before := metrics(t, f.metrics)
	pid := f.node.PluginPID()
	if err := f.node.TerminatePlugin(); err != nil {
		t.Fatal(err)
	}
	took := f.waitRestart(t, pid)
	raw500, client500 := f.checkPinned(t, sessions)

	if r, _ := whoamiAfterRestart(t, ended, f.node.URL()); r.status != http.StatusNotFound {
		t.Errorf("ended session after the restart: %d %q, want 404", r.status, r.text)
	}
	want := len(sessions) + 2 // the raw ones, the client's, the ended one's tombstone
	out := f.node.pluginOutput()
	if !strings.Contains(out, fmt.Sprintf("restored %d sessions from %s (skipped 0 expired)", want, f.sessionsFile())) {
		t.Errorf("no start-up line for %d restored sessions in the log", want)
	}
	if !strings.Contains(out, "stopping: writing the session snapshot") {
		t.Error("the plugin did not write its sessions on SIGTERM")
	}
	if onStandin(t, "the plugin exits 0 on SIGTERM", "the real-Kong harness cannot see the plugin's exit status (its ngx.pipe shim reports 1)") &&
		!strings.Contains(f.node.kongLog(), "terminated: exit 0") {
		t.Error("the plugin did not exit cleanly on SIGTERM")
	}
	mt := metrics(t, f.metrics)
	if got := mt["mcp_relay_sessions_restored_total"]; got != float64(want) {
		t.Errorf("mcp_relay_sessions_restored_total = %v, want %d", got, want)
	}
	if mt["mcp_relay_sessions_learned_total"] != 0 {
		t.Errorf("sessions learned again after the restart: %v", mt["mcp_relay_sessions_learned_total"])
	}
	fi, err := os.Stat(f.sessionsFile())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("sessions file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	if n := misroutes(t, f.rs...); n != 0 {
		t.Errorf("%d requests reached a replica that does not own their session", n)
	}
	t.Logf("SIGTERM: respawned after %v; %d sessions restored; Kong's plain 500s: %d (raw sessions), %d (mcp-go); before: learned %v",
		took.Round(time.Millisecond), want, raw500, client500, before["mcp_relay_sessions_learned_total"])
}

// TestCrashedPluginKeepsWrittenSessions: after a SIGKILL the new process
// restores what the last periodic write held; a session created after that
// write is lost (404, the client must re-initialize), all others keep their
// replica.
func TestCrashedPluginKeepsWrittenSessions(t *testing.T) {
	f := newRestartFixture(t, "-sessions-write-interval", "2s")
	sessions := f.newSessions(t, 10)
	f.startClient(t)
	written := len(sessions) + 1
	// Wait (bounded) for a periodic write that holds every session so far.
	var writes float64
	for i := 0; ; i++ {
		mt := metrics(t, f.metrics)
		if mt["mcp_relay_snapshot_records"] == float64(written) {
			writes = mt["mcp_relay_snapshot_writes_total"]
			break
		}
		if i == 100 {
			t.Fatalf("no periodic write of %d sessions within 10 s: %v records", written, mt["mcp_relay_snapshot_records"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	late := f.newSessions(t, 1)[0] // learned after that write, pinned (whoami answered)
	pid := f.node.PluginPID()
	if err := f.node.KillPlugin(); err != nil {
		t.Fatal(err)
	}
	took := f.waitRestart(t, pid)
	raw500, client500 := f.checkPinned(t, sessions)

	restored := metrics(t, f.metrics)["mcp_relay_sessions_restored_total"]
	r, _ := whoamiAfterRestart(t, late, f.node.URL())
	switch restored {
	case float64(written): // the usual case: the kill came before the next write
		if r.status != http.StatusNotFound {
			t.Errorf("session created after the last write: %d %q, want the 404 envelope", r.status, r.text)
		}
		c := newPinRaw(demoKey, 10*time.Second)
		if ir := c.initialize(t, f.node.URL()); ir.Status != http.StatusOK || c.session == "" {
			t.Errorf("re-initialize after the loss: %d", ir.Status)
		}
	case float64(written + 1): // a periodic write landed between the learn and the kill
		t.Logf("a write landed before the kill: the late session survived too")
		if r.status != http.StatusOK || r.text != f.owner[late.session] {
			t.Errorf("late session: %d %q, want 200 from %q", r.status, r.text, f.owner[late.session])
		}
	default:
		t.Errorf("restored %v sessions, want %d (or %d)", restored, written, written+1)
	}
	if n := misroutes(t, f.rs...); n != 0 {
		t.Errorf("%d requests reached a replica that does not own their session", n)
	}
	t.Logf("SIGKILL after write #%v: respawned after %v; restored %v; late session answered %d; Kong's plain 500s: %d (raw), %d (mcp-go)",
		writes, took.Round(time.Millisecond), restored, r.status, raw500, client500)
}

// TestPluginReloadMergesOldProcess: on `kong reload` the new plugin process
// starts (and reads the sessions file) before the old one is stopped. Here
// no periodic write ever happens (1 h interval), so the new process starts
// empty; the old one writes its sessions at SIGTERM and the new one merges
// them (it checks the file every 250 ms): every session keeps its replica.
func TestPluginReloadMergesOldProcess(t *testing.T) {
	f := newRestartFixture(t, "-sessions-write-interval", "1h")
	sessions := f.newSessions(t, 10)
	f.startClient(t)
	oldPID := f.node.PluginPID()
	if err := f.node.reload(); err != nil {
		t.Fatal(err)
	}
	if pid := f.node.PluginPID(); pid == oldPID || pid == 0 {
		t.Fatalf("plugin pid %d after the reload (old %d)", pid, oldPID)
	}
	want := len(sessions) + 1
	merged := fmt.Sprintf("merged %d sessions from %s, written by another process", want, f.sessionsFile())
	for i := 0; !strings.Contains(f.node.pluginOutput(), merged); i++ {
		if i == 100 {
			t.Fatalf("the new process did not merge the old one's %d sessions within 10 s", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(f.node.pluginOutput(), "no session snapshot yet") {
		t.Error("the new process found a file before the old one wrote it")
	}
	raw500, client500 := f.checkPinned(t, sessions)
	if got := metrics(t, f.metrics)["mcp_relay_sessions_restored_total"]; got != float64(want) {
		t.Errorf("mcp_relay_sessions_restored_total = %v, want %d", got, want)
	}
	if n := misroutes(t, f.rs...); n != 0 {
		t.Errorf("%d requests reached a replica that does not own their session", n)
	}
	t.Logf("reload: %d sessions merged from the old process; Kong's plain 500s: %d (raw), %d (mcp-go)", want, raw500, client500)
}

// TestReloadWithOpenStreamKeepsSessions: on `kong reload` the old worker
// serves its open requests to their end (an SSE GET stream may last
// hours) and only then stops its plugin process, while the new worker's
// process already answers every new request. The old process hands its
// memory store's sessions over as soon as the new one takes the socket, so
// no session is unknown to the new process (no periodic write happens
// here: 1 h interval), and it gives the metrics port up to it.
func TestReloadWithOpenStreamKeepsSessions(t *testing.T) {
	f := newRestartFixture(t, "-sessions-write-interval", "1h")
	sessions := f.newSessions(t, 5)
	c, _, err := mcptest.NewClient(t, f.node.URL()+"/mcp", mcptest.Config{
		Version: mcp.ProtocolVersion20251125, Listen: true, Headers: map[string]string{"apikey": demoKey}})
	if err != nil {
		t.Fatalf("mcp-go initialize: %v", err)
	}
	owner := mcptest.Text(mcptest.CallTool(t, c, "whoami", nil, nil))
	started := metrics(t, f.metrics)["process_start_time_seconds"]
	oldPID := f.node.PluginPID()
	if err := f.node.reload(); err != nil {
		t.Fatal(err)
	}
	reloaded := time.Now()
	if pid := f.node.PluginPID(); pid == oldPID || pid == 0 {
		t.Fatalf("plugin pid %d after the reload (old %d)", pid, oldPID)
	}
	// At once, with the old process still serving the open GET stream.
	var plain500 int
	for i, s := range sessions {
		r, n := whoamiAfterRestart(t, s, f.node.URL())
		plain500 += n
		if r.status != http.StatusOK || r.text != f.owner[s.session] {
			t.Errorf("session %d right after the reload: %d %q, want 200 from %q", i, r.status, r.text, f.owner[s.session])
		}
	}
	took := time.Since(reloaded)
	if name, err := whoami(c); err != nil || name != owner {
		t.Errorf("mcp-go client (its GET stream open) after the reload: %q %v, want %q", name, err, owner)
	}
	if n := misroutes(t, f.rs...); n != 0 {
		t.Errorf("%d requests reached a replica that does not own their session", n)
	}
	// The metrics port: the new process serves it once the old one left it.
	var now float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if now = metrics(t, f.metrics)["process_start_time_seconds"]; now > started {
			break
		}
	}
	if now <= started {
		t.Errorf("the metrics port still serves the old plugin process 5 s after the reload")
	}
	t.Logf("reload with a GET stream open: %d sessions answered by their replica within %v of the reload (Kong's plain 500s: %d)",
		len(sessions), took.Round(time.Millisecond), plain500)
}
