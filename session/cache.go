package session

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// recCache is the Redis store's per-node cache. It is only trusted while the
// node's event subscription is up (epoch even): every write on any node
// publishes an event, and applying an event bumps the shard's seq, so a read
// that raced a write never stores its stale answer (fill checks the seq it
// saw before asking Redis).
type recCache struct {
	epoch  atomic.Uint64 // odd: not subscribed, cache bypassed
	life   int64         // nanoseconds an entry is trusted
	base   time.Time
	seed   maphash.Seed
	shards [16]cacheShard
}

type cacheShard struct {
	mu  sync.RWMutex
	seq atomic.Uint64 // changed under mu
	max int
	m   map[string]cacheEntry
	_   [64]byte
}

type cacheEntry struct {
	rec Record
	exp int64
}

// cacheToken is what a reader saw before asking Redis.
type cacheToken struct {
	epoch, seq uint64
}

func newRecCache(size int, life time.Duration) *recCache {
	c := &recCache{life: int64(life), base: time.Now(), seed: maphash.MakeSeed()}
	c.epoch.Store(1)
	per := max((size+len(c.shards)-1)/len(c.shards), 1)
	for i := range c.shards {
		c.shards[i].max = per
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func (c *recCache) now() int64 { return int64(time.Since(c.base)) }

func (c *recCache) shard(id string) *cacheShard {
	return &c.shards[maphash.String(c.seed, id)&uint64(len(c.shards)-1)]
}

func (c *recCache) get(id string) (Record, bool) {
	if c.epoch.Load()&1 == 1 {
		return Record{}, false
	}
	sh := c.shard(id)
	sh.mu.RLock()
	e, ok := sh.m[id]
	sh.mu.RUnlock()
	if !ok || c.now() > e.exp {
		return Record{}, false
	}
	return e.rec, true
}

func (c *recCache) token(id string) cacheToken {
	return cacheToken{epoch: c.epoch.Load(), seq: c.shard(id).seq.Load()}
}

// usable says whether an answer obtained under tok may be stored. Call with
// the shard lock held.
func (c *recCache) usable(sh *cacheShard, tok cacheToken) bool {
	return tok.epoch&1 == 0 && c.epoch.Load() == tok.epoch && sh.seq.Load() == tok.seq
}

func (sh *cacheShard) set(id string, rec Record, exp int64) {
	if _, ok := sh.m[id]; !ok && len(sh.m) >= sh.max {
		for k := range sh.m { // map order is random: random eviction
			delete(sh.m, k)
			break
		}
	}
	sh.m[id] = cacheEntry{rec: rec, exp: exp}
}

// fill stores what a read returned, unless anything changed since tok.
func (c *recCache) fill(id string, rec Record, tok cacheToken) {
	sh := c.shard(id)
	sh.mu.Lock()
	if c.usable(sh, tok) {
		sh.set(id, rec, c.now()+c.life)
	}
	sh.mu.Unlock()
}

// put stores this node's own write. It bumps seq so that reads in flight
// cannot overwrite it with what they saw before.
func (c *recCache) put(id string, rec Record, tok cacheToken) {
	sh := c.shard(id)
	sh.mu.Lock()
	if c.usable(sh, tok) {
		sh.set(id, rec, c.now()+c.life)
	} else {
		delete(sh.m, id)
	}
	sh.seq.Add(1)
	sh.mu.Unlock()
}

// invalidate drops id on an event from any node and fences off reads in
// flight. Dropping, not overwriting: an event may arrive after a read that
// already saw a newer value, and the next read fetches the truth.
func (c *recCache) invalidate(id string) {
	sh := c.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.seq.Add(1)
	sh.mu.Unlock()
}

// down is called when the subscription is lost: from then on events may be
// missed, so nothing cached can be trusted.
func (c *recCache) down() {
	if c.epoch.Load()&1 == 0 {
		c.epoch.Add(1)
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.seq.Add(1)
		sh.mu.Unlock()
	}
}

// up is called once the subscription is confirmed again.
func (c *recCache) up() {
	if c.epoch.Load()&1 == 1 {
		c.epoch.Add(1)
	}
}

func (c *recCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
