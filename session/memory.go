package session

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"
)

var (
	errClosed = fmt.Errorf("%w: store closed", ErrUnavailable)
	errNoID   = errors.New("session: empty id")
)

// MemoryOptions configures NewMemory. Zero fields take the defaults.
type MemoryOptions struct {
	// TTL is how long an Active session may go unused before it expires
	// (default 1h). Lookups slide it.
	TTL time.Duration
	// MaxSessions bounds the number of records (default 1000000); beyond it
	// the least recently used one is evicted.
	MaxSessions int
	// TombstoneTTL is how long Lost and Ended records are kept
	// (default min(TTL, 10m)). Lookups do not slide it.
	TombstoneTTL time.Duration
}

func (o MemoryOptions) withDefaults() MemoryOptions {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.TombstoneTTL <= 0 {
		o.TombstoneTTL = min(o.TTL, MaxTombstoneTTL)
	}
	return o
}

// Memory is the single-node store. Records live in per-shard slabs indexed by
// a map, so a session costs one map slot, one 64-byte slab entry and its id.
// Lookups take only a shard read lock: they stamp an atomic last-seen time
// (which slides the TTL) and a second-chance bit (which drives eviction).
type Memory struct {
	ttl, tombTTL, gran int64 // nanoseconds
	base               time.Time
	seed               maphash.Seed
	shards             []memShard
	count              atomic.Int64 // records in all shards
	max                int64
	waits              *waitSet[struct{}]
	closed             atomic.Bool
	stop               chan struct{}
	done               chan struct{}
}

var _ Store = (*Memory)(nil)

const nilIdx = ^uint32(0)

// memEntry is one record. A free entry has id == "" and next links the free
// list. The int64s come first so their atomics are aligned on 32-bit too.
type memEntry struct {
	seen     int64 // atomic; store clock of the last use, or of tombstoning
	created  int64 // unix nanoseconds
	id       string
	target   unique.Handle[string]
	consumer unique.Handle[string]
	// init is interned: the clients of a deployment send a handful of
	// distinct initialize params, so a session pays one handle for them.
	init  unique.Handle[memInit]
	extra *memExtra // nil unless a recovery wrote the record
	prev  uint32    // recency list; head was placed most recently
	next  uint32
	ref   uint32 // atomic; used since it was last placed at the head
	state State
}

// memExtra holds the ids of a recovered session's family (rare, so out of line).
type memExtra struct{ upstream, alias string }

// memInit is what a session keeps for recovery, interned as one value: the
// sessions of one service and client kind share it.
type memInit struct{ init, service string }

type memShard struct {
	mu    sync.RWMutex
	index map[string]uint32
	slots []memEntry
	free  uint32
	head  uint32
	tail  uint32
	_     [64]byte // keep neighbouring shards' locks off one cache line
}

// NewMemory returns a store for one node. Close stops its sweeper.
func NewMemory(opts MemoryOptions) *Memory {
	opts = opts.withDefaults()
	// One shard per ~1024 sessions, up to 64: small stores keep an exact
	// global recency order, big ones spread lock traffic. The bound is
	// global; a full store evicts from the shard it inserts into.
	n := 1
	for n < 64 && n*2*1024 <= opts.MaxSessions {
		n *= 2
	}
	m := &Memory{
		ttl:     int64(opts.TTL),
		tombTTL: int64(opts.TombstoneTTL),
		// Last-seen is written at most once per gran per session, so hot
		// sessions do not bounce a cache line on every lookup.
		gran:   int64(min(opts.TTL/64, time.Second)),
		base:   time.Now(),
		seed:   maphash.MakeSeed(),
		shards: make([]memShard, n),
		max:    int64(opts.MaxSessions),
		waits:  newWaitSet[struct{}](),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for i := range m.shards {
		m.shards[i] = memShard{index: make(map[string]uint32), free: nilIdx, head: nilIdx, tail: nilIdx}
	}
	go m.sweeper(min(max(min(opts.TTL, opts.TombstoneTTL)/4, 50*time.Millisecond), 30*time.Second))
	return m
}

func (m *Memory) now() int64 { return int64(time.Since(m.base)) }

func (m *Memory) shard(id string) *memShard {
	return &m.shards[maphash.String(m.seed, id)&uint64(len(m.shards)-1)]
}

func (m *Memory) expired(e *memEntry, now int64) bool {
	age := now - atomic.LoadInt64(&e.seen)
	if e.state == Active {
		return age > m.ttl+m.gran
	}
	return age > m.tombTTL
}

// get reads id under the read lock and marks it used.
func (m *Memory) get(sh *memShard, id string) (Record, bool) {
	now := m.now()
	sh.mu.RLock()
	i, ok := sh.index[id]
	if !ok {
		sh.mu.RUnlock()
		return Record{}, false
	}
	e := &sh.slots[i]
	if m.expired(e, now) {
		sh.mu.RUnlock()
		return Record{}, false
	}
	if e.state == Active {
		if old := atomic.LoadInt64(&e.seen); now-old >= m.gran {
			// One CAS is enough: if it fails, another lookup just slid it.
			atomic.CompareAndSwapInt64(&e.seen, old, now)
		}
	}
	if atomic.LoadUint32(&e.ref) == 0 {
		atomic.StoreUint32(&e.ref, 1)
	}
	rec := Record{Target: e.target.Value(), Consumer: e.consumer.Value(), Created: time.Unix(0, e.created), State: e.state,
		Init: e.init.Value().init, Service: e.init.Value().service}
	if x := e.extra; x != nil {
		rec.Upstream, rec.Alias = x.upstream, x.alias
	}
	sh.mu.RUnlock()
	return rec, true
}

// Lookup implements Store.
func (m *Memory) Lookup(ctx context.Context, id string, wait time.Duration) (Record, bool, error) {
	if m.closed.Load() {
		return Record{}, false, errClosed
	}
	sh := m.shard(id)
	if rec, ok := m.get(sh, id); ok || wait <= 0 {
		return rec, ok, nil
	}
	w := m.waits.add(id)
	defer m.waits.remove(id, w)
	if rec, ok := m.get(sh, id); ok {
		return rec, true, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ch:
	case <-t.C:
	case <-ctx.Done():
		return Record{}, false, ctx.Err()
	}
	rec, ok := m.get(sh, id)
	return rec, ok, nil
}

// Learn implements Store.
func (m *Memory) Learn(_ context.Context, id string, rec Record) error {
	if rec.State == 0 {
		rec.State = Active
	}
	created := rec.Created.UnixNano()
	if rec.Created.IsZero() {
		created = time.Now().UnixNano()
	}
	return m.write(id, rec.State, func(e *memEntry) {
		e.target = unique.Make(rec.Target)
		e.consumer = unique.Make(rec.Consumer)
		e.init = unique.Make(memInit{rec.Init, rec.Service})
		e.extra = nil
		if rec.Upstream != "" || rec.Alias != "" {
			e.extra = &memExtra{upstream: strings.Clone(rec.Upstream), alias: strings.Clone(rec.Alias)}
		}
		e.created = created
	})
}

// MarkLost implements Store.
func (m *Memory) MarkLost(_ context.Context, id string) error { return m.write(id, Lost, nil) }

// End implements Store.
func (m *Memory) End(_ context.Context, id string) error { return m.write(id, Ended, nil) }

// write sets id's state (and fields, via fill) and wakes its waiters. A
// tombstone for an unknown id is created so later requests fail at once.
func (m *Memory) write(id string, st State, fill func(*memEntry)) error {
	if m.closed.Load() {
		return errClosed
	}
	if id == "" {
		return errNoID
	}
	sh := m.shard(id)
	now := m.now()
	sh.mu.Lock()
	i, ok := sh.index[id]
	if ok {
		sh.unlink(i)
	} else {
		if m.count.Load() >= m.max {
			m.evict(sh, now)
		}
		m.count.Add(1)
		i = sh.alloc()
		e := &sh.slots[i]
		// Clone: the caller's id may point into a large request buffer.
		e.id = strings.Clone(id)
		e.target = unique.Make("")
		e.consumer = unique.Make("")
		e.init = unique.Make(memInit{})
		e.created = time.Now().UnixNano()
		sh.index[e.id] = i
	}
	e := &sh.slots[i]
	if fill != nil {
		fill(e)
	}
	e.state = st
	atomic.StoreInt64(&e.seen, now)
	atomic.StoreUint32(&e.ref, 0)
	sh.pushHead(i)
	sh.mu.Unlock()
	m.waits.notify(id, struct{}{})
	return nil
}

// evict frees one entry: an expired one at the old end, else the oldest not
// used since it was placed (second chance, an O(1)-amortised LRU). Lookups
// are excluded by the write lock, so one pass clears every ref bit and the
// loop ends.
func (m *Memory) evict(sh *memShard, now int64) {
	for pass := 0; sh.tail != nilIdx; pass++ {
		i := sh.tail
		e := &sh.slots[i]
		if pass <= len(sh.index) && !m.expired(e, now) && atomic.LoadUint32(&e.ref) != 0 {
			atomic.StoreUint32(&e.ref, 0)
			sh.unlink(i)
			sh.pushHead(i)
			continue
		}
		m.remove(sh, i)
		return
	}
}

func (sh *memShard) alloc() uint32 {
	if i := sh.free; i != nilIdx {
		sh.free = sh.slots[i].next
		return i
	}
	sh.slots = append(sh.slots, memEntry{})
	return uint32(len(sh.slots) - 1)
}

func (m *Memory) remove(sh *memShard, i uint32) {
	m.count.Add(-1)
	e := &sh.slots[i]
	delete(sh.index, e.id)
	sh.unlink(i)
	*e = memEntry{next: sh.free}
	sh.free = i
}

func (sh *memShard) unlink(i uint32) {
	e := &sh.slots[i]
	if e.prev != nilIdx {
		sh.slots[e.prev].next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != nilIdx {
		sh.slots[e.next].prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = nilIdx, nilIdx
}

func (sh *memShard) pushHead(i uint32) {
	e := &sh.slots[i]
	e.prev, e.next = nilIdx, sh.head
	if sh.head != nilIdx {
		sh.slots[sh.head].prev = i
	} else {
		sh.tail = i
	}
	sh.head = i
}

// String describes the store without reading its records.
func (m *Memory) String() string {
	return fmt.Sprintf("session.Memory(ttl=%v, max=%d)", time.Duration(m.ttl), m.max)
}

// Len returns the number of records held, expired ones not yet swept included.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		n += len(sh.index)
		sh.mu.RUnlock()
	}
	return n
}

// sweep drops expired records so memory follows the live set; lookups
// already ignore them.
func (m *Memory) sweep() {
	for i := range m.shards {
		sh := &m.shards[i]
		now := m.now()
		sh.mu.Lock()
		for j := range sh.slots {
			if e := &sh.slots[j]; e.id != "" && m.expired(e, now) {
				m.remove(sh, uint32(j))
			}
		}
		sh.mu.Unlock()
	}
}

func (m *Memory) sweeper(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sweep()
		}
	}
}

// Close implements Store. It is idempotent.
func (m *Memory) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	close(m.stop)
	<-m.done
	return nil
}
