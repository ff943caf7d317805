package session

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults used when a setting is zero. The configuration's defaults
// (schema's field table) are these values.
const (
	DefaultTTL          = time.Hour
	DefaultMaxSessions  = 1_000_000
	MaxTombstoneTTL     = 10 * time.Minute
	DefaultRedisTimeout = 2 * time.Second // Kong's redis.timeout default
	DefaultRedisPort    = 6379
	DefaultSentinelPort = 26379
)

// Open returns the store that opts name: memory (also ""), redis, or nil
// for off. Kong runs one plugin process per node and rebuilds config
// instances after 60 s idle, so stores are shared per settings at package
// level: every Open with equal settings returns a handle on the same store
// (one memory store, or one Redis client, subscriber and cache, per node).
//
// Lifetime: plugin instances are dropped without notice, so they need not
// Close their handle. A janitor closes a shared store once it has been
// unused for a while (5 minutes, and for memory stores also longer than the
// TTL, so no live record is lost); a handle used after that reopens it.
// Closing every handle of a store closes it at once (tests, shutdown).
func Open(opts Options) (Store, error) {
	kind, key, err := settingsKey(opts)
	if err != nil || kind == StoreOff {
		return nil, err
	}
	// The handle keeps a closure, not opts, so printing it shows no password.
	h := &handle{key: key, acquire: func() (*shared, error) { return acquire(key, opts) }}
	e, err := h.acquire()
	if err != nil {
		return nil, err
	}
	h.cur.Store(e)
	return h, nil
}

// settingsKey names the shared store for opts. RedisConfig.Key carries
// passwords only as keyed digests, so the key can be logged.
func settingsKey(opts Options) (kind StoreKind, key string, err error) {
	ttl := ttlOf(opts)
	switch opts.Store {
	case StoreOff:
		return StoreOff, "", nil
	case "", StoreMemory:
		maxS := opts.MaxSessions
		if maxS <= 0 {
			maxS = DefaultMaxSessions
		}
		return StoreMemory, fmt.Sprintf("memory|%d|%d", ttl, maxS), nil
	case StoreRedis:
		// One client per connection settings, prefix and TTL: the prefix
		// names the event channel the client's subscriber listens on.
		return StoreRedis, fmt.Sprintf("redis|%d|%q|%s", ttl, opts.Redis.KeyPrefix, opts.Redis.Key()), nil
	default:
		return "", "", fmt.Errorf("session: unknown store %q", opts.Store)
	}
}

func ttlOf(opts Options) time.Duration {
	if opts.TTL <= 0 {
		return DefaultTTL
	}
	return opts.TTL
}

func build(opts Options) (Store, error) {
	if opts.Store == StoreRedis {
		return NewRedis(opts.Redis, RedisOptions{TTL: ttlOf(opts), CacheSize: DefaultCacheSize, TargetSeen: opts.TargetSeen,
			ReplicaGone: opts.ReplicaGone})
	}
	return NewMemory(MemoryOptions{TTL: ttlOf(opts), MaxSessions: opts.MaxSessions}), nil
}

// shared is one node-wide store and its bookkeeping.
type shared struct {
	store    Store
	refs     int   // open handles; guarded by registry.mu
	idle     int64 // nanoseconds of disuse after which the janitor closes it
	lastUse  atomic.Int64
	retired  atomic.Bool
	retireAt int64 // guarded by registry.mu
}

// touch records use; it writes only when the stored second changed, so hot
// paths do not contend on the cache line.
func (e *shared) touch() {
	now := time.Now().Unix()
	if e.lastUse.Load() != now {
		e.lastUse.Store(now)
	}
}

var registry = struct {
	mu       sync.Mutex
	stores   map[string]*shared
	retiring []*shared
	janitor  bool
}{stores: map[string]*shared{}}

const (
	janitorEvery = time.Minute
	idleRedis    = 5 * time.Minute
)

func acquire(key string, opts Options) (*shared, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	e := registry.stores[key]
	if e == nil {
		s, err := build(opts)
		if err != nil {
			return nil, err
		}
		idle := idleRedis
		if opts.Store != StoreRedis {
			idle = max(idleRedis, ttlOf(opts)+time.Minute)
		}
		e = &shared{store: s, idle: int64(idle / time.Second)}
		e.touch()
		registry.stores[key] = e
		if !registry.janitor {
			registry.janitor = true
			go janitor()
		}
	}
	e.refs++
	return e, nil
}

// release drops one handle's reference; the last one closes the store.
func release(key string, e *shared) {
	registry.mu.Lock()
	e.refs--
	last := e.refs <= 0 && !e.retired.Load()
	if last {
		e.retired.Store(true)
		if registry.stores[key] == e {
			delete(registry.stores, key)
		}
	}
	registry.mu.Unlock()
	if last {
		_ = e.store.Close()
	}
}

func janitor() {
	for {
		time.Sleep(janitorEvery)
		sweepRegistry(time.Now().Unix())
	}
}

// sweepRegistry retires stores idle at now (unix seconds), and closes those
// retired a tick ago, when calls already under way on them (bounded by
// timeout + learn wait) are long done.
func sweepRegistry(now int64) {
	var closing []*shared
	registry.mu.Lock()
	keep := registry.retiring[:0]
	for _, e := range registry.retiring {
		if now >= e.retireAt {
			closing = append(closing, e)
		} else {
			keep = append(keep, e)
		}
	}
	registry.retiring = keep
	for k, e := range registry.stores {
		if now-e.lastUse.Load() > e.idle {
			e.retired.Store(true)
			e.retireAt = now + int64(janitorEvery/time.Second)
			delete(registry.stores, k)
			registry.retiring = append(registry.retiring, e)
		}
	}
	registry.mu.Unlock()
	for _, e := range closing {
		_ = e.store.Close()
	}
}

// handle is what Open returns: a reference to a shared store that follows
// it across janitor closes.
type handle struct {
	key     string
	acquire func() (*shared, error)
	mu      sync.Mutex
	cur     atomic.Pointer[shared]
	closed  atomic.Bool
}

func (h *handle) get() (Store, error) {
	if h.closed.Load() {
		return nil, errClosed
	}
	e := h.cur.Load()
	if e.retired.Load() {
		h.mu.Lock()
		if e = h.cur.Load(); e.retired.Load() {
			ne, err := h.acquire()
			if err != nil {
				h.mu.Unlock()
				return nil, err
			}
			release(h.key, e)
			h.cur.Store(ne)
			e = ne
		}
		h.mu.Unlock()
	}
	e.touch()
	return e.store, nil
}

func (h *handle) Lookup(ctx context.Context, id string, wait time.Duration) (Record, bool, error) {
	s, err := h.get()
	if err != nil {
		return Record{}, false, err
	}
	return s.Lookup(ctx, id, wait)
}

func (h *handle) Learn(ctx context.Context, id string, rec Record) error {
	s, err := h.get()
	if err != nil {
		return err
	}
	return s.Learn(ctx, id, rec)
}

func (h *handle) MarkLost(ctx context.Context, id string) error {
	s, err := h.get()
	if err != nil {
		return err
	}
	return s.MarkLost(ctx, id)
}

func (h *handle) End(ctx context.Context, id string) error {
	s, err := h.get()
	if err != nil {
		return err
	}
	return s.End(ctx, id)
}

func (h *handle) String() string {
	if st, ok := h.cur.Load().store.(fmt.Stringer); ok {
		return st.String()
	}
	return "session store"
}

// Close releases this handle; the store closes with its last handle.
func (h *handle) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	h.mu.Lock()
	release(h.key, h.cur.Load())
	h.mu.Unlock()
	return nil
}

// FlightOf returns s's Flight, when its store (behind a handle from Open)
// has one.
func FlightOf(s Store) (Flight, bool) {
	fl, ok := Unwrap(s).(Flight)
	return fl, ok
}

// ReplicaNewsOf returns s's ReplicaNews, when its store (behind a handle
// from Open) has them.
func ReplicaNewsOf(s Store) (ReplicaNews, bool) {
	n, ok := Unwrap(s).(ReplicaNews)
	return n, ok
}

// Unwrap returns the shared store behind a handle from Open (for stats and
// tests); other stores are returned as they are.
func Unwrap(s Store) Store {
	if h, ok := s.(*handle); ok {
		if st, err := h.get(); err == nil {
			return st
		}
	}
	return s
}
