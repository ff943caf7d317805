package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/mcp-relay/mcp-relay/session/redistest"
)

// Bounds for calls that must fail or come back; not speed requirements.
const (
	testTimeout = 300 * time.Millisecond
	slack       = 2 * time.Second
)

func newNode(t testing.TB, cfg RedisConfig, opts RedisOptions) *Redis {
	t.Helper()
	if opts.TTL == 0 {
		opts.TTL = time.Hour
	}
	s, err := NewRedis(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	waitFor(t, "subscription", 10*time.Second, func() bool { return s.Stats().Subscribed })
	return s
}

func singleCfg(srv *redistest.Server, prefix string) RedisConfig {
	return RedisConfig{Host: srv.Host(), Port: srv.Port(), Timeout: testTimeout, KeyPrefix: prefix}
}

// waitFor polls cond every 10ms for at most d.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for i := 0; i < int(d/(10*time.Millisecond)); i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, d)
}

func bg() context.Context { return context.Background() }

// mustFailBounded runs op, which must fail with ErrUnavailable within the
// timeout plus slack.
func mustFailBounded(t *testing.T, what string, op func() error) {
	t.Helper()
	start := time.Now()
	err := op()
	d := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("%s: err = %v, want ErrUnavailable", what, err)
	}
	if d > testTimeout+slack {
		t.Errorf("%s took %v; bound is timeout %v + %v", what, d, testTimeout, slack)
	}
}

func TestRedisOutageAndRecovery(t *testing.T) {
	srv := redistest.StartServer(t)
	s := newNode(t, singleCfg(srv, "o:"), RedisOptions{CacheSize: 100})
	if err := s.Learn(bg(), "hot", Record{Target: "10.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Lookup(bg(), "hot", 0); err != nil || !ok {
		t.Fatalf("Lookup = %v %v", ok, err)
	}

	srv.Stop()
	// The subscription drops with the server: the cache is flushed, so not
	// even a hot session is answered from stale memory.
	waitFor(t, "cache flushed after the outage", 5*time.Second, func() bool { return !s.Stats().Subscribed })
	mustFailBounded(t, "Lookup(hot) while down", func() error { _, _, err := s.Lookup(bg(), "hot", 0); return err })
	mustFailBounded(t, "Lookup(unknown, wait) while down", func() error {
		_, _, err := s.Lookup(bg(), "nope", 100*time.Millisecond)
		return err
	})
	mustFailBounded(t, "Learn while down", func() error { return s.Learn(bg(), "x", Record{Target: "t"}) })
	mustFailBounded(t, "End while down", func() error { return s.End(bg(), "x") })
	mustFailBounded(t, "MarkLost while down", func() error { return s.MarkLost(bg(), "x") })

	srv.Start() // empty: no persistence
	waitFor(t, "Learn after restart", 15*time.Second, func() bool {
		return s.Learn(bg(), "back", Record{Target: "10.0.0.2:2"}) == nil
	})
	if rec, ok, err := s.Lookup(bg(), "back", 0); err != nil || !ok || rec.Target != "10.0.0.2:2" {
		t.Fatalf("Lookup after restart = %+v %v %v", rec, ok, err)
	}
	waitFor(t, "resubscribed", 15*time.Second, func() bool { return s.Stats().Subscribed })
	if n := s.Stats().Subscriptions; n < 2 {
		t.Errorf("Subscriptions = %d, want >= 2", n)
	}
	// Cross-node wake-ups work again.
	other := newNode(t, singleCfg(srv, "o:"), RedisOptions{CacheSize: 100})
	done := make(chan error, 1)
	go func() {
		_, ok, err := s.Lookup(bg(), "late", 20*time.Second)
		if err == nil && !ok {
			err = errors.New("not found")
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := other.Learn(bg(), "late", Record{Target: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiter after recovery: %v", err)
	}
}

func TestRedisPause(t *testing.T) {
	srv := redistest.StartServer(t)
	s := newNode(t, singleCfg(srv, "p:"), RedisOptions{CacheSize: 100, PingEvery: 200 * time.Millisecond})
	if err := s.Learn(bg(), "hot", Record{Target: "10.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	mustFailBounded(t, "Lookup(unknown) while paused", func() error { _, _, err := s.Lookup(bg(), "nope", 0); return err })
	mustFailBounded(t, "Learn while paused", func() error { return s.Learn(bg(), "x", Record{Target: "t"}) })
	// A silent server is noticed by the subscriber's ping; the cache goes.
	waitFor(t, "subscription declared lost", 10*time.Second, func() bool { return !s.Stats().Subscribed })
	if n := s.Stats().Cached; n != 0 {
		t.Errorf("cache holds %d records after the subscription was lost", n)
	}
	mustFailBounded(t, "Lookup(hot) while paused", func() error { _, _, err := s.Lookup(bg(), "hot", 0); return err })
	srv.Resume()
	waitFor(t, "Lookup after resume", 15*time.Second, func() bool {
		_, ok, err := s.Lookup(bg(), "hot", 0)
		return err == nil && ok
	})
	waitFor(t, "resubscribed", 15*time.Second, func() bool { return s.Stats().Subscribed })
}

func TestRedisCacheCoherenceAcrossNodes(t *testing.T) {
	srv := redistest.StartServer(t)
	a := newNode(t, singleCfg(srv, "c:"), RedisOptions{CacheSize: 100})
	b := newNode(t, singleCfg(srv, "c:"), RedisOptions{CacheSize: 100})
	if err := a.Learn(bg(), "s", Record{Target: "10.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.Lookup(bg(), "s", 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	rt := a.Stats().RoundTrips
	if _, ok, _ := a.Lookup(bg(), "s", 0); !ok || a.Stats().RoundTrips != rt {
		t.Fatalf("second Lookup on a was not served from its cache")
	}
	if err := b.End(bg(), "s"); err != nil {
		t.Fatal(err)
	}
	// b's End returned after its own event came back; a got the same event
	// from the same server write. Allow a few ms for a's goroutine to run.
	var rec Record
	retries := 0
	waitFor(t, "a sees Ended", 2*time.Second, func() bool {
		r, ok, err := a.Lookup(bg(), "s", 0)
		rec = r
		if err != nil || !ok || r.State != Ended {
			retries++
			return false
		}
		return true
	})
	t.Logf("a saw Ended after %d retries", retries)
	if rec.Target != "10.0.0.1:1" {
		t.Errorf("tombstone target = %q", rec.Target)
	}
}

// TestRedisTargetSeen: a node is told the service and target of the Active
// records other nodes write (its RedisOptions.TargetSeen), not of its own
// writes nor of tombstones.
func TestRedisTargetSeen(t *testing.T) {
	srv := redistest.StartServer(t)
	var mu sync.Mutex
	var seen []string
	a := newNode(t, singleCfg(srv, "t:"), RedisOptions{TargetSeen: func(service, target string) {
		mu.Lock()
		seen = append(seen, service+" "+target)
		mu.Unlock()
	}})
	b := newNode(t, singleCfg(srv, "t:"), RedisOptions{})
	waitFor(t, "a subscribed", 5*time.Second, func() bool { return a.Stats().Subscribed })
	if err := a.Learn(bg(), "own", Record{Target: "10.0.0.9:1", State: Active, Service: "svc"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Learn(bg(), "s", Record{Target: "10.0.0.1:1", State: Active, Service: "svc"}); err != nil {
		t.Fatal(err)
	}
	if err := b.End(bg(), "s"); err != nil {
		t.Fatal(err)
	}
	// a's events arrive in order: once the last Learn's is told, the End's
	// has been handled.
	if err := b.Learn(bg(), "z", Record{Target: "10.0.0.2:1", State: Active, Service: "svc"}); err != nil {
		t.Fatal(err)
	}
	told := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
	waitFor(t, "a told of z", 5*time.Second, func() bool { return len(told()) >= 2 })
	if got := told(); len(got) != 2 || got[0] != "svc 10.0.0.1:1" || got[1] != "svc 10.0.0.2:1" {
		t.Errorf("targets told %q, want b's two active records only", got)
	}
}

// TestRedisReplicaNews: a replica one node found gone is told to the
// others (not to itself), kept for a node that asks later, and never moved
// back in time; the news is no session record.
func TestRedisReplicaNews(t *testing.T) {
	srv := redistest.StartServer(t)
	var mu sync.Mutex
	heard := map[string][]time.Time{}
	listen := func(node string) func(string, time.Time) {
		return func(target string, at time.Time) {
			mu.Lock()
			heard[node+" "+target] = append(heard[node+" "+target], at)
			mu.Unlock()
		}
	}
	a := newNode(t, singleCfg(srv, "n:"), RedisOptions{ReplicaGone: listen("a")})
	b := newNode(t, singleCfg(srv, "n:"), RedisOptions{ReplicaGone: listen("b")})
	at := time.Now().Add(-time.Second).Round(0)
	if err := a.ReplicaGone(bg(), "10.0.0.7:9", at); err != nil {
		t.Fatal(err)
	}
	told := func(k string) []time.Time { mu.Lock(); defer mu.Unlock(); return append([]time.Time(nil), heard[k]...) }
	waitFor(t, "b told", 5*time.Second, func() bool { return len(told("b 10.0.0.7:9")) == 1 })
	if got := told("b 10.0.0.7:9")[0]; !got.Equal(at) {
		t.Errorf("b heard %v, want %v", got, at)
	}
	if err := a.ReplicaGone(bg(), "10.0.0.7:9", at.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	later := newNode(t, singleCfg(srv, "n:"), RedisOptions{})
	if got, err := later.ReplicaGoneAt(bg(), "10.0.0.7:9"); err != nil || !got.Equal(at) {
		t.Errorf("ReplicaGoneAt = %v %v, want %v (an earlier time does not replace it)", got, err, at)
	}
	if got, err := later.ReplicaGoneAt(bg(), "10.0.0.8:9"); err != nil || !got.IsZero() {
		t.Errorf("ReplicaGoneAt of a replica never gone = %v %v", got, err)
	}
	if _, found, err := b.Lookup(bg(), "10.0.0.7:9", 0); found || err != nil {
		t.Errorf("the news is a session record: found %v %v", found, err)
	}
	waitFor(t, "b told twice", 5*time.Second, func() bool { return len(told("b 10.0.0.7:9")) == 2 })
	if n := len(told("a 10.0.0.7:9")); n != 0 {
		t.Errorf("a heard its own news %d times", n)
	}
}

func TestRedisSubscriptionLossFlushesCache(t *testing.T) {
	srv := redistest.StartServer(t)
	a := newNode(t, singleCfg(srv, "f:"), RedisOptions{CacheSize: 100})
	if err := a.Learn(bg(), "s", Record{Target: "10.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.Lookup(bg(), "s", 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// Change the record behind the store's back (no event): the cache is
	// now stale, as it would be after events were lost.
	stale := encodeRecord(Record{Target: "10.0.0.1:1", Created: time.Now(), State: Ended})
	if _, err := srv.Do("SET", "f:s:{s}", stale); err != nil {
		t.Fatal(err)
	}
	if rec, _, _ := a.Lookup(bg(), "s", 0); rec.State != Active {
		t.Fatalf("expected the cached Active record before the loss, got %v", rec.State)
	}
	subs := a.Stats().Subscriptions
	if _, err := srv.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resubscribed", 10*time.Second, func() bool {
		st := a.Stats()
		return st.Subscribed && st.Subscriptions > subs
	})
	rec, ok, err := a.Lookup(bg(), "s", 0)
	if err != nil || !ok || rec.State != Ended {
		t.Fatalf("after resubscribing: %+v %v %v; want Ended (cache flushed)", rec, ok, err)
	}
}

// TestRedisHotLookupRoundTrips: 1000 lookups of a hot session cost at most
// 10 round trips.
func TestRedisHotLookupRoundTrips(t *testing.T) {
	srv := redistest.StartServer(t)
	s := newNode(t, singleCfg(srv, "rt:"), RedisOptions{CacheSize: DefaultCacheSize})
	if err := s.Learn(bg(), "hot", Record{Target: "10.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().RoundTrips
	for i := 0; i < 1000; i++ {
		if _, ok, err := s.Lookup(bg(), "hot", 250*time.Millisecond); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	n := s.Stats().RoundTrips - before
	t.Logf("1000 lookups of a hot session: %d Redis round trips", n)
	if n > 10 {
		t.Errorf("%d round trips for 1000 hot lookups, want <= 10", n)
	}

	// Without the cache, each lookup is one round trip (one script).
	nc := newNode(t, singleCfg(srv, "rt:"), RedisOptions{CacheSize: 0})
	before = nc.Stats().RoundTrips
	for i := 0; i < 100; i++ {
		if _, ok, err := nc.Lookup(bg(), "hot", 0); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	// A new connection's HELLO and a first NOSCRIPT + EVAL come on top.
	if n := nc.Stats().RoundTrips - before; n < 100 || n > 105 {
		t.Errorf("uncached: %d round trips for 100 lookups, want 100", n)
	}
}

// TestRedisSlidingRefreshIsRare: reads re-arm the expiry at most once per
// TTL/10, not on every request.
func TestRedisSlidingRefreshIsRare(t *testing.T) {
	srv := redistest.StartServer(t)
	s := newNode(t, singleCfg(srv, "sl:"), RedisOptions{TTL: 10 * time.Second, CacheSize: 0})
	if err := s.Learn(bg(), "x", Record{Target: "t"}); err != nil {
		t.Fatal(err)
	}
	pttl := func() int {
		v, err := srv.Do("PTTL", "sl:s:{x}")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(v)
		return n
	}
	first := pttl()
	if first <= 10_000 {
		t.Fatalf("PTTL after Learn = %d, want > TTL (slack for cache life)", first)
	}
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < 50; i++ {
		_, _, _ = s.Lookup(bg(), "x", 0)
	}
	if p := pttl(); p >= first {
		t.Errorf("PTTL went from %d to %d within TTL/10: refreshed too early", first, p)
	}
	// Force "TTL/10 has passed" by shortening the key's expiry server-side.
	if _, err := srv.Do("PEXPIRE", "sl:s:{x}", "5000"); err != nil {
		t.Fatal(err)
	}
	_, _, _ = s.Lookup(bg(), "x", 0)
	if p := pttl(); p < 10_000 {
		t.Errorf("PTTL = %d after a due refresh, want > %d", p, 10_000)
	}
}

func TestRedisWrongPasswordNotLeaked(t *testing.T) {
	srv := redistest.StartServer(t, redistest.WithArgs("--requirepass", "right-horse-battery"))
	cfg := singleCfg(srv, "pw:")
	cfg.Password = "hunter2-wrong-secret"
	s, err := NewRedis(cfg, RedisOptions{TTL: time.Hour, CacheSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	_, _, err = s.Lookup(bg(), "x", 0)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(fmt.Sprintf("%+v", err), "hunter2") {
		t.Errorf("error leaks the password: %v", err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", s, s), "hunter2") {
		t.Errorf("store's printed form leaks the password")
	}

	cfg.Password = "right-horse-battery"
	good := newNode(t, cfg, RedisOptions{CacheSize: 10})
	if err := good.Learn(bg(), "x", Record{Target: "t"}); err != nil {
		t.Fatal(err)
	}
}

func TestRedisClusterMasterLoss(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	var nodes []RedisNode
	for i := range c.Addrs() {
		nodes = append(nodes, RedisNode{Host: c.Node(i).Host(), Port: c.Node(i).Port()})
	}
	cfg := RedisConfig{ClusterNodes: nodes, Timeout: testTimeout, KeyPrefix: "k:"}
	s := newNode(t, cfg, RedisOptions{CacheSize: 100})
	ids := make([]string, 30) // spread over all masters
	for i := range ids {
		ids[i] = fmt.Sprint("id-", i)
		if err := s.Learn(bg(), ids[i], Record{Target: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	c.KillMaster(0)
	// Some keys lived on the dead master; once the cluster notices, all
	// slots are down (full coverage required). Every call stays bounded.
	failed := false
	for round := 0; round < 20 && !failed; round++ {
		for _, id := range ids {
			start := time.Now()
			err := s.Learn(bg(), id, Record{Target: "t"})
			if d := time.Since(start); d > testTimeout+slack {
				t.Fatalf("Learn took %v during the outage", d)
			}
			if err != nil {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("err = %v, want ErrUnavailable", err)
				}
				failed = true
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !failed {
		t.Fatal("no call failed with a master down")
	}
	c.Node(0).Start()
	c.WaitOK()
	waitFor(t, "all keys writable again", 20*time.Second, func() bool {
		for _, id := range ids {
			if s.Learn(bg(), id, Record{Target: "t2"}) != nil {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if rec, ok, err := s.Lookup(bg(), id, 0); err != nil || !ok || rec.Target != "t2" {
			t.Fatalf("Lookup(%s) after recovery = %+v %v %v", id, rec, ok, err)
		}
	}
}

// TestRedisClusterFailover: a master dies and its replica takes over. The
// store must follow within seconds: go-redis by itself re-reads the
// cluster's slot map only on a MOVED answer, which a dead master never
// sends, or once its copy is ClusterStateReloadInterval old (60 s).
func TestRedisClusterFailover(t *testing.T) {
	c := redistest.StartClusterWithReplicas(t, 3, 1)
	var nodes []RedisNode
	for i := range c.Addrs() {
		nodes = append(nodes, RedisNode{Host: c.Node(i).Host(), Port: c.Node(i).Port()})
	}
	cfg := RedisConfig{ClusterNodes: nodes, Timeout: testTimeout, KeyPrefix: "f:"}
	s := newNode(t, cfg, RedisOptions{}) // no cache: every Lookup asks Redis
	ids := make([]string, 30)            // spread over all masters
	for i := range ids {
		ids[i] = fmt.Sprint("id-", i)
		if err := s.Learn(bg(), ids[i], Record{Target: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	rep := c.ReplicasOf(0)[0]
	master, _ := c.Node(0).Do("DBSIZE")
	waitFor(t, "replica in sync", 5*time.Second, func() bool {
		n, _ := c.Node(rep).Do("DBSIZE")
		return n == master
	})
	c.KillMaster(0)
	waitFor(t, "replica promoted", 20*time.Second, func() bool { return c.Role(rep) == "master" })
	c.WaitOK()
	promoted := time.Now()
	for {
		unreadable := 0
		for _, id := range ids {
			start := time.Now()
			rec, ok, err := s.Lookup(bg(), id, 0)
			if d := time.Since(start); d > testTimeout+slack {
				t.Fatalf("Lookup took %v after the failover", d)
			}
			if err != nil || !ok || rec.Target != "t" {
				unreadable++
			}
		}
		if unreadable == 0 {
			break
		}
		if time.Since(promoted) > 10*time.Second {
			t.Fatalf("%d of %d records still unreadable %v after the replica took over (master %s of %d keys)",
				unreadable, len(ids), time.Since(promoted).Round(time.Millisecond), master, len(ids))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("every record readable %v after the replica took over", time.Since(promoted).Round(time.Millisecond))
}

func TestRedisSentinel(t *testing.T) {
	master := redistest.StartServer(t)
	sent := redistest.StartSentinel(t, "mymaster", master.Addr())
	cfg := RedisConfig{
		SentinelMaster: "mymaster",
		SentinelNodes:  []RedisNode{{Host: sent.Host(), Port: sent.Port()}},
		Timeout:        2 * time.Second,
		KeyPrefix:      "sn:",
	}
	a := newNode(t, cfg, RedisOptions{CacheSize: 100})
	b := newNode(t, cfg, RedisOptions{CacheSize: 100})
	if err := a.Learn(bg(), "s", Record{Target: "10.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := b.Lookup(bg(), "s", time.Second); err != nil || !ok || rec.Target != "10.0.0.1:1" {
		t.Fatalf("Lookup via sentinel = %+v %v %v", rec, ok, err)
	}
	if v, err := master.Do("GET", "sn:s:{s}"); err != nil || v == "" {
		t.Fatalf("record not on the master: %q %v", v, err)
	}
}

// miniredis stands in only for failures a real server cannot be made to
// produce on demand.
func TestRedisInjectedErrors(t *testing.T) {
	mr := miniredis.RunT(t)
	host, port, _ := strings.Cut(mr.Addr(), ":")
	p, _ := strconv.Atoi(port)
	s, err := NewRedis(RedisConfig{Host: host, Port: p, Timeout: 500 * time.Millisecond, KeyPrefix: "m:"}, RedisOptions{TTL: time.Hour, CacheSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Learn(bg(), "ok", Record{Target: "t"}); err != nil {
		t.Fatalf("Learn on miniredis: %v", err)
	}

	mr.SetError("LOADING injected")
	if _, _, err := s.Lookup(bg(), "x", 0); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "injected") {
		t.Errorf("Lookup: %v, want ErrUnavailable wrapping the server error", err)
	}
	if err := s.Learn(bg(), "x", Record{Target: "t"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Learn: %v", err)
	}
	if err := s.End(bg(), "x"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("End: %v", err)
	}
	mr.SetError("")

	mr.Set("m:s:{bad}", "garbage")
	if _, _, err := s.Lookup(bg(), "bad", 0); !errors.Is(err, ErrUnavailable) || !errors.Is(err, errBadRecord) {
		t.Errorf("Lookup of a malformed record: %v", err)
	}
}

func TestRecordEncoding(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli())
	for _, r := range []Record{
		{Target: "10.0.0.1:8080", Consumer: "c", Created: now, State: Active},
		{Target: "[::1]:80", Consumer: "with|pipe and space", Created: now, State: Lost},
		{Target: "a|b", Consumer: "", Created: now, State: Ended},
		{Created: now, State: Active},
		{Target: "10.0.0.1:8080", Consumer: "c|;", Created: now, State: Active,
			Init: `{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x|y;z","version":"1"}}`},
		{Target: "10.0.0.2:8080", Created: now, State: Lost, Init: "{}", Upstream: "new|id", Alias: "client;id|", Service: "svc|1;"},
		{Target: "t", Created: now, State: Active, Service: "only-service"},
		{Target: "t", Created: now, State: Active, Alias: "only-alias"},
		{Created: now, State: Ended, Upstream: "u"},
	} {
		enc := encodeRecord(r)
		got, err := decodeRecord(enc)
		if err != nil || got != r {
			t.Errorf("round trip of %+v = %+v, %v", r, got, err)
		}
		// Records without recovery data keep the version 1 encoding, which
		// releases without recovery read.
		if v1 := r.Init == "" && r.Upstream == "" && r.Alias == "" && r.Service == ""; v1 == strings.Contains(enc[:strings.IndexAny(enc[1:], "|;")+2], ";") {
			t.Errorf("encoding of %+v = %q: version 1 expected %v", r, enc, v1)
		}
	}
	// Records written before the recovery fields existed decode unchanged.
	old := map[string]Record{
		"A1732350000000|13|10.0.0.1:8080consumer-id": {Target: "10.0.0.1:8080", Consumer: "consumer-id", Created: time.UnixMilli(1732350000000), State: Active},
		"L1732350000000|0|":                          {Created: time.UnixMilli(1732350000000), State: Lost},
		"E5|3|a;bc;d":                                {Target: "a;b", Consumer: "c;d", Created: time.UnixMilli(5), State: Ended},
	}
	for v, want := range old {
		if got, err := decodeRecord(v); err != nil || got != want {
			t.Errorf("decodeRecord(%q) = %+v, %v; want %+v", v, got, err, want)
		}
	}
	for _, bad := range []string{"", "X1|0|", "A", "A1|", "A1|5|abc", "Ax|0|", "A1|-1|",
		"A1;", "A1;0|", "A1;0|0|0|", "A1;1|0|0|0|", "A1;0|0|5|0|abc", "A1;0|0|-1|0|", "A1;x|0|0|0|"} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("decodeRecord(%q): no error", bad)
		}
	}
}

func TestRedisOptionsMapping(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		o, err := redisOptions(RedisConfig{Host: "redis.local", Username: "u", Password: "p", Database: 3, Timeout: 1500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if len(o.Addrs) != 1 || o.Addrs[0] != "redis.local:6379" || o.Username != "u" || o.Password != "p" || o.DB != 3 {
			t.Errorf("options = %+v", o)
		}
		if o.ReadTimeout != 1500*time.Millisecond || o.DialTimeout != 1500*time.Millisecond || !o.ContextTimeoutEnabled {
			t.Errorf("timeouts = %v %v %v", o.ReadTimeout, o.DialTimeout, o.ContextTimeoutEnabled)
		}
		if o.TLSConfig != nil || o.IsClusterMode || o.MasterName != "" {
			t.Errorf("unexpected mode: %+v", o)
		}
	})
	t.Run("default timeout", func(t *testing.T) {
		o, _ := redisOptions(RedisConfig{Host: "h", Port: 7000})
		if o.ReadTimeout != DefaultRedisTimeout || o.Addrs[0] != "h:7000" {
			t.Errorf("%v %v", o.ReadTimeout, o.Addrs)
		}
	})
	t.Run("tls", func(t *testing.T) {
		o, _ := redisOptions(RedisConfig{Host: "h", SSL: true, SSLVerify: true, ServerName: "redis.example"})
		if o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.example" || o.TLSConfig.InsecureSkipVerify {
			t.Errorf("tls = %+v", o.TLSConfig)
		}
		o, _ = redisOptions(RedisConfig{Host: "h", SSL: true})
		if !o.TLSConfig.InsecureSkipVerify {
			t.Errorf("ssl_verify=false must skip verification")
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		o, err := redisOptions(RedisConfig{
			SentinelMaster: "m", SentinelUsername: "su", SentinelPassword: "sp",
			SentinelNodes: []RedisNode{{Host: "s1", Port: 26380}, {Host: "s2"}},
			Password:      "p", Database: 2,
		})
		if err != nil {
			t.Fatal(err)
		}
		if o.MasterName != "m" || strings.Join(o.Addrs, ",") != "s1:26380,s2:26379" || o.SentinelUsername != "su" || o.SentinelPassword != "sp" || o.DB != 2 {
			t.Errorf("options = %+v", o)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		o, err := redisOptions(RedisConfig{ClusterNodes: []RedisNode{{Host: "10.0.0.1", Port: 7000}, {Host: "::1"}}})
		if err != nil {
			t.Fatal(err)
		}
		if !o.IsClusterMode || strings.Join(o.Addrs, ",") != "10.0.0.1:7000,[::1]:6379" {
			t.Errorf("options = %+v", o)
		}
	})
	for name, bad := range map[string]RedisConfig{
		"nothing":          {},
		"sentinel no node": {SentinelMaster: "m"},
		"both":             {SentinelMaster: "m", SentinelNodes: []RedisNode{{Host: "s"}}, ClusterNodes: []RedisNode{{Host: "c"}}},
		"cluster db":       {ClusterNodes: []RedisNode{{Host: "c"}}, Database: 1},
	} {
		if _, err := redisOptions(bad); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error leaks: %v", name, err)
		}
	}
}

// TestRedisMemoryPerSession reports Redis memory per session record.
func TestRedisMemoryPerSession(t *testing.T) {
	const n = 10_000
	per := redisFootprint(t, n)
	t.Logf("redis used_memory (client buffers excluded): %.0f bytes/session (%d sessions, 48-byte ids, UUID consumer)", per, n)
	if per > 1000 {
		t.Errorf("%.0f bytes/session in Redis", per)
	}
}

// redisFootprint starts a redis-server, learns n sessions through a store on
// it (48-byte mcp-go ids, an "ip:port" target, a UUID consumer, the default
// key prefix) and returns the growth of INFO memory used_memory per session.
func redisFootprint(tb testing.TB, n int) float64 {
	tb.Helper()
	srv := redistest.StartServer(tb)
	s := newNode(tb, singleCfg(srv, "mcp-relay:"), RedisOptions{CacheSize: 0})
	// used_memory without the clients' buffers (mem_clients_normal: query
	// and output buffers, which Redis sizes and frees as it likes), from
	// one INFO reply.
	used := func() int {
		info, err := srv.Do("INFO", "memory")
		if err != nil {
			tb.Fatal(err)
		}
		field := func(name string) int {
			for _, line := range strings.Split(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
					n, err := strconv.Atoi(v)
					if err != nil {
						tb.Fatalf("INFO memory %s: %q", name, v)
					}
					return n
				}
			}
			tb.Fatalf("INFO memory has no %s", name)
			return 0
		}
		return field("used_memory") - field("mem_clients_normal")
	}
	// Growing the key tables rehashes them step by step, in the background
	// too: wait until used_memory holds still (bounded), so that a table
	// being replaced is not counted.
	settled := func() int {
		last := used()
		for i := 0; i < 30; i++ {
			time.Sleep(100 * time.Millisecond)
			now := used()
			if now == last {
				break
			}
			last = now
		}
		return last
	}
	// A few writers at once: the round trips dominate, not Redis.
	const writers = 16
	errs := make(chan error, writers)
	// Warm up: load the script and open the writers' connections, so that
	// neither the script cache nor client buffers are counted.
	for w := 0; w < writers; w++ {
		go func() { errs <- s.Learn(bg(), fmt.Sprint("warm-up-", w), Record{Target: "t"}) }()
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
	before := settled()
	for w := 0; w < writers; w++ {
		go func() {
			for i := w; i < n; i += writers {
				id := fmt.Sprintf("mcp-session-%08x-%04x-4%03x-8%03x-%012x", i, i&0xffff, i&0xfff, i&0xfff, i)
				if err := s.Learn(bg(), id, Record{Target: "10.0.0.1:8080", Consumer: "6b1f3c1e-8a43-4c1a-9d2e-3f5b7a9c0d11"}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
	if got, err := srv.Do("DBSIZE"); err != nil || got != strconv.Itoa(n+writers) {
		tb.Fatalf("DBSIZE = %q, %v; want %d", got, err, n+writers)
	}
	return float64(settled()-before) / float64(n)
}

// FuzzDecodeRecord: any stored value decodes without panicking, and what
// decodes encodes back to a value that decodes to the same record.
func FuzzDecodeRecord(f *testing.F) {
	for _, seed := range []string{"A1732350000000|13|10.0.0.1:8080consumer-id", "L1|0|", "E5|3|a;bc;d",
		"A1;1|1|2|1|1|tc{}uas", "A1732350000000;13|1|2|0|0|10.0.0.1:8080c{}svc", "A1;0|0|0|0|", "A1;x|", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, err := decodeRecord(v)
		if err != nil {
			return
		}
		again, err := decodeRecord(encodeRecord(r))
		if err != nil || again != r {
			t.Fatalf("decode(%q) = %+v; re-encoded it decodes to %+v, %v", v, r, again, err)
		}
	})
}

// TestRedisRecoveryClaim: one node at a time claims a session's recovery;
// another waits for the record it writes (woken by its event), and claims
// again once the claim is released or has expired.
func TestRedisRecoveryClaim(t *testing.T) {
	srv := redistest.StartServer(t)
	a := newNode(t, singleCfg(srv, "rc:"), RedisOptions{CacheSize: 100})
	b := newNode(t, singleCfg(srv, "rc:"), RedisOptions{CacheSize: 100})
	old := Record{Target: "10.0.0.1:1", Consumer: "c", Created: time.Now().Add(-time.Minute), State: Active, Init: "{}"}
	if err := a.Learn(bg(), "s", old); err != nil {
		t.Fatal(err)
	}
	// b caches the old record.
	if _, ok, err := b.Lookup(bg(), "s", 0); err != nil || !ok {
		t.Fatal(ok, err)
	}

	release, ok, err := a.Claim(bg(), "s", 10*time.Second)
	if err != nil || !ok {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if _, ok, err := b.Claim(bg(), "s", 10*time.Second); err != nil || ok {
		t.Fatalf("second claim while held: ok=%v err=%v", ok, err)
	}
	type result struct {
		rec   Record
		found bool
		err   error
		took  time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		rec, found, err := b.AwaitWrite(bg(), "s", 20*time.Second, func(r Record) bool { return r.Upstream != "" })
		done <- result{rec, found, err, time.Since(start)}
	}()
	time.Sleep(50 * time.Millisecond) // let it park; the test holds either way
	moved := Record{Target: "10.0.0.2:1", Consumer: "c", Created: time.Now(), State: Active, Init: "{}", Upstream: "u-1"}
	if err := a.Learn(bg(), "s", moved); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || !r.found || r.rec.Target != moved.Target || r.rec.Upstream != "u-1" {
		t.Fatalf("AwaitWrite = %+v", r)
	}
	if r.took >= 20*time.Second {
		t.Errorf("AwaitWrite took its whole wait: the write's event did not wake it")
	}
	// The waiting node's cache no longer holds the old record.
	if rec, _, _ := b.Lookup(bg(), "s", 0); rec.Target != moved.Target {
		t.Errorf("b still routes to %s", rec.Target)
	}
	release()
	rel2, ok, err := b.Claim(bg(), "s", 100*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("claim after release: %v %v", ok, err)
	}
	_ = rel2 // never released: it expires
	waitFor(t, "claim expiry", 5*time.Second, func() bool {
		_, ok, err := a.Claim(bg(), "s", time.Second)
		return err == nil && ok
	})
}

// TestRedisClaimOfDeadHolderEnds: a claim lives while its holder renews it,
// far beyond one lease, and ends within a lease of its holder's death (its
// store closed: a plugin process a Kong reload stopped mid-recovery), long
// before the claim's ttl.
func TestRedisClaimOfDeadHolderEnds(t *testing.T) {
	saved := claimLease
	claimLease = 300 * time.Millisecond
	t.Cleanup(func() { claimLease = saved })
	srv := redistest.StartServer(t)
	a := newNode(t, singleCfg(srv, "dc:"), RedisOptions{})
	b := newNode(t, singleCfg(srv, "dc:"), RedisOptions{})
	if _, ok, err := a.Claim(bg(), "s", time.Minute); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	for range 10 { // 1 s: three leases and more
		if _, ok, err := b.Claim(bg(), "s", time.Minute); err != nil || ok {
			t.Fatalf("claim taken from a live holder: ok=%v err=%v", ok, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = a.Close()
	died := time.Now()
	waitFor(t, "the dead holder's claim to end", 5*time.Second, func() bool {
		_, ok, err := b.Claim(bg(), "s", time.Minute)
		return err == nil && ok
	})
	if took := time.Since(died); took > 2*claimLease {
		t.Errorf("the claim ended %v after its holder died, want within about %v", took, claimLease)
	}
}
