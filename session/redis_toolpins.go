package session

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tool pins in Redis: one hash per scope, <prefix>t:{<scope>}, with the
// fields "p:<name>" (the first digest, written with HSETNX: set-if-absent,
// so the first node to record a name wins and every node then reads its
// digest), "h:<name>" ("<digest> <unix ms>", a held definition) and
// "sealed". It never expires: it is a trust anchor, like the deck. Every
// write publishes "<node tag> <nonce> <scope>" on <prefix>tools; the other
// nodes drop their cached copy of that scope and read it again when they
// next need it (one HGETALL), so a tool held on one node is held on every
// node before the client that listed it can call it elsewhere.

var _ ToolPins = (*Redis)(nil)

func (s *Redis) pinsKey(scope string) string { return s.prefix + "t:{" + scope + "}" }

func (s *Redis) pinsChannel() string { return s.prefix + "tools" }

// pinCache is a node's copy of the scopes it uses. It is trusted like the
// record cache: while the event subscription is up, for at most its life.
type pinCache struct {
	mu     sync.Mutex
	life   time.Duration
	m      map[string]pinCached
	gen    atomic.Uint64 // bumped by every invalidation: a read that raced one is not kept
	trusty atomic.Bool   // the subscription is up
}

type pinCached struct {
	set *PinSet
	at  time.Time
}

func newPinCache(life time.Duration) *pinCache {
	return &pinCache{life: life, m: map[string]pinCached{}}
}

func (c *pinCache) get(scope string) (*PinSet, bool) {
	if !c.trusty.Load() {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[scope]
	if !ok || time.Since(e.at) > c.life {
		return nil, false
	}
	return e.set, true
}

func (c *pinCache) fill(scope string, set *PinSet, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen || !c.trusty.Load() {
		return
	}
	if len(c.m) >= 1024 { // scopes are services with pinning: bound it anyway
		clear(c.m)
	}
	c.m[scope] = pinCached{set: set, at: time.Now()}
}

func (c *pinCache) invalidate(scope string) {
	c.mu.Lock()
	c.gen.Add(1)
	delete(c.m, scope)
	c.mu.Unlock()
}

// down forgets everything: events may be missed until the subscription is
// back.
func (c *pinCache) down() {
	c.mu.Lock()
	c.trusty.Store(false)
	c.gen.Add(1)
	clear(c.m)
	c.mu.Unlock()
}

func (c *pinCache) up() { c.trusty.Store(true) }

// Pins implements ToolPins: the cached copy, or one HGETALL.
func (s *Redis) Pins(ctx context.Context, scope string) (*PinSet, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	if set, ok := s.pinCache.get(scope); ok {
		return set, nil
	}
	gen := s.pinCache.gen.Load()
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	fields, err := s.client.HGetAll(cctx, s.pinsKey(scope)).Result()
	cancel()
	if err != nil {
		return nil, s.failed("tool pins", err)
	}
	set := decodePins(fields)
	s.pinCache.fill(scope, set, gen)
	return set, nil
}

// ARGV: channel, event, max pinned, max held, seal ("1" or "0"), unix ms,
// number of first digests n, then n name/digest pairs, then name/hold
// value pairs. Returns the hash after the write.
var scriptWritePins = redis.NewScript(`
local changed = false
local n = tonumber(ARGV[7])
local pinned = 0
if n > 0 then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(f, 1, 2) == 'p:' then pinned = pinned + 1 end
  end
end
local i = 8
for _ = 1, n do
  if pinned < tonumber(ARGV[3]) and redis.call('HSETNX', KEYS[1], 'p:' .. ARGV[i], ARGV[i + 1]) == 1 then
    pinned = pinned + 1
    changed = true
  end
  i = i + 2
end
if ARGV[5] == '1' and redis.call('HSETNX', KEYS[1], 'sealed', ARGV[6]) == 1 then
  changed = true
end
while i < #ARGV do
  local f = 'h:' .. ARGV[i]
  if redis.call('HEXISTS', KEYS[1], f) == 1 or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) + tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], f, ARGV[i + 1])
    changed = true
  end
  i = i + 2
end
if changed then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return {changed and 1 or 0, redis.call('HGETALL', KEYS[1])}`)

// WritePins implements ToolPins in one round trip. When it changed
// anything, it returns once this node's subscriber has its own event
// (bounded by the timeout): Redis hands an event to every subscriber at
// once, so by then the other nodes have dropped their copy too.
func (s *Redis) WritePins(ctx context.Context, scope string, w PinWrite) (*PinSet, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	nonce := strconv.FormatUint(rand.Uint64(), 36)
	args := []any{s.pinsChannel(), s.tag + " " + nonce + " " + scope, MaxPinnedTools, MaxHeldTools,
		boolArg(w.Seal), time.Now().UnixMilli(), len(w.First)}
	for name, d := range w.First {
		args = append(args, name, d)
	}
	for name, h := range w.Hold {
		args = append(args, name, h.Digest+" "+strconv.FormatInt(h.Seen.UnixMilli(), 10))
	}
	var ws *waiter[string]
	if s.subscribed.Load() {
		ws = s.waits.add(pinWaitKey(nonce))
		defer s.waits.remove(pinWaitKey(nonce), ws)
	}
	s.pinCache.invalidate(scope)
	gen := s.pinCache.gen.Load()
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := scriptWritePins.Run(cctx, s.client, []string{s.pinsKey(scope)}, args...).Slice()
	if err != nil {
		return nil, s.failed("tool pins write", err)
	}
	changed, _ := res[0].(int64)
	raw, _ := res[1].([]any)
	fields := make(map[string]string, len(raw)/2)
	for i := 0; i+1 < len(raw); i += 2 {
		k, _ := raw[i].(string)
		v, _ := raw[i+1].(string)
		fields[k] = v
	}
	set := decodePins(fields)
	if changed == 1 && ws != nil {
		select {
		case <-ws.ch:
		case <-cctx.Done(): // the subscription is down: every node's copy is dropped then
		}
	}
	s.pinCache.fill(scope, set, gen)
	return set, nil
}

// pinWaitKey names a write's own event among the store's waiters; a space
// never occurs in a session id.
func pinWaitKey(nonce string) string { return " pins " + nonce }

// onPinEvent drops another node's changed scope from the cache and wakes a
// writer waiting for its own event.
func (s *Redis) onPinEvent(payload string) {
	tag, rest, _ := strings.Cut(payload, " ")
	nonce, scope, ok := strings.Cut(rest, " ")
	if !ok {
		return
	}
	if tag != s.tag {
		s.pinCache.invalidate(scope)
		return
	}
	s.waits.notify(pinWaitKey(nonce), "")
}

func decodePins(fields map[string]string) *PinSet {
	set := &PinSet{Baseline: map[string]string{}, Held: map[string]Hold{}}
	for k, v := range fields {
		switch {
		case strings.HasPrefix(k, "p:"):
			set.Baseline[k[2:]] = v
		case strings.HasPrefix(k, "h:"):
			d, ms, _ := strings.Cut(v, " ")
			n, _ := strconv.ParseInt(ms, 10, 64)
			set.Held[k[2:]] = Hold{Digest: d, Seen: time.UnixMilli(n)}
		case k == "sealed":
			set.Sealed = true
		}
	}
	return set
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
