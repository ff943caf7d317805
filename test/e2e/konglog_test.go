package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// kongLines returns the lines of Kong's own error log (not the plugin's
// stderr, which Kong logs at info) that contain every word.
func kongLines(node gateway, words ...string) []string {
	return linesWith(node.kongLog(), words...)
}

// waitMetric polls the plugin's metrics until name has the value want
// (bounded: 100 polls).
func waitMetric(t *testing.T, addr, name string, want float64) {
	t.Helper()
	var got float64
	for range 100 {
		if got = metrics(t, addr)[name]; got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s stayed %v, want %v", name, got, want)
}

// Redis down when Kong starts the instance: an error in Kong's own log at
// its default level (through kong.log.err, written by the next request), the
// store_up gauge at 0, and a notice when Redis is back, with store_up 1.
func TestRedisDownAtStartReachesKongLog(t *testing.T) {
	rs := redistest.StartServer(t)
	rs.Stop() // its port is now known and closed
	replica := peers.StartLegacy(t, "kl-replica")
	metricsAddr := freeport.Addr(t)
	var recs recordLog
	node := startNode(t, deck(t, deckOptions{relay: redisSession(rs.Host(), rs.Port(),
		map[string]any{"redis": map[string]any{"timeout": 300}})}), addrs(replica),
		withMetrics(metricsAddr), withRecords(&recs)) // log level: Kong's default, notice

	// The first request starts the instance, whose store check fails (a
	// refused connection); that request writes the error.
	c := newRaw(demoKey)
	r := c.request(t, node.URL(), "ping", "")
	if onStandin(t, "the first request makes the one kong.log.err call", "PDK call records are the stand-in's") {
		if rec := recs.of(t, r); rec.InstanceStarts != 1 || callsOf(rec, "kong.log.err") != 1 {
			t.Errorf("first request: %d instance starts, calls %v, want one kong.log.err", rec.InstanceStarts, rec.Calls)
		}
	}
	waitMetric(t, metricsAddr, "mcp_relay_store_up", 0)
	c.request(t, node.URL(), "ping", "")
	unreachable := []string{"[error]", "plugin=mcp-relay", "session store unreachable", fmt.Sprint(rs.Port())}
	waitLogLines(t, node.kongLog, 10*time.Second, unreachable...)
	waitServed(t, node, 2, 10*time.Second)
	if got := kongLines(node, unreachable...); len(got) != 1 {
		t.Fatalf("Kong's log has %d store errors, want 1:\n%s", len(got), node.kongLog())
	}
	if strings.Contains(node.kongLog(), "redis_password") {
		t.Error("a password field reached the log")
	}

	rs.Start()
	// The watcher retries with backoff (at most 5 s apart); then the next
	// request writes the notice.
	deadline := time.Now().Add(30 * time.Second)
	for metrics(t, metricsAddr)["mcp_relay_store_up"] != 1 {
		if time.Now().After(deadline) {
			t.Fatal("store_up stayed 0 after Redis came back")
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.request(t, node.URL(), "ping", "")
	reachable := []string{"[notice]", "plugin=mcp-relay", "session store reachable again"}
	waitLogLines(t, node.kongLog, 10*time.Second, reachable...)
	waitServed(t, node, 3, 10*time.Second)
	if got := kongLines(node, reachable...); len(got) != 1 {
		t.Fatalf("Kong's log has %d store notices, want 1:\n%s", len(got), node.kongLog())
	}
	// Each event is one line: Kong's log got both, so stderr (Kong's log at
	// info) repeats neither.
	for _, event := range []string{"session store unreachable", "session store reachable again"} {
		if n := strings.Count(node.pluginOutput(), event); n != 0 {
			t.Errorf("plugin stderr repeats %q %d times:\n%s", event, n, node.pluginOutput())
		}
	}
}

// An anonymous request ends with kong.response.exit, after which go-pdk
// logs its write on the socket Kong closed: that line is gone, and such
// requests get no Log event.
func TestAnonymousRequestsLeaveNoNoise(t *testing.T) {
	replica := peers.StartLegacy(t, "noise-replica")
	var recs recordLog
	node := startNode(t, deck(t, deckOptions{}), addrs(replica), withRecords(&recs))
	c := newRaw("")
	for i := range 100 {
		if r := c.request(t, node.URL(), "tools/list", ""); r.Status != http.StatusOK || reasonOf(r) != "unauthorized" {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	waitServed(t, node, 100, 10*time.Second)
	if onStandin(t, "an anonymous request gets no Log event", "event records are the stand-in's") {
		for _, rec := range recs.all(t) {
			if rec.HasEvent("log") {
				t.Fatalf("an anonymous request got a Log event: %s", rec)
			}
		}
	}
	out := node.pluginOutput()
	if n := strings.Count(node.kongLog()+out, "use of closed network connection"); n != 0 {
		t.Errorf("%d closed-socket lines in the log of 100 anonymous requests", n)
	}
	if n := strings.Count(out, "\n"); n > 5 {
		t.Errorf("the plugin wrote %d lines for 100 anonymous requests:\n%s", n, out)
	}
}

// An event inside a request (another consumer presenting a session id)
// reaches Kong's log at warn through that request itself, before its
// answer, and not stderr; more of the same kind within 10 s go to stderr
// only.
func TestWarnEventReachesKongLog(t *testing.T) {
	replica := peers.StartLegacy(t, "warn-replica")
	var recs recordLog
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{"session": map[string]any{"learn_wait_ms": 20}}}),
		addrs(replica), withRecords(&recs))
	owner := newRaw(demoKey)
	if r := owner.initialize(t, node.URL()); r.Status != http.StatusOK || owner.session == "" {
		t.Fatalf("initialize: %d %s", r.Status, r.Body)
	}
	if r := owner.request(t, node.URL(), "ping", ""); r.Status != http.StatusOK { // the session is recorded
		t.Fatalf("owner's ping: %d %s", r.Status, r.Body)
	}
	thief := newRaw(otherKey)
	thief.session = owner.session
	for i := range 3 {
		r := thief.request(t, node.URL(), "ping", "")
		if r.Status != http.StatusNotFound {
			t.Fatalf("another consumer's request %d: %d %s", i, r.Status, r.Body)
		}
		if onStandin(t, "only the first such request calls kong.log.warn", "PDK call records are the stand-in's") {
			rec := recs.of(t, r)
			if want := map[bool]int{true: 1, false: 0}[i == 0]; callsOf(rec, "kong.log.warn") != want {
				t.Errorf("request %d: calls %v, want %d kong.log.warn", i, rec.Calls, want)
			}
		}
	}
	warning := []string{"[warn]", "plugin=mcp-relay", "session presented by another consumer"}
	waitLogLines(t, node.kongLog, 10*time.Second, warning...)
	waitServed(t, node, 5, 10*time.Second)
	if got := kongLines(node, warning...); len(got) != 1 {
		t.Errorf("Kong's log has %d binding warnings, want 1:\n%s", len(got), node.kongLog())
	}
	if n := strings.Count(node.pluginOutput(), "session presented by another consumer"); n != 2 {
		t.Errorf("stderr has %d binding warnings, want the 2 held back from Kong's log", n)
	}
	if strings.Contains(node.kongLog()+node.pluginOutput(), owner.session) {
		t.Error("a session id reached the log")
	}
}
