package handler

import (
	"context"
	"sync"
	"time"

	"github.com/mcp-relay/mcp-relay/logging"
	"github.com/mcp-relay/mcp-relay/session"
)

// storeHealth watches one shared Redis store (per connection settings and
// key prefix, as session.Open shares them): an instance start checks it in
// the background (a Redis that is down when Kong starts the plugin must not
// stay silent until the first sessions break), and so does a request whose
// store call failed. While it is down it is asked again with a bounded
// backoff; its coming back is logged. A check is a lookup of an id no one
// has: one Redis round trip, nothing written.
type storeHealth struct {
	name    string // connection settings, safe to log (no passwords)
	store   session.Store
	timeout time.Duration

	mu       sync.Mutex
	up       bool
	checking bool
}

var storeHealths = struct {
	sync.Mutex
	m map[string]*storeHealth
}{m: map[string]*storeHealth{}}

// Backoff of the checks while a store is down.
var (
	storeRetryMin = 250 * time.Millisecond
	storeRetryMax = 5 * time.Second
)

// storesUp is 1 when every Redis store in use answered its last check.
func storesUp() float64 {
	storeHealths.Lock()
	defer storeHealths.Unlock()
	for _, h := range storeHealths.m {
		h.mu.Lock()
		up := h.up
		h.mu.Unlock()
		if !up {
			return 0
		}
	}
	return 1
}

// watchStore registers the instance's Redis store and checks it in the
// background; instances of the same store share one watcher.
func (p *Plugin) watchStore(redis session.RedisConfig) {
	if p.store == nil || !p.settings.redisStore {
		return
	}
	name := redis.Key() + " prefix=" + redis.KeyPrefix
	storeHealths.Lock()
	h := storeHealths.m[name]
	first := h == nil
	if first {
		h = &storeHealth{name: name, store: p.store, timeout: p.storeTimeout(), up: true}
		storeHealths.m[name] = h
	}
	storeHealths.Unlock()
	p.health = h
	if first {
		// The first instance of a store checks it before it starts serving,
		// briefly (a refused connection fails in microseconds), so that
		// the first request already reports a dead Redis.
		h.mu.Lock()
		h.checking = true
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), min(h.timeout, firstCheckTimeout))
		_, _, err := h.store.Lookup(ctx, decoyID(), 0)
		cancel()
		if err == nil {
			h.mu.Lock()
			h.checking = false
			h.mu.Unlock()
			return
		}
		h.setDown("at instance start", err)
		go h.loop(true)
		return
	}
	h.check()
}

// firstCheckTimeout bounds the check an instance start waits for.
const firstCheckTimeout = 250 * time.Millisecond

func (h *storeHealth) setDown(when string, err error) {
	h.mu.Lock()
	h.up = false
	h.mu.Unlock()
	logger.Error("session store unreachable: sessions are not pinned (session.store_error decides what their requests get) until it answers; retrying",
		"store", h.name, "checked", when, "err", err)
}

// failed is called by a request whose store call failed.
func (h *storeHealth) failed() {
	if h != nil {
		h.check()
	}
}

// check starts the checking loop unless one runs.
func (h *storeHealth) check() {
	h.mu.Lock()
	if h.checking {
		h.mu.Unlock()
		return
	}
	h.checking = true
	h.mu.Unlock()
	go h.loop(false)
}

// loop checks until the store answers; wasDown: the caller found it down
// (and logged it) already.
func (h *storeHealth) loop(wasDown bool) {
	wait := storeRetryMin
	if wasDown {
		time.Sleep(wait)
		wait *= 2
	}
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		_, _, err := h.store.Lookup(ctx, decoyID(), 0)
		cancel()
		h.mu.Lock()
		h.up = err == nil
		if err == nil {
			h.checking = false
		}
		h.mu.Unlock()
		if err == nil {
			if wasDown {
				logger.Log(context.Background(), logging.LevelNotice, "session store reachable again",
					"store", h.name, "attempts", attempt)
			}
			return
		}
		if !wasDown {
			wasDown = true
			h.setDown("after a failed request", err)
		}
		time.Sleep(wait)
		wait = min(2*wait, storeRetryMax)
	}
}
