package e2e

// End-to-end Redis faults beyond a stopped or frozen server (those are in
// TestRedisOutage and TestSoak): Redis answering slowly, and a Redis Cluster
// losing a master during traffic. Real redis-server processes, real
// replicas; misroutes are counted by the replicas themselves.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/freeport"
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
	mA, mB, mC := freeport.Addr(t), freeport.Addr(t), freeport.Addr(t)
	a := startNode(t, relay("pass"), addrs(rs...), withMetrics(mA))
	b := startNode(t, relay("pass"), addrs(rs...), withMetrics(mB))
	c := startNode(t, relay("reject"), addrs(rs...), withMetrics(mC))
	storeErrors := func() float64 {
		n := 0.0
		for _, m := range []string{mA, mB, mC} {
			n += metrics(t, m)["mcp_relay_store_errors_total"]
		}
		return n
	}
	metricsOf := map[gateway]string{a: mA, b: mB, c: mC}

	passS := newSessions(t, a, b, rs, 8)
	rejectS := newSessions(t, c, c, rs, 3)
	owner := creators(t, rs...)
	if mis := misroutes(t, rs...); mis != 0 {
		t.Fatalf("%d misroutes before Redis slowed down", mis)
	}

	// Beyond the timeout. Each node keeps serving the records it cached
	// until its subscriber's ping goes unanswered (about 1 s of quiet plus
	// the timeout); wait (bounded) until every node's lookups reach Redis:
	// the node counts a store error for a probe.
	px.SetDelay(beyond)
	slowAt := time.Now()
	errs0, conns0 := storeErrors(), px.Conns()
	for _, n := range []gateway{a, b, c} {
		reached := false
		for deadline := time.Now().Add(8 * time.Second); !reached && time.Now().Before(deadline); {
			s := passS[0]
			if n == c {
				s = rejectS[0]
			}
			errs := metrics(t, metricsOf[n])["mcp_relay_store_errors_total"]
			s.request(t, n.URL(), "tools/list", "")
			reached = metrics(t, metricsOf[n])["mcp_relay_store_errors_total"] > errs
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
		n      gateway
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
				r.errorField("code") != float64(-31002) || r.Message["id"] != id {
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
	// first (their connections were dropped by go-redis on timeout); wait
	// (bounded) until every node reaches Redis again, more slowly: the node
	// pins a probe (its pins_total grows: the lookup succeeded) to the
	// session's creator.
	px.SetDelay(within)
	for _, n := range []gateway{a, b, c} {
		s := passS[0]
		if n == c {
			s = rejectS[0]
		}
		ok := false
		for deadline := time.Now().Add(10 * time.Second); !ok && time.Now().Before(deadline); {
			pins := metrics(t, metricsOf[n])["mcp_relay_pins_total"]
			name, _ := s.whoami(t, n.URL())
			ok = name == owner[s.session] && metrics(t, metricsOf[n])["mcp_relay_pins_total"] > pins
			if !ok {
				time.Sleep(100 * time.Millisecond)
			}
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
		for _, n := range []gateway{b, a, b} {
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
		for _, n := range []gateway{a, b} {
			if name, r := s.whoami(t, n.URL()); name != owner[s.session] {
				wrong++
				t.Errorf("session created by %q: whoami %q (%d %s)", owner[s.session], name, r.Status, r.Body)
			}
		}
	}
	// Records written before the slowness: all there, all pinned.
	for i, s := range passS {
		for _, n := range []gateway{a, b} {
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

// TestRedisClusterLosesMaster: a three-master Redis Cluster loses a master
// (SIGKILL) while legacy traffic runs through a pair of Kong nodes with
// store_error pass and a pair with reject.
//
//   - "no replicas": nobody can take the master's slots over. Once the
//     cluster notices (cluster-node-timeout 2 s), every master refuses every
//     command (CLUSTERDOWN: cluster-require-full-coverage, Redis's default),
//     so the whole store is unavailable: reject answers 503, pass lets Kong
//     balance. A record that is only unreachable is never answered 404. The
//     master is started again 6 s later, empty (no persistence): the
//     sessions whose slot lived on it get the 404 envelope and re-initialise
//     onto a live replica; every other session keeps its pin.
//   - "no replicas, full coverage off": the same with
//     cluster-require-full-coverage no. The surviving masters keep serving,
//     so their sessions stay pinned throughout; only the lost master's
//     sessions get 503 or are balanced, then 404 once it is back empty.
//   - "failover": one replica per master; the dead master's replica takes
//     over and every session, those on the lost master included, keeps its
//     pin (the records were replicated before the kill).
//
// In all: no request hangs, the replicas never count a misrouted request
// of the reject pair's sessions, and the pass pair's misroutes are only the
// requests Kong balanced while their record was unreachable.
//
// Each answer is judged by what the system saw, not by a clock window: an
// answer the client had before the kill was issued was processed before it
// (no excuse for a store failure); one sent after the quiet end of the
// store errors was processed after it. Every pinned request (its record at
// the node shows kong.service.set_target) went to the session's creator,
// and for every session the misroutes its creator's peers counted equal,
// one for one, the answers the client got from a replica other than the
// creator.
func TestRedisClusterLosesMaster(t *testing.T) {
	t.Run("no replicas", func(t *testing.T) { clusterMasterLoss(t, 0, true) })
	t.Run("no replicas, full coverage off", func(t *testing.T) { clusterMasterLoss(t, 0, false) })
	t.Run("failover", func(t *testing.T) { clusterMasterLoss(t, 1, true) })
}

// clusterSess is one session of clusterMasterLoss.
type clusterSess struct {
	mu     sync.Mutex
	c      *rawMCP
	nodes  [2]gateway
	reject bool // created through the reject pair
	lost   bool // its record lives on the master that is killed
	gone   bool // answered the plugin's 404: not used again
	next   int
}

// clusterAnswer is one whoami of clusterMasterLoss.
type clusterAnswer struct {
	s          *clusterSess
	sent, done time.Time
	name       string
	r          rpcResult
	err        error
	requestID  string // X-Kong-Request-Id: finds the node's record
}

// clusterTally counts answers of one group of sessions.
type clusterTally struct {
	Creator, Unavailable503, Balanced, NotFound404 int
}

func clusterMasterLoss(t *testing.T, replicas int, fullCoverage bool) {
	const (
		perPair = 24 // sessions per node pair, spread over the 3 masters
		workers = 6
		bound   = 3 * time.Second // every request answered within this
		timeout = 500             // session.redis.timeout, ms
	)
	var opts []redistest.Option
	if !fullCoverage {
		opts = append(opts, redistest.WithArgs("--cluster-require-full-coverage", "no"))
	}
	var cl *redistest.Cluster
	if replicas == 0 {
		cl = redistest.StartCluster(t, 3, opts...)
	} else {
		cl = redistest.StartClusterWithReplicas(t, 3, replicas, opts...)
	}
	var seeds []any
	for _, addr := range cl.Addrs() {
		seeds = append(seeds, map[string]any{"ip": "127.0.0.1", "port": loopbackPort(t, addr)})
	}
	rs := startLegacyReplicas(t, 3)
	relay := func(storeError string) []byte {
		return deck(t, deckOptions{relay: map[string]any{"session": map[string]any{
			"store": "redis", "store_error": storeError,
			"redis": map[string]any{"cluster_nodes": seeds, "timeout": timeout}}}})
	}
	ms := []string{freeport.Addr(t), freeport.Addr(t), freeport.Addr(t), freeport.Addr(t)}
	var recs recordLog // every request's record, at all four nodes
	a := startNode(t, relay("pass"), addrs(rs...), withMetrics(ms[0]), withRecords(&recs))
	b := startNode(t, relay("pass"), addrs(rs...), withMetrics(ms[1]), withRecords(&recs))
	c := startNode(t, relay("reject"), addrs(rs...), withMetrics(ms[2]), withRecords(&recs))
	d := startNode(t, relay("reject"), addrs(rs...), withMetrics(ms[3]), withRecords(&recs))
	storeErrors := func() float64 {
		n := 0.0
		for _, m := range ms {
			n += metrics(t, m)["mcp_relay_store_errors_total"]
		}
		return n
	}

	var ss []*clusterSess
	for _, s := range newSessions(t, a, b, rs, perPair) {
		ss = append(ss, &clusterSess{c: s, nodes: [2]gateway{a, b}})
	}
	for _, s := range newSessions(t, c, d, rs, perPair) {
		ss = append(ss, &clusterSess{c: s, nodes: [2]gateway{c, d}, reject: true})
	}
	if t.Failed() {
		t.FailNow()
	}
	owner := creators(t, rs...)
	// Which records live on master 0: it answers EXISTS for its own slots
	// and MOVED for the others.
	var lostN [2]int // [pass, reject]
	for _, s := range ss {
		v, err := cl.Node(0).Do("EXISTS", "mcp-relay:s:{"+s.c.session+"}")
		var re redistest.ReplyError
		switch {
		case err == nil && v == "1":
			s.lost = true
			lostN[b2i(s.reject)]++
		case errors.As(err, &re) && strings.HasPrefix(string(re), "MOVED"):
		default:
			t.Fatalf("EXISTS on master 0: %q %v", v, err)
		}
	}
	if lostN[0] == 0 || lostN[1] == 0 || lostN[0] == perPair || lostN[1] == perPair {
		t.Fatalf("sessions on master 0: %v of %d per pair; want some on it and some elsewhere", lostN, perPair)
	}
	promoted := -1
	if replicas > 0 {
		promoted = cl.ReplicasOf(0)[0]
		// The records must be on the replica before the master dies.
		master, _ := cl.Node(0).Do("DBSIZE")
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if rep, _ := cl.Node(promoted).Do("DBSIZE"); rep == master {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d never caught up with master 0 (%s keys)", promoted, master)
			}
		}
	}

	// Traffic: workers send whoami round-robin over the sessions,
	// alternating the node of each session's pair.
	var (
		mu      sync.Mutex
		answers []clusterAnswer
		stop    atomic.Bool
		rr      atomic.Int64
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tries := 1; !stop.Load(); tries++ {
				s := ss[int(rr.Add(1)-1)%len(ss)]
				s.mu.Lock()
				if s.gone {
					s.mu.Unlock()
					if tries%len(ss) == 0 {
						time.Sleep(10 * time.Millisecond) // bounded spin when many are gone
					}
					continue
				}
				n := s.nodes[s.next%2]
				s.next++
				sent := time.Now()
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`, rpcIDs.Add(1))
				r, err := soakPost(s.c, n.URL(), body)
				ans := clusterAnswer{s: s, sent: sent, done: time.Now(), name: toolText(r), r: r, err: err}
				if err == nil {
					ans.requestID = r.Header.Get("X-Kong-Request-Id")
				}
				if err == nil && pluginNotFound(r) {
					s.gone = true
				}
				s.mu.Unlock()
				mu.Lock()
				answers = append(answers, ans)
				mu.Unlock()
			}
		}()
	}

	time.Sleep(2 * time.Second)
	errs0 := storeErrors()
	killAt := time.Now()
	cl.KillMaster(0)
	var restartAt, backAt time.Time
	if replicas == 0 {
		time.Sleep(6 * time.Second)
		restartAt = time.Now()
		cl.Node(0).Start() // empty: no persistence
		cl.WaitOK()
	} else {
		for cl.Role(promoted) != "master" {
			if time.Since(killAt) > 20*time.Second {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("replica %d not promoted 20 s after its master was killed", promoted)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cl.WaitOK()
	}
	backAt = time.Now()
	// The window ends once no node counts a new store error for 1 s under
	// traffic.
	last, lastChange := waitQuiet(storeErrors, time.Second, 25*time.Second)
	windowEnd, lastErrAt := time.Now(), lastChange
	time.Sleep(3 * time.Second)
	stop.Store(true)
	wg.Wait()
	// What the replicas counted during the traffic, before the checks below
	// add requests of their own.
	misBySession := map[string]int64{}
	for _, r := range rs {
		for id, n := range r.MustStats(t).MisroutedSessions {
			misBySession[id] += n
		}
	}
	// Every answered request's record at its node (the Log event comes after
	// the answer: wait, bounded).
	want := map[string]bool{}
	for _, x := range answers {
		if x.requestID != "" {
			want[x.requestID] = true
		}
	}
	records := map[string]standin.RequestRecord{}
	checkPins := onStandin(t, "every request the plugin pinned (set_target in its record) went to the session's creator",
		"PDK call records are the stand-in's (the replicas' misroute counts below hold on both)")
	if checkPins {
		recs.waitRecords(t, 20*time.Second, func(all []standin.RequestRecord) bool {
			for _, rec := range all {
				if want[rec.ID] {
					records[rec.ID] = rec
				}
			}
			return len(records) == len(want)
		})
	}
	replicaAddr := map[string]string{} // replica name -> address
	for _, r := range rs {
		replicaAddr[r.Name()] = r.Addr()
	}
	if windowEnd.Sub(backAt) > 10*time.Second {
		t.Errorf("store errors still counted %v after the cluster was ok again", windowEnd.Sub(backAt).Round(time.Millisecond))
	}

	// Every answer against what is allowed while it was processed. Tallies
	// are [pass, reject][elsewhere, on the lost master]. A request overlaps
	// the window unless its answer came before the kill was issued (then it
	// was processed before the kill) or it was sent after the window ended.
	var before, during, after [2][2]clusterTally
	var windowTimes [2]durations
	elsewhere := map[string]int64{} // answers from a replica other than the creator, by session
	unpinned := 0                   // requests the plugin did not pin (no set_target)
	unexpected := 0
	bad := func(format string, args ...any) {
		if unexpected++; unexpected <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, x := range answers {
		k, l := b2i(x.s.reject), b2i(x.s.lost)
		inWindow := !x.done.Before(killAt) && x.sent.Before(windowEnd)
		tl := &before[k][l]
		switch {
		case inWindow:
			tl = &during[k][l]
		case !x.sent.Before(windowEnd):
			tl = &after[k][l]
		}
		// Unreachable records: the lost master's, and with full coverage
		// every record once the cluster noticed.
		unreachable := inWindow && (x.s.lost || fullCoverage)
		took, id, at := x.done.Sub(x.sent), x.s.c.session, x.sent.Sub(killAt).Round(time.Millisecond)
		if x.err != nil {
			bad("session %s: %v after %v", id, x.err, took.Round(time.Millisecond))
			continue
		}
		if took > bound {
			bad("session %s (reject %v): answered after %v, more than %v", id, x.s.reject, took, bound)
		}
		if inWindow {
			windowTimes[k] = append(windowTimes[k], took)
		}
		if rec, ok := records[x.requestID]; !checkPins {
		} else if !ok {
			bad("session %s: no record at the node for request %q", id, x.requestID)
		} else if rec.Calls["access"]["kong.service.set_target"] == 0 {
			unpinned++
		} else if rec.Target != replicaAddr[owner[id]] {
			bad("session %s: pinned to %s, created by %q at %s", id, rec.Target, owner[id], replicaAddr[owner[id]])
		}
		switch r := x.r; {
		case r.Status == http.StatusOK && x.name == owner[id]:
			tl.Creator++
		case pluginNotFound(r):
			tl.NotFound404++
			// Only for a record that is really gone: on the master started again empty.
			if replicas > 0 || !x.s.lost || x.done.Before(restartAt) {
				bad("session %s (on the lost master %v, reject %v): the plugin's 404, sent %v after the kill", id, x.s.lost, x.s.reject, at)
			}
		case x.s.reject && r.Status == http.StatusServiceUnavailable && reasonOf(r) == "store_unavailable":
			tl.Unavailable503++
			if !unreachable {
				bad("session %s (on the lost master %v): 503 store_unavailable, sent %v after the kill", id, x.s.lost, at)
			}
		case !x.s.reject && (r.Status == http.StatusNotFound || r.Status == http.StatusOK):
			tl.Balanced++ // Kong balanced it to another replica
			elsewhere[id]++
			if !unreachable {
				bad("session %s (on the lost master %v): %d %q from another replica, sent %v after the kill", id, x.s.lost, r.Status, x.name, at)
			}
		default:
			bad("session %s (reject %v): %d %s", id, x.s.reject, r.Status, r.Body)
		}
	}

	// The replicas' misroute counts against the answers, session by
	// session (by the ids the sessions had during the traffic): each
	// misroute is a request the client saw answered by a replica other than
	// the creator (Kong balanced it), and the reject pair has none.
	var mis [2]int64 // [pass, reject]
	mismatched := 0
	used := map[string]bool{}
	for _, s := range ss {
		id := s.c.session
		used[id] = true
		mis[b2i(s.reject)] += misBySession[id]
		if misBySession[id] != elsewhere[id] {
			if mismatched++; mismatched <= 10 {
				t.Errorf("session %s (reject %v, on the lost master %v): the replicas counted %d misrouted requests, the client got %d answers from a replica other than the creator",
					id, s.reject, s.lost, misBySession[id], elsewhere[id])
			}
		}
	}
	for id, n := range misBySession {
		if !used[id] && n != 0 {
			t.Errorf("session %s: the replicas counted %d misrouted requests of a session the traffic did not use", id, n)
		}
	}

	// After the traffic: the pins that must have survived, and the records
	// that must be gone, through both nodes of each pair.
	kept, reinit := 0, 0
	for _, s := range ss {
		for _, n := range s.nodes {
			name, r := s.c.whoami(t, n.URL())
			switch {
			case replicas == 0 && s.lost:
				if !pluginNotFound(r) {
					t.Errorf("session %s on the lost master (reject %v): %d %s, want the 404 envelope", s.c.session, s.reject, r.Status, r.Body)
				}
			case name != owner[s.c.session]:
				t.Errorf("session %s (on the lost master %v, reject %v): whoami %q (%d %s), created by %q",
					s.c.session, s.lost, s.reject, name, r.Status, r.Body, owner[s.c.session])
			default:
				kept++
			}
		}
		if replicas == 0 && s.lost { // the client re-initialises: pinned again
			if r := s.c.initialize(t, s.nodes[0].URL()); r.Status != http.StatusOK || s.c.session == "" {
				t.Errorf("re-initialize: %d %s", r.Status, r.Body)
				continue
			}
			want := creators(t, rs...)[s.c.session]
			if name, r := s.c.whoami(t, s.nodes[1].URL()); name != want {
				t.Errorf("re-initialised session: whoami %q (%d %s), created by %q", name, r.Status, r.Body, want)
			}
			reinit++
		}
	}
	balanced := sumTally(before[0]).Balanced + sumTally(during[0]).Balanced + sumTally(after[0]).Balanced
	if mis[1] != 0 {
		t.Errorf("the replicas counted %d misrouted requests of the reject pair's sessions", mis[1])
	}
	errs := last - errs0
	if errs == 0 {
		t.Error("no store error counted: the lost master was never asked")
	}

	back := fmt.Sprintf("master 0 started again (empty) %v after the kill, cluster ok at %v",
		restartAt.Sub(killAt).Round(time.Millisecond), backAt.Sub(killAt).Round(time.Millisecond))
	if replicas > 0 {
		back = fmt.Sprintf("its replica (node %d) promoted and the cluster ok %v after the kill", promoted, backAt.Sub(killAt).Round(time.Millisecond))
	}
	t.Logf("%d sessions per pair (%d and %d on master 0); %d whoami answers; full coverage required: %v",
		perPair, lostN[0], lostN[1], len(answers), fullCoverage)
	t.Logf("master 0 killed; %s; last store error %v after the kill (%v counted)", back, lastErrAt.Sub(killAt).Round(time.Millisecond), errs)
	for k, pair := range []string{"pass", "reject"} {
		t.Logf("%s pair, from the kill to the end of the window: sessions on the lost master %+v, elsewhere %+v; before %+v, after %+v",
			pair, during[k][1], during[k][0], sumTally(before[k]), sumTally(after[k]))
	}
	t.Logf("answer times in the window: pass %v; reject %v", windowTimes[0], windowTimes[1])
	t.Logf("afterwards: %d pins kept (whoami through both nodes), %d lost sessions re-initialised and pinned; misroutes counted at the replicas: reject pair %d, pass pair %d (Kong balanced %d; %d requests not pinned by the plugin)",
		kept, reinit, mis[1], mis[0], balanced, unpinned)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sumTally(ts [2]clusterTally) clusterTally {
	return clusterTally{
		Creator:        ts[0].Creator + ts[1].Creator,
		Unavailable503: ts[0].Unavailable503 + ts[1].Unavailable503,
		Balanced:       ts[0].Balanced + ts[1].Balanced,
		NotFound404:    ts[0].NotFound404 + ts[1].NotFound404,
	}
}
