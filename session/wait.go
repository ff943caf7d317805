package session

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// waitSet parks Lookups for ids that have no record yet and wakes them the
// moment a write for that id lands. Writers pay one atomic load when nobody
// waits, which is almost always.
type waitSet[V any] struct {
	n      atomic.Int64
	seed   maphash.Seed
	shards [16]waitShard[V]
}

type waitShard[V any] struct {
	mu sync.Mutex
	m  map[string][]*waiter[V]
}

// waiter receives every value written for its id while registered. The
// buffer lets writers never block; a waiter that falls behind only misses
// values it would not have used.
type waiter[V any] struct {
	ch chan V
}

func newWaitSet[V any]() *waitSet[V] {
	return &waitSet[V]{seed: maphash.MakeSeed()}
}

func (s *waitSet[V]) shard(id string) *waitShard[V] {
	return &s.shards[maphash.String(s.seed, id)&uint64(len(s.shards)-1)]
}

// add registers a waiter. The caller must check the store again after add
// (a write may have landed just before) and must call remove.
func (s *waitSet[V]) add(id string) *waiter[V] {
	w := &waiter[V]{ch: make(chan V, 4)}
	// Count first: a writer that sees 0 finished its write before we look.
	s.n.Add(1)
	sh := s.shard(id)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[string][]*waiter[V])
	}
	sh.m[id] = append(sh.m[id], w)
	sh.mu.Unlock()
	return w
}

func (s *waitSet[V]) remove(id string, w *waiter[V]) {
	sh := s.shard(id)
	sh.mu.Lock()
	ws := sh.m[id]
	for i, x := range ws {
		if x == w {
			ws[i] = ws[len(ws)-1]
			ws[len(ws)-1] = nil
			ws = ws[:len(ws)-1]
			break
		}
	}
	if len(ws) == 0 {
		delete(sh.m, id)
	} else {
		sh.m[id] = ws
	}
	sh.mu.Unlock()
	s.n.Add(-1)
}

// notify hands v to every waiter of id. Call it after the write is visible.
func (s *waitSet[V]) notify(id string, v V) {
	if s.n.Load() == 0 {
		return
	}
	sh := s.shard(id)
	sh.mu.Lock()
	for _, w := range sh.m[id] {
		select {
		case w.ch <- v:
		default:
		}
	}
	sh.mu.Unlock()
}
