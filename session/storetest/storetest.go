// Package storetest is the one contract every session.Store backend must
// meet. Backends run it from their own tests:
//
//	storetest.RunContract(t, func(t *testing.T, ttl time.Duration) session.Store { ... })
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session"
)

// TTL is the session TTL of the stores the expiry subtests ask for. The
// tombstone TTL is min(TTL, 10m), so TTL too.
const TTL = time.Second

// longTTL is the TTL of the stores every other subtest asks for: long
// enough that no record expires under it, however slow the machine, so
// those subtests test what they name and not the clock.
const longTTL = 10 * time.Minute

// Bounds for things that must happen; none of them is a speed requirement.
const (
	longWait  = 20 * time.Second // a learn wait that must be cut short by a wake-up
	propagate = 2 * time.Second  // cross-node propagation through pub/sub, at most
)

// RunContract checks a Store backend. newStore is called one or more times
// per subtest: the first call in a subtest returns a store on a fresh, empty
// namespace; later calls in the same subtest return another Kong node's
// store on that same namespace (for a memory store, which has no other
// nodes, the same store). Stores must use the session TTL ttl (the same for
// every call in a subtest), and newStore closes them in t.Cleanup.
func RunContract(t *testing.T, newStoreTTL func(t *testing.T, ttl time.Duration) session.Store) {
	newStore := func(t *testing.T) session.Store { return newStoreTTL(t, longTTL) }
	rec := func(target string) session.Record {
		return session.Record{Target: target, Consumer: "consumer-1", Created: time.Now(), State: session.Active}
	}

	t.Run("LearnThenLookup", func(t *testing.T) {
		s := newStore(t)
		want := rec("10.0.0.1:8080")
		mustLearn(t, s, "s1", want)
		got, found, err := s.Lookup(ctx(t), "s1", 0)
		if err != nil || !found {
			t.Fatalf("Lookup = found %v, err %v; want the record", found, err)
		}
		sameRecord(t, got, want)

		// State 0 means Active.
		mustLearn(t, s, "s2", session.Record{Target: "10.0.0.2:8080"})
		got, found, err = s.Lookup(ctx(t), "s2", 0)
		if err != nil || !found || got.State != session.Active || got.Target != "10.0.0.2:8080" || got.Consumer != "" {
			t.Fatalf("Lookup(s2) = %+v, %v, %v; want Active 10.0.0.2:8080 and no consumer", got, found, err)
		}
		if got.Created.IsZero() {
			t.Errorf("Created is zero; the store should stamp it")
		}
	})

	t.Run("UnknownIDWithoutWait", func(t *testing.T) {
		s := newStore(t)
		_, found, err := s.Lookup(ctx(t), "nope", 0)
		if err != nil || found {
			t.Fatalf("Lookup(unknown, 0) = found %v, err %v; want not found, no error", found, err)
		}
	})

	t.Run("UnknownIDWaitsThenReturns", func(t *testing.T) {
		s := newStore(t)
		const wait = 150 * time.Millisecond
		start := time.Now()
		_, found, err := s.Lookup(ctx(t), "nope", wait)
		if err != nil || found {
			t.Fatalf("Lookup(unknown, wait) = found %v, err %v; want not found, no error", found, err)
		}
		if d := time.Since(start); d < wait/2 {
			t.Errorf("Lookup(unknown, %v) returned after %v: it did not wait", wait, d)
		}
	})

	t.Run("WaiterWokenByLearn", func(t *testing.T) {
		s := newStore(t)
		waitWakes(t, s, s)
	})

	t.Run("WaiterWokenByLearnOnOtherNode", func(t *testing.T) {
		a, b := newStore(t), newStore(t)
		waitWakes(t, a, b)
	})

	t.Run("ManyWaitersOneLearn", func(t *testing.T) {
		a, b := newStore(t), newStore(t)
		const n = 8
		var learned atomic.Bool
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				got, found, err := a.Lookup(ctx(t), "w", longWait)
				switch {
				case err != nil || !found:
					errs <- fmt.Errorf("found %v, err %v", found, err)
				case !learned.Load():
					errs <- errors.New("returned before Learn was called")
				case got.Target != "10.0.0.9:1":
					errs <- fmt.Errorf("target %q", got.Target)
				default:
					errs <- nil
				}
			}()
		}
		time.Sleep(50 * time.Millisecond) // let them park; the test holds either way
		learned.Store(true)
		mustLearn(t, b, "w", rec("10.0.0.9:1"))
		for i := 0; i < n; i++ {
			if err := <-errs; err != nil {
				t.Errorf("waiter %d: %v", i, err)
			}
		}
	})

	for _, tc := range []struct {
		name  string
		state session.State
		do    func(session.Store, context.Context, string) error
	}{
		{"End", session.Ended, session.Store.End},
		{"MarkLost", session.Lost, session.Store.MarkLost},
	} {
		t.Run(tc.name+"SeenByOtherNode", func(t *testing.T) {
			a, b := newStore(t), newStore(t)
			want := rec("10.0.0.3:8080")
			mustLearn(t, b, "s", want)
			// Warm a's cache (if it has one) with the Active record.
			for i := 0; i < 3; i++ {
				if _, found, err := a.Lookup(ctx(t), "s", time.Second); err != nil || !found {
					t.Fatalf("Lookup on a = found %v, err %v", found, err)
				}
			}
			if err := tc.do(b, ctx(t), "s"); err != nil {
				t.Fatalf("%s on b: %v", tc.name, err)
			}
			got := eventually(t, a, "s", func(r session.Record) bool { return r.State == tc.state })
			if got.Target != want.Target || got.Consumer != want.Consumer {
				t.Errorf("tombstone lost its fields: %+v", got)
			}
			// The node that wrote it sees it at once.
			got, found, err := b.Lookup(ctx(t), "s", 0)
			if err != nil || !found || got.State != tc.state {
				t.Errorf("Lookup on b = %+v, %v, %v; want state %v", got, found, err, tc.state)
			}
		})

		t.Run(tc.name+"UnknownAnswersAtOnce", func(t *testing.T) {
			a, b := newStore(t), newStore(t)
			if err := tc.do(b, ctx(t), "gone"); err != nil {
				t.Fatalf("%s(unknown): %v", tc.name, err)
			}
			start := time.Now()
			got, found, err := a.Lookup(ctx(t), "gone", longWait)
			if err != nil || !found || got.State != tc.state {
				t.Fatalf("Lookup = %+v, %v, %v; want a %v tombstone", got, found, err, tc.state)
			}
			if d := time.Since(start); d >= longWait/2 {
				t.Errorf("Lookup of a tombstone waited %v", d)
			}
		})
	}

	t.Run("RecoveryFields", func(t *testing.T) {
		a, b := newStore(t), newStore(t)
		init := `{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"c","version":"1"}}`
		plain := rec("10.0.0.4:8080")
		plain.Init, plain.Service = init, "service-1"
		mustLearn(t, a, "client", plain)
		got := eventually(t, b, "client", func(r session.Record) bool { return r.Init == init })
		if got.Upstream != "" || got.Alias != "" || got.Service != "service-1" {
			t.Errorf("a learned record = %+v, want no upstream or alias", got)
		}
		// A recovery points the client's id at a new upstream session, and
		// records the upstream id with the client's id as its alias.
		moved := rec("10.0.0.5:8080")
		moved.Init, moved.Upstream = init, "upstream-1"
		mustLearn(t, b, "client", moved)
		mustLearn(t, b, "upstream-1", session.Record{Target: moved.Target, Consumer: moved.Consumer,
			Created: moved.Created, State: session.Active, Init: init, Alias: "client"})
		got = eventually(t, a, "client", func(r session.Record) bool { return r.Upstream == "upstream-1" })
		if got.Target != moved.Target || got.Init != init || got.Alias != "" {
			t.Errorf("recovered record on the other node = %+v", got)
		}
		got = eventually(t, a, "upstream-1", func(r session.Record) bool { return r.Alias == "client" })
		if got.Target != moved.Target || got.Upstream != "" || got.Init != init {
			t.Errorf("upstream record = %+v", got)
		}
		// A tombstone keeps what a later recovery needs.
		if err := a.MarkLost(ctx(t), "client"); err != nil {
			t.Fatal(err)
		}
		got = eventually(t, b, "client", func(r session.Record) bool { return r.State == session.Lost })
		if got.Init != init || got.Upstream != "upstream-1" || got.Target != moved.Target {
			t.Errorf("lost record = %+v, want init, upstream and target kept", got)
		}
		// Learning a plain record again drops the recovery fields.
		mustLearn(t, b, "client", rec("10.0.0.6:8080"))
		got = eventually(t, a, "client", func(r session.Record) bool { return r.Target == "10.0.0.6:8080" })
		if got.Init != "" || got.Upstream != "" || got.Alias != "" || got.Service != "" {
			t.Errorf("relearned record = %+v, want no recovery fields", got)
		}
	})

	t.Run("RelearnSeenByOtherNode", func(t *testing.T) {
		a, b := newStore(t), newStore(t)
		mustLearn(t, b, "r", rec("10.0.0.4:1"))
		if _, found, err := a.Lookup(ctx(t), "r", time.Second); err != nil || !found {
			t.Fatalf("Lookup = found %v, err %v", found, err)
		}
		mustLearn(t, b, "r", rec("10.0.0.4:2"))
		eventually(t, a, "r", func(r session.Record) bool { return r.Target == "10.0.0.4:2" })
	})

	t.Run("TTLExpiry", func(t *testing.T) {
		s := newStoreTTL(t, TTL)
		mustLearn(t, s, "active", rec("10.0.0.5:1"))
		mustLearn(t, s, "tomb", rec("10.0.0.5:2"))
		if err := s.End(ctx(t), "tomb"); err != nil {
			t.Fatal(err)
		}
		if _, found, err := s.Lookup(ctx(t), "active", 0); err != nil || !found {
			t.Fatalf("fresh record: found %v, err %v", found, err)
		}
		// Each probe slides the TTL again, so probe less often than that.
		for _, id := range []string{"active", "tomb"} {
			gone := false
			for i := 0; i < 6 && !gone; i++ {
				time.Sleep(2 * TTL)
				_, found, err := s.Lookup(ctx(t), id, 0)
				if err != nil {
					t.Fatal(err)
				}
				gone = !found
			}
			if !gone {
				t.Errorf("%s record still there after %d probes %v apart (TTL %v)", id, 6, 2*TTL, TTL)
			}
		}
	})

	t.Run("SlidingExpiryKeepsActiveSessionAlive", func(t *testing.T) {
		// A lookup must find the record when less than TTL separates the
		// start of the previous use (its refresh happened after that) from
		// the end of this one (its read happened before that); on a machine
		// too slow for that, the probe proves nothing and is not counted.
		s := newStoreTTL(t, TTL)
		prevStart := time.Now()
		mustLearn(t, s, "busy", rec("10.0.0.6:1"))
		deadline := time.Now().Add(3 * TTL)
		n, checked := 0, 0
		for time.Now().Before(deadline) {
			time.Sleep(TTL / 10)
			n++
			start := time.Now()
			_, found, err := s.Lookup(ctx(t), "busy", 0)
			if err != nil {
				t.Fatalf("lookup %d: %v", n, err)
			}
			switch gap := time.Since(prevStart); {
			case gap < TTL && !found:
				t.Fatalf("lookup %d: not found %v after the previous use began (TTL %v)", n, gap, TTL)
			case gap < TTL:
				checked++
			case !found: // may have expired: learn it again
				start = time.Now()
				mustLearn(t, s, "busy", rec("10.0.0.6:1"))
			}
			prevStart = start
		}
		if checked < 10 {
			t.Fatalf("only %d of %d lookups came less than TTL %v after the previous one", checked, n, TTL)
		}
	})

	t.Run("ContextCanceled", func(t *testing.T) {
		s := newStore(t)
		c, cancel := context.WithCancel(context.Background())
		cancel()
		_, found, err := s.Lookup(c, "nope", longWait)
		if found || !errors.Is(err, context.Canceled) {
			t.Fatalf("Lookup(canceled ctx) = found %v, err %v; want context.Canceled", found, err)
		}
	})

	t.Run("ConcurrentUse", func(t *testing.T) {
		a, b := newStore(t), newStore(t)
		const workers, rounds = 8, 60
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < rounds; i++ {
					node, other := a, b
					if i%2 == 1 {
						node, other = b, a
					}
					id := fmt.Sprintf("c-%d-%d", w, i)
					target := fmt.Sprintf("10.1.%d.%d:80", w, i)
					if err := node.Learn(ctx(t), id, rec(target)); err != nil {
						errs <- err
						return
					}
					got, found, err := node.Lookup(ctx(t), id, 0)
					if err != nil || !found || got.Target != target || got.State != session.Active {
						errs <- fmt.Errorf("read after own Learn of %s: %+v %v %v", id, got, found, err)
						return
					}
					// The other node waits for it if it has not arrived yet.
					if got, found, err := other.Lookup(ctx(t), id, longWait); err != nil || !found || got.Target != target {
						errs <- fmt.Errorf("other node's Lookup of %s: %+v %v %v", id, got, found, err)
						return
					}
					shared := fmt.Sprintf("shared-%d", i%5)
					if err := node.Learn(ctx(t), shared, rec(target)); err != nil {
						errs <- err
						return
					}
					if _, _, err := other.Lookup(ctx(t), shared, 0); err != nil {
						errs <- err
						return
					}
					if i%3 == 0 {
						if err := node.End(ctx(t), id); err != nil {
							errs <- err
							return
						}
						got, found, err := node.Lookup(ctx(t), id, 0)
						if err != nil || !found || got.State != session.Ended {
							errs <- fmt.Errorf("read after own End of %s: %+v %v %v", id, got, found, err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// waitWakes parks a Lookup on a, learns through b, and checks the Lookup
// returned the record, not before Learn was called, and well before its
// wait ran out (so it was woken, not rescued by a last read).
func waitWakes(t *testing.T, a, b session.Store) {
	t.Helper()
	var learned atomic.Bool
	type result struct {
		rec     session.Record
		found   bool
		err     error
		early   bool
		elapsed time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		rec, found, err := a.Lookup(ctx(t), "late", longWait)
		done <- result{rec, found, err, !learned.Load(), time.Since(start)}
	}()
	time.Sleep(50 * time.Millisecond) // let it park; the test holds either way
	learned.Store(true)
	want := session.Record{Target: "10.0.0.7:9000", Consumer: "c", Created: time.Now(), State: session.Active}
	mustLearn(t, b, "late", want)
	r := <-done
	if r.err != nil || !r.found {
		t.Fatalf("waiting Lookup = found %v, err %v", r.found, r.err)
	}
	if r.early {
		t.Fatalf("waiting Lookup returned before Learn was called")
	}
	sameRecord(t, r.rec, want)
	if r.elapsed >= longWait {
		t.Errorf("waiting Lookup took its whole wait (%v): Learn did not wake it", r.elapsed)
	}
}

// eventually looks id up on s until ok holds, for at most propagate.
func eventually(t *testing.T, s session.Store, id string, ok func(session.Record) bool) session.Record {
	t.Helper()
	var last session.Record
	for i := 0; i < int(propagate/(5*time.Millisecond)); i++ {
		rec, found, err := s.Lookup(ctx(t), id, 0)
		if err != nil {
			t.Fatalf("Lookup(%s): %v", id, err)
		}
		if found && ok(rec) {
			if i > 0 {
				t.Logf("Lookup(%s) saw the change after %d retries", id, i)
			}
			return rec
		}
		last = rec
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("Lookup(%s) never saw the change within %v; last %+v", id, propagate, last)
	return last
}

func mustLearn(t *testing.T, s session.Store, id string, rec session.Record) {
	t.Helper()
	if err := s.Learn(ctx(t), id, rec); err != nil {
		t.Fatalf("Learn(%s): %v", id, err)
	}
}

func sameRecord(t *testing.T, got, want session.Record) {
	t.Helper()
	if got.Target != want.Target || got.Consumer != want.Consumer || got.State != want.State {
		t.Errorf("record = %+v, want %+v", got, want)
	}
	// Stores may keep Created in milliseconds.
	if d := got.Created.Sub(want.Created); d > time.Millisecond || d < -time.Millisecond {
		t.Errorf("Created = %v, want %v", got.Created, want.Created)
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }
