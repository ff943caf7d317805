package e2e

// End-to-end Redis faults beyond a stopped or frozen server (those are in
// TestRedisOutage and TestSoak): Redis answering slowly, and a Redis Cluster
// losing a master during traffic. Real redis-server processes, real
// replicas; misroutes are counted by the replicas themselves.

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

// TestRedisSlow: every answer of a real redis-server is delayed by a
// loopback proxy (slowProxy), first beyond session.redis.timeout, then
// within it.
//
//   - Beyond the timeout: with store_error pass every request is answered
//     (balanced by Kong) within a bound, none hangs; with reject it gets the
//     503 store_unavailable envelope echoing its id.
//   - Within the timeout: nothing fails and pinning stays exact (0 misroutes
//     counted at the replicas, every whoami answered by the session's
//     creator, the first request through the other node included); the
//     records written before the slowness are all still there.
func TestRedisSlow(t *testing.T) {
	const (
		timeout = 400 * time.Millisecond  // session.redis.timeout
		beyond  = 1500 * time.Millisecond // above the timeout and the subscriber's 1 s ping interval
		within  = 100 * time.Millisecond
		bound   = 3 * time.Second // every request answered within this
	)
	rd := redistest.StartServer(t)
	px := startSlowProxy(t, rd.Addr())
	rs := startLegacyReplicas(t, 3)
	relay := func(storeError string) []byte {
		return deck(t, deckOptions{relay: redisSession(px.Host(), px.Port(), map[string]any{
			"store_error": storeError, "redis": map[string]any{"timeout": int(timeout / time.Millisecond)}})})
	}
	mA, mB, mC := freeAddr(t), freeAddr(t), freeAddr(t)
	a := startNode(t, relay("pass"), addrs(rs...), withMetrics(mA), quietLog(t))
	b := startNode(t, relay("pass"), addrs(rs...), withMetrics(mB), quietLog(t))
	c := startNode(t, relay("reject"), addrs(rs...), withMetrics(mC), quietLog(t))
	storeErrors := func() float64 {
		n := 0.0
		for _, m := range []string{mA, mB, mC} {
			n += metrics(t, m)["mcp_relay_store_errors_total"]
		}
		return n
	}

	passS := newSessions(t, a, b, rs, 8)
	rejectS := newSessions(t, c, c, rs, 3)
	owner := creators(t, rs...)
	if mis := misroutes(t, rs...); mis != 0 {
		t.Fatalf("%d misroutes before Redis slowed down", mis)
	}

	// Beyond the timeout. Each node keeps serving the records it cached
	// until its subscriber's ping goes unanswered (about 1 s of quiet plus
	// the timeout); wait (bounded) until every node's lookups reach Redis.
	px.SetDelay(beyond)
	slowAt := time.Now()
	errs0, conns0 := storeErrors(), px.Conns()
	for _, n := range []*standin.Node{a, b, c} {
		reached := false
		for deadline := time.Now().Add(8 * time.Second); !reached && time.Now().Before(deadline); {
			if n == c {
				r := rejectS[0].request(t, n.URL(), "tools/list", "")
				reached = r.Status == http.StatusServiceUnavailable
			} else {
				reached = timed(func() { passS[0].request(t, n.URL(), "tools/list", "") }) >= timeout*3/4
			}
			if !reached {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if !reached {
			t.Fatalf("node %s still answered from its cache 8 s after Redis slowed down", n.URL())
		}
	}
	t.Logf("replies delayed %v (timeout %v): every node's lookups reached Redis %v later", beyond, timeout,
		time.Since(slowAt).Round(time.Millisecond))

	type job struct {
		s      *rawMCP
		n      *standin.Node
		reject bool
	}
	var jobs []job
	for range 2 {
		for _, s := range passS {
			jobs = append(jobs, job{s, a, false}, job{s, b, false})
		}
		for _, s := range rejectS {
			jobs = append(jobs, job{s, c, true})
		}
	}
	jobs = append(jobs, job{nil, a, false}, job{nil, b, false}) // new sessions: never looked up
	var (
		mu                              sync.Mutex
		passTimes, rejectTimes, initT   durations
		byCreator, balanced, replica404 int
	)
	forEach(t, len(jobs), len(jobs), func(g goTB, k int) {
		j := jobs[k]
		var r rpcResult
		id := fmt.Sprintf("slow-%d", k)
		body := `{"jsonrpc":"2.0","id":"` + id + `","method":"tools/call","params":{"name":"whoami","arguments":{}}}`
		var took time.Duration
		if j.s == nil {
			took = timed(func() { r = newPinRaw(demoKey, 2*bound).initialize(g, j.n.URL()) })
		} else {
			took = timed(func() { r = j.s.post(g, j.n.URL(), body) })
		}
		mu.Lock()
		defer mu.Unlock()
		if took > bound {
			t.Errorf("slow Redis: request %d (reject %v) answered after %v, more than %v", k, j.reject, took, bound)
		}
		switch {
		case j.s == nil:
			initT = append(initT, took)
			if r.Status != http.StatusOK || r.Header.Get("Mcp-Session-Id") == "" {
				t.Errorf("slow Redis: initialize: %d %s", r.Status, r.Body)
			}
		case j.reject:
			rejectTimes = append(rejectTimes, took)
			if r.Status != http.StatusServiceUnavailable || reasonOf(r) != "store_unavailable" ||
				r.errorField("code") != float64(-32002) || r.Message["id"] != id {
				t.Errorf("slow Redis, reject: %d %s, want the 503 store_unavailable envelope echoing %q", r.Status, r.Body, id)
			}
		default:
			passTimes = append(passTimes, took)
			switch name := toolText(r); {
			case r.Status == http.StatusOK && name == owner[j.s.session]:
				byCreator++
			case r.Status == http.StatusOK && name != "":
				balanced++ // another replica answered (counted as a misroute by it)
			case r.Status == http.StatusNotFound && !pluginNotFound(r):
				replica404++ // balanced to a replica that does not know the session
			default:
				t.Errorf("slow Redis, pass: %d %s", r.Status, r.Body)
			}
		}
	})
	errs1 := storeErrors()
	t.Logf("replies delayed %v, store_error pass: %d requests answered in %v (%d by the creator, %d balanced to a replica that answered 404, %d balanced to another replica that answered 200)",
		beyond, len(passTimes), passTimes, byCreator, replica404, balanced)
	t.Logf("replies delayed %v, store_error reject: %d requests answered 503 in %v; 2 initialize (never looked up) in %v; store errors %v; go-redis reconnected %d times",
		beyond, len(rejectTimes), rejectTimes, initT, errs1-errs0, px.Conns()-conns0)
	if errs1-errs0 < float64(len(passTimes)+len(rejectTimes)) {
		t.Errorf("%v store errors for %d looked-up requests: the slowness did not reach every lookup", errs1-errs0, len(passTimes)+len(rejectTimes))
	}

	// Within the timeout. Answers already queued at the old delay drain
	// first (their connections were dropped by go-redis on timeout); then
	// every node reaches Redis again, more slowly.
	px.SetDelay(within)
	time.Sleep(beyond + 500*time.Millisecond)
	for _, n := range []*standin.Node{a, b, c} {
		s := passS[0]
		if n == c {
			s = rejectS[0]
		}
		ok := false
		for deadline := time.Now().Add(10 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			name, _ := s.whoami(t, n.URL())
			ok = name == owner[s.session]
		}
		if !ok {
			t.Fatalf("node %s: no pinned answer within 10 s of Redis answering within the timeout", n.URL())
		}
	}
	for _, r := range rs {
		if err := r.ResetStats(); err != nil {
			t.Fatal(err)
		}
	}
	errs2 := storeErrors()
	pinsWait0 := metrics(t, mB)["mcp_relay_pins_after_wait_total"]

	// New sessions through A, their first request through B at once (the
	// Log-phase race, now with slow Redis), then whoami through both.
	const fresh = 20
	var first, later durations
	wrong, notFound := 0, 0
	newS := make([]*rawMCP, fresh)
	forEach(t, fresh, 4, func(g goTB, i int) {
		s := newPinRaw(demoKey, 2*bound)
		if r := s.initialize(g, a.URL()); r.Status != http.StatusOK || s.session == "" {
			g.Fatalf("initialize %d: %d %s", i, r.Status, r.Body)
		}
		newS[i] = s
		var r rpcResult
		d := timed(func() { r = s.initialized(g, b.URL()) })
		mu.Lock()
		first = append(first, d)
		if r.Status != http.StatusAccepted {
			notFound++
			t.Errorf("session %d: notifications/initialized through B right after initialize: %d %s", i, r.Status, r.Body)
		}
		mu.Unlock()
		for _, n := range []*standin.Node{b, a, b} {
			var name string
			var r rpcResult
			d := timed(func() { name, r = s.whoami(g, n.URL()) })
			mu.Lock()
			later = append(later, d)
			if name == "" {
				notFound++
				t.Errorf("session %d: whoami: %d %s", i, r.Status, r.Body)
			}
			mu.Unlock()
		}
	})
	owner = creators(t, rs...)
	for _, s := range newS {
		if s == nil {
			continue
		}
		for _, n := range []*standin.Node{a, b} {
			if name, r := s.whoami(t, n.URL()); name != owner[s.session] {
				wrong++
				t.Errorf("session created by %q: whoami %q (%d %s)", owner[s.session], name, r.Status, r.Body)
			}
		}
	}
	// Records written before the slowness: all there, all pinned.
	for i, s := range passS {
		for _, n := range []*standin.Node{a, b} {
			if name, r := s.whoami(t, n.URL()); name != owner[s.session] {
				wrong++
				t.Errorf("session %d from before the slowness: whoami %q (%d %s), created by %q", i, name, r.Status, r.Body, owner[s.session])
			}
		}
	}
	for i, s := range rejectS {
		if name, r := s.whoami(t, c.URL()); name != owner[s.session] {
			wrong++
			t.Errorf("reject session %d from before the slowness: whoami %q (%d %s)", i, name, r.Status, r.Body)
		}
	}
	mis := misroutes(t, rs...)
	errs3 := storeErrors()
	t.Logf("replies delayed %v (timeout %v): %d new sessions, first request through the other node in %v (%v waited for the record); later requests %v",
		within, timeout, fresh, first, metrics(t, mB)["mcp_relay_pins_after_wait_total"]-pinsWait0, later)
	t.Logf("replies delayed %v: misroutes counted at the replicas %d, wrong replica %d, 404 %d, store errors %v; %d sessions from before the slowness still pinned",
		within, mis, wrong, notFound, errs3-errs2, len(passS)+len(rejectS))
	if mis != 0 {
		t.Errorf("%d misroutes counted at the replicas with Redis answering within the timeout", mis)
	}
	if errs3 != errs2 {
		t.Errorf("%v store errors with Redis answering within the timeout", errs3-errs2)
	}
}
