package session

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
)

// These tests touch the package-level registry; they must not run in
// parallel with others that use Open (none of this package's parallel
// tests run while a sequential one does).

func TestOpenOff(t *testing.T) {
	s, err := Open(Options{Store: StoreOff})
	if s != nil || err != nil {
		t.Fatalf("Open(off) = %v, %v; want nil, nil", s, err)
	}
	if _, err := Open(Options{Store: "etcd"}); err == nil {
		t.Fatal("Open(etcd): no error")
	}
	if _, err := Open(Options{Store: StoreRedis}); err == nil {
		t.Fatal("Open(redis) without host: no error")
	}
}

func TestOpenMemorySharedPerSettings(t *testing.T) {
	cfg := Options{Store: StoreMemory, TTL: 60 * time.Second, MaxSessions: 777}
	a, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Open(Options{TTL: 60 * time.Second, MaxSessions: 777}) // "" means memory
	other, _ := Open(Options{Store: StoreMemory, TTL: 61 * time.Second, MaxSessions: 777})
	t.Cleanup(func() { _ = a.Close(); _ = b.Close(); _ = other.Close() })

	if err := a.Learn(bg(), "s", Record{Target: "10.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := b.Lookup(bg(), "s", 0); err != nil || !ok || rec.Target != "10.0.0.1:1" {
		t.Fatalf("second Open does not see the first one's records: %+v %v %v", rec, ok, err)
	}
	if _, ok, _ := other.Lookup(bg(), "s", 0); ok {
		t.Fatal("different settings share a store")
	}
	if Unwrap(a) != Unwrap(b) {
		t.Fatal("Unwrap differs for equal settings")
	}
}

func TestOpenCloseLastHandleClosesStore(t *testing.T) {
	cfg := Options{Store: StoreMemory, TTL: 60 * time.Second, MaxSessions: 778}
	a, _ := Open(cfg)
	b, _ := Open(cfg)
	inner := Unwrap(a).(*Memory)
	_ = a.Close()
	_ = a.Close() // idempotent: must not drop b's reference
	if inner.closed.Load() {
		t.Fatal("store closed while a handle is open")
	}
	if _, _, err := a.Lookup(bg(), "x", 0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("closed handle: err = %v", err)
	}
	_ = b.Close()
	if !inner.closed.Load() {
		t.Fatal("store still open after its last handle closed")
	}
	// Opening again gives a fresh store.
	c, _ := Open(cfg)
	defer c.Close()
	if Unwrap(c) == Store(inner) {
		t.Fatal("reopened a closed store")
	}
}

func TestJanitorRetiresIdleStoresAndHandlesReattach(t *testing.T) {
	cfg := Options{Store: StoreMemory, TTL: 60 * time.Second, MaxSessions: 779}
	h, _ := Open(cfg)
	defer h.Close()
	old := Unwrap(h).(*Memory)
	now := time.Now().Unix()

	sweepRegistry(now + 60) // used just now: kept
	if old.closed.Load() || Unwrap(h) != Store(old) {
		t.Fatal("a store in use was retired")
	}
	// Idle for longer than max(5 min, TTL + 1 min): retired, closed a tick later.
	sweepRegistry(now + 3600)
	if old.closed.Load() {
		t.Fatal("retired store closed at once; calls under way need a grace tick")
	}
	sweepRegistry(now + 3600 + int64(janitorEvery/time.Second))
	if !old.closed.Load() {
		t.Fatal("retired store not closed after the grace tick")
	}
	// The handle follows to a fresh store.
	if err := h.Learn(bg(), "s", Record{Target: "t"}); err != nil {
		t.Fatalf("Learn through a handle whose store was retired: %v", err)
	}
	if cur := Unwrap(h); cur == Store(old) || cur.(*Memory).closed.Load() {
		t.Fatal("handle did not reattach to a live store")
	}
}

func TestJanitorKeepsMemoryStoresForTheirTTL(t *testing.T) {
	cfg := Options{Store: StoreMemory, TTL: 7200 * time.Second, MaxSessions: 780}
	h, _ := Open(cfg)
	defer h.Close()
	inner := Unwrap(h)
	sweepRegistry(time.Now().Unix() + 3600) // idle 1h < TTL 2h: records may live
	if Unwrap(h) != inner {
		t.Fatal("memory store retired while its records could still be alive")
	}
}

func TestOpenRedisSharesOneClient(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := Options{Store: StoreRedis, TTL: 60 * time.Second, Redis: RedisConfig{Host: srv.Host(), Port: srv.Port(), KeyPrefix: "op:"}}
	a, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Open(cfg)
	cfg2 := cfg
	cfg2.Redis.KeyPrefix = "op2:"
	c, _ := Open(cfg2)
	ra, rb, rc := Unwrap(a).(*Redis), Unwrap(b).(*Redis), Unwrap(c).(*Redis)
	if ra != rb || ra == rc {
		t.Fatalf("sharing wrong: a==b %v, a==c %v", ra == rb, ra == rc)
	}
	if err := a.Learn(bg(), "s", Record{Target: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Lookup(bg(), "s", 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	_ = a.Close()
	_ = b.Close()
	_ = c.Close()
	if !ra.closed.Load() || !rc.closed.Load() {
		t.Fatal("redis stores not closed with their last handles")
	}
}

func TestSettingsKeyHidesPassword(t *testing.T) {
	_, key, err := settingsKey(Options{Store: StoreRedis, Redis: RedisConfig{Host: "h", Password: "hunter2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(key) == 0 || strings.Contains(key, "hunter2") {
		t.Fatalf("key %q", key)
	}
}

// TestOpenHandleCapabilities: a handle from Open is no Flight or
// ReplicaNews itself; FlightOf and ReplicaNewsOf find its store's, which a
// Redis store has and a memory store has not.
func TestOpenHandleCapabilities(t *testing.T) {
	srv := redistest.StartServer(t)
	r, err := Open(Options{Store: StoreRedis, Redis: RedisConfig{Host: srv.Host(), Port: srv.Port(), KeyPrefix: "cap:"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(Options{Store: StoreMemory, MaxSessions: 11})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(); _ = m.Close() })
	if _, ok := r.(Flight); ok {
		t.Error("the handle itself is a Flight: FlightOf would be unneeded")
	}
	if _, ok := FlightOf(r); !ok {
		t.Error("FlightOf(redis handle): none")
	}
	if _, ok := ReplicaNewsOf(r); !ok {
		t.Error("ReplicaNewsOf(redis handle): none")
	}
	if _, ok := FlightOf(m); ok {
		t.Error("FlightOf(memory handle): a Flight")
	}
	if _, ok := ReplicaNewsOf(m); ok {
		t.Error("ReplicaNewsOf(memory handle): news")
	}
}
