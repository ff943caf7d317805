package e2e

// End-to-end: a stopped and a paused Redis server, with store_error pass
// and reject; pinning resumes by itself when Redis is back.

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/freeport"
)

// outageReq sends one tools/call whoami and measures it; it never fails on
// the answer, only on a transport error (which includes the client timeout).
func outageReq(g goTB, c *rawMCP, url string) (string, rpcResult, time.Duration) {
	var name string
	var r rpcResult
	d := timed(func() { name, r = c.whoami(g, url) })
	return name, r, d
}

// TestRedisOutage: Redis stops, then pauses. With store_error pass, requests
// complete unpinned in bounded time; with reject they get a 503 envelope;
// pinning resumes by itself when Redis is back.
func TestRedisOutage(t *testing.T) {
	rd := redistest.StartServer(t)
	rs := startLegacyReplicas(t, 3)
	pass := deck(t, deckOptions{relay: redisSession(rd.Host(), rd.Port(),
		map[string]any{"store_error": "pass", "redis": map[string]any{"timeout": 500}})})
	reject := deck(t, deckOptions{relay: redisSession(rd.Host(), rd.Port(),
		map[string]any{"store_error": "reject", "redis": map[string]any{"timeout": 500}})})
	mA, mB := freeport.Addr(t), freeport.Addr(t)
	a := startNode(t, pass, addrs(rs...), withMetrics(mA))
	b := startNode(t, pass, addrs(rs...), withMetrics(mB))
	c := startNode(t, reject, addrs(rs...))
	d := startNode(t, reject, addrs(rs...))
	const bound = 5 * time.Second

	before := newSessions(t, a, b, rs, 6)
	rejected := newSessions(t, c, d, rs, 3)
	if mis := misroutes(t, rs...); mis != 0 {
		t.Fatalf("%d misroutes before the outage", mis)
	}

	// outage sends requests of the pass and reject sessions through every
	// node while Redis is down or paused, and checks the bound.
	outage := func(what string) {
		t.Helper()
		// Two rounds of every pass session through both nodes, every reject
		// session through both nodes, and one initialize, all at once.
		type job struct {
			s      *rawMCP
			i      int
			n      gateway
			reject bool
		}
		var jobs []job
		for range 2 {
			for i, s := range before {
				jobs = append(jobs, job{s, i, a, false}, job{s, i, b, false})
			}
		}
		for i, s := range rejected {
			jobs = append(jobs, job{s, i, c, true}, job{s, i, d, true})
		}
		jobs = append(jobs, job{nil, -1, a, false})
		var mu sync.Mutex
		var times, rtimes durations
		unpinned := 0
		forEach(t, len(jobs), len(jobs), func(g goTB, k int) {
			j := jobs[k]
			var r rpcResult
			var name string
			var took time.Duration
			switch {
			case j.s == nil: // a new session can still be created (Kong balances it)
				took = timed(func() { r = newPinRaw(demoKey, 10*time.Second).initialize(g, j.n.URL()) })
				if r.Status != http.StatusOK {
					t.Errorf("%s: initialize: %d %s", what, r.Status, r.Body)
				}
			case j.reject:
				id := fmt.Sprintf("outage-%d", k)
				took = timed(func() {
					r = j.s.post(g, j.n.URL(), `{"jsonrpc":"2.0","id":"`+id+`","method":"tools/list","params":{}}`)
				})
				if r.Status != http.StatusServiceUnavailable || reasonOf(r) != "store_unavailable" ||
					r.errorField("code") != float64(-31002) || r.Message["id"] != id {
					t.Errorf("%s: reject session %d: %d %s, want the 503 store_unavailable envelope", what, j.i, r.Status, r.Body)
				}
			default:
				name, r, took = outageReq(g, j.s, j.n.URL())
				switch {
				case r.Status == http.StatusOK && name != "":
				case r.Status == http.StatusNotFound && !pluginNotFound(r):
					mu.Lock()
					unpinned++ // balanced to a replica that does not know it
					mu.Unlock()
				default:
					t.Errorf("%s: pass session %d: %d %s", what, j.i, r.Status, r.Body)
				}
			}
			if took > bound {
				t.Errorf("%s: request %d (session %d, reject %v) took %v", what, k, j.i, j.reject, took)
			}
			mu.Lock()
			if j.reject {
				rtimes = append(rtimes, took)
			} else {
				times = append(times, took)
			}
			mu.Unlock()
		})
		t.Logf("%s, store_error pass: %d requests (one an initialize): %v; %d of them balanced to a replica that did not know the session",
			what, len(times), times, unpinned)
		t.Logf("%s, store_error reject: %d requests answered 503: %v", what, len(rtimes), rtimes)
	}

	// recovered creates sessions after Redis is back and checks they are
	// pinned again: no misroute at the replicas.
	recovered := func(what string, back time.Time) []*rawMCP {
		t.Helper()
		// Wait (bounded) until a probe session created through A is pinned
		// through B: B's pins_total counts it, and its creator answers.
		probes, pinnedAt := 0, time.Duration(0)
		for time.Since(back) < 10*time.Second && pinnedAt == 0 {
			probes++
			p := newPinRaw(demoKey, 10*time.Second)
			if r := p.initialize(t, a.URL()); r.Status != http.StatusOK || p.session == "" {
				t.Fatalf("%s: initialize: %d %s", what, r.Status, r.Body)
			}
			pins := metrics(t, mB)["mcp_relay_pins_total"]
			name, _ := p.whoami(t, b.URL())
			if metrics(t, mB)["mcp_relay_pins_total"] == pins+1 && name == creators(t, rs...)[p.session] {
				pinnedAt = time.Since(back)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if pinnedAt == 0 {
			t.Fatalf("%s: no session pinned within 10 s (%d probes)", what, probes)
		}
		t.Logf("%s: the first pinned session was created %v after Redis came back (%d probe sessions)", what, pinnedAt.Round(time.Millisecond), probes)
		for _, r := range rs {
			if err := r.ResetStats(); err != nil {
				t.Fatal(err)
			}
		}
		after := newSessions(t, a, b, rs, 6)
		for _, s := range after {
			for _, n := range []gateway{b, a, b} {
				if r := s.request(t, n.URL(), "tools/list", ""); r.Status != http.StatusOK {
					t.Errorf("%s: new session: %d %s", what, r.Status, r.Body)
				}
			}
		}
		more := newSessions(t, c, d, rs, 2)
		if mis := misroutes(t, rs...); mis != 0 {
			t.Errorf("%s: %d misroutes among sessions created after Redis came back", what, mis)
		}
		t.Logf("%s: %d new sessions pinned again through both node pairs, misroutes %d", what, len(after)+len(more), misroutes(t, rs...))
		return after
	}

	// untilUncached waits (bounded) until the reject pair's nodes answer
	// from Redis, i.e. with the 503 envelope: each node bypasses its cache
	// once it notices its event subscription is gone (at once for a stopped
	// server, after an unanswered ping for a paused one), and not before.
	untilUncached := func(what string) {
		t.Helper()
		for _, n := range []gateway{c, d} {
			rejecting := false
			for deadline := time.Now().Add(6 * time.Second); !rejecting && time.Now().Before(deadline); {
				r := rejected[0].post(goTB{t}, n.URL(), `{"jsonrpc":"2.0","id":"probe","method":"tools/list","params":{}}`)
				if rejecting = r.Status == http.StatusServiceUnavailable; !rejecting {
					time.Sleep(100 * time.Millisecond)
				}
			}
			if !rejecting {
				t.Fatalf("%s: node %s still answered from its cache 6 s later", what, n.URL())
			}
		}
	}

	rd.Stop()
	untilUncached("Redis stopped")
	outage("Redis stopped")
	rd.Start()
	afterRestart := recovered("Redis restarted (same port, empty)", time.Now())
	// The records were in the stopped Redis only: old sessions are unknown.
	for i, s := range before {
		if r := s.request(t, b.URL(), "tools/list", ""); !pluginNotFound(r) {
			t.Errorf("session %d from before the restart: %d %s, want the 404 envelope", i, r.Status, r.Body)
		}
	}

	before = afterRestart
	rejected = newSessions(t, c, d, rs, 3)
	rd.Pause()
	paused := time.Now()
	// Each node keeps serving its cached records until its subscriber
	// notices the silence (a ping unanswered); those requests stay pinned.
	// Wait (bounded) until B's lookups really reach the paused Redis: B
	// counts a store error for the probe.
	cached := 0
	for time.Since(paused) < 6*time.Second {
		errs := metrics(t, mB)["mcp_relay_store_errors_total"]
		name, r, _ := outageReq(goTB{t}, before[0], b.URL())
		if metrics(t, mB)["mcp_relay_store_errors_total"] > errs {
			break
		}
		if want := creators(t, rs...)[before[0].session]; name != want {
			t.Errorf("Redis paused, cached record: whoami %q (%d %s), want %q", name, r.Status, r.Body, want)
		}
		cached++
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("Redis paused: node B served %d requests pinned from its cache for %v, then its lookups reached Redis",
		cached, time.Since(paused).Round(time.Millisecond))
	// The reject pair's caches go stale on their own clocks.
	untilUncached("Redis paused")
	outage("Redis paused (SIGSTOP)")
	rd.Resume()
	recovered("Redis resumed", time.Now())
	for i, s := range before { // records survive a pause
		if name, r := s.whoami(t, b.URL()); name == "" {
			t.Errorf("session %d from before the pause: %d %s", i, r.Status, r.Body)
		}
	}
	ma := metrics(t, mA)
	t.Logf("node A: store_errors_total %v", ma["mcp_relay_store_errors_total"])
	if ma["mcp_relay_store_errors_total"] == 0 {
		t.Error("node A counted no store error during the outages")
	}
}
