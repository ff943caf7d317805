package e2e

// New sessions are learned in the initialize's Response phase, before the
// client has the answer; Kong runs no Log phase for mcp-relay unless it is
// started with -log-phase, which routes with preserve_host need. These
// tests run through the stand-in, or through real Kong nodes when
// MCP_RELAY_GATEWAY=kong.

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// learnNode is one gateway node and Kong's error log.
type learnNode struct {
	url     string
	kongLog func() string
}

// learnNodes starts n gateway nodes in front of targets. logPhase starts
// mcp-relay with -log-phase (start and query commands); listen, when set,
// is the only node's address.
func learnNodes(t *testing.T, n int, deckYAML []byte, targets []string, logPhase bool, listen string) []learnNode {
	t.Helper()
	var out []learnNode
	for range n {
		var opts []nodeOption
		if listen != "" {
			opts = append(opts, withListen(listen))
		}
		if logPhase {
			opts = append(opts, withLogPhase)
		}
		node := startNode(t, deckYAML, targets, opts...)
		out = append(out, learnNode{url: node.URL(), kongLog: node.kongLog})
	}
	return out
}

// TestSessionRecordedBeforeItsAnswer: two nodes share Redis with
// learn_wait_ms 0, and every client sends its next request through the
// other node the instant the initialize answer arrives. Each finds its
// session pinned: the record was written before the answer left the first
// node (learned in the Log phase, after the answer, some would not be).
// A session's DELETE ends it in Redis before its answer, and the other
// node drops its cached copy as the end event reaches it: the next request
// through that node gets the plugin's 404, or, when it outran the event
// (1 session in 1,800 on a loaded two-core machine), the 404
// of the session's own replica, which ended it. Never another replica's
// answer, never a 2xx.
func TestSessionRecordedBeforeItsAnswer(t *testing.T) {
	rd := redistest.StartServer(t)
	rs := startLegacyReplicas(t, 3)
	cfg := deck(t, deckOptions{relay: redisSession(rd.Host(), rd.Port(), map[string]any{"learn_wait_ms": 0})})
	nodes := learnNodes(t, 2, cfg, addrs(rs...), false, "")

	const sessions, workers = 60, 6
	var mu sync.Mutex
	who := map[string]string{} // session id -> replica that served its next request
	var ended404s struct{ plugin, replica int }
	var wg sync.WaitGroup
	work := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c := newPinRaw(demoKey, 10*time.Second)
				if r := c.initialize(t, nodes[i%2].url); r.Status != http.StatusOK || c.session == "" {
					t.Errorf("session %d: initialize %d %s", i, r.Status, r.Body)
					continue
				}
				name, r := c.whoami(t, nodes[(i+1)%2].url) // before notifications/initialized: the fastest next request
				if name == "" {
					t.Errorf("session %d: the next request through the other node: %d %s", i, r.Status, r.Body)
					continue
				}
				mu.Lock()
				who[c.session] = name
				mu.Unlock()
				// Its DELETE ends it on both nodes before the answer (the
				// Response phase reads the note Access left).
				if r := c.delete(t, nodes[i%2].url); r.Status != http.StatusOK {
					t.Errorf("session %d: DELETE %d %s", i, r.Status, r.Body)
					continue
				}
				r = c.request(t, nodes[(i+1)%2].url, "tools/list", "")
				mu.Lock()
				switch {
				case pluginNotFound(r):
					ended404s.plugin++
				case r.Status == http.StatusNotFound && strings.Contains(string(r.Body), "Session terminated"):
					ended404s.replica++ // mcp-go's answer for a session it ended
				default:
					t.Errorf("session %d: the request after DELETE, through the other node: %d %s, want a 404", i, r.Status, r.Body)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range sessions {
		work <- i
	}
	close(work)
	wg.Wait()
	owner := creators(t, rs...)
	for id, name := range who {
		if owner[id] != name {
			t.Errorf("session created by %q was served by %q", owner[id], name)
		}
	}
	if n := misroutes(t, rs...); n != 0 || len(who) != sessions {
		t.Errorf("%d misrouted requests; %d of %d sessions pinned", n, len(who), sessions)
	}
	t.Logf("after DELETE, through the other node: %d plugin 404s, %d from the session's own replica (the end event not yet applied there)",
		ended404s.plugin, ended404s.replica)
}

// TestPreserveHostRouteNeedsLogPhase: on a route with preserve_host, Kong
// sends the client's Host, so the initialize's Response phase cannot tell
// which replica answered. Without -log-phase the plugin says so in Kong's
// log, naming the fix, and the session is not pinned (its next request is
// answered as for an unknown session); with -log-phase the Log phase
// learns it from Kong's balancer tries and pinned requests keep the
// client's Host.
func TestPreserveHostRouteNeedsLogPhase(t *testing.T) {
	for _, logPhase := range []bool{false, true} {
		t.Run(map[bool]string{false: "without", true: "with"}[logPhase]+" -log-phase", func(t *testing.T) {
			addr := freeport.Addr(t) // the gateway's address: the client's Host
			a := peers.StartLegacyHostChecked(t, "preserve-a", addr)
			b := peers.StartLegacyHostChecked(t, "preserve-b", addr)
			cfg := withRouteField(t, deck(t, deckOptions{}), "preserve_host", true)
			node := learnNodes(t, 1, cfg, addrs(a, b), logPhase, addr)[0]

			for i := range 3 {
				c := newRaw(demoKey)
				if r := c.initialize(t, node.url); r.Status != http.StatusOK || c.session == "" {
					t.Fatalf("session %d: initialize %d %s", i, r.Status, r.Body)
				}
				c.initialized(t, node.url)
				name, r := c.whoami(t, node.url)
				switch {
				case logPhase && (r.Status != http.StatusOK || name == ""):
					t.Fatalf("session %d: pinned tools/call %d %s", i, r.Status, r.Body)
				case !logPhase && !pluginNotFound(r):
					t.Fatalf("session %d: want the unknown-session 404 (not pinned), got %d %s", i, r.Status, r.Body)
				}
			}
			if n := misroutes(t, a, b); n != 0 {
				t.Errorf("%d misrouted requests", n)
			}
			var lines []string // Kong's own lines (the plugin's stderr is there too, at info)
			for _, l := range strings.Split(node.kongLog(), "\n") {
				if strings.Contains(l, "new session not pinned") && !strings.Contains(l, "[info]") {
					lines = append(lines, l)
				}
			}
			switch {
			case logPhase && len(lines) != 0:
				t.Errorf("with -log-phase Kong's log says %q", lines)
			case !logPhase && (len(lines) != 1 || !strings.Contains(lines[0], "[error]") ||
				!strings.Contains(lines[0], "preserve_host") || !strings.Contains(lines[0], "-log-phase")):
				t.Errorf("Kong's log has %d lines on the unpinned sessions, want one error naming preserve_host and -log-phase (once per 10 s): %q", len(lines), lines)
			default:
				t.Logf("Kong's log: %q", lines)
			}
		})
	}
}
