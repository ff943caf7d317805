package replica

import (
	"errors"
	"sync"
	"time"
)

// Flights runs one call per key at a time in the process (one recovery
// per session family): concurrent callers of a key wait for the running
// call's result instead of running their own.
type Flights[K comparable, V any] struct {
	wait time.Duration
	mu   sync.Mutex
	m    map[K]*flight[V]
}

type flight[V any] struct {
	done     chan struct{}
	v        V
	finished bool // false: fn panicked
}

var (
	// ErrBusy: the call another caller runs did not finish within the wait.
	ErrBusy = errors.New("another call of the key did not finish in time")
	// ErrAbandoned: the call another caller ran panicked.
	ErrAbandoned = errors.New("another call of the key panicked")
)

// NewFlights returns a group whose callers wait at most wait for a call
// another caller runs.
func NewFlights[K comparable, V any](wait time.Duration) *Flights[K, V] {
	return &Flights[K, V]{wait: wait, m: map[K]*flight[V]{}}
}

// Do runs fn for key, or waits for the call of key under way and returns
// its result. A panic in fn reaches Do's caller; the waiters get
// ErrAbandoned.
func (g *Flights[K, V]) Do(key K, fn func() V) (V, error) {
	g.mu.Lock()
	if c := g.m[key]; c != nil {
		g.mu.Unlock()
		t := time.NewTimer(g.wait)
		defer t.Stop()
		select {
		case <-c.done:
			if !c.finished {
				var zero V
				return zero, ErrAbandoned
			}
			return c.v, nil
		case <-t.C:
			var zero V
			return zero, ErrBusy
		}
	}
	c := &flight[V]{done: make(chan struct{})}
	g.m[key] = c
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.m, key)
		g.mu.Unlock()
		close(c.done)
	}()
	c.v = fn()
	c.finished = true
	return c.v, nil
}
