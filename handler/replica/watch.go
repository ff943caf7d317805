package replica

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Watch probes the replicas sessions are pinned to, so that the
// sessions of a dead replica are answered 404 (the client re-initialises on
// a live one) instead of Kong's 502 until they expire. Kong's own 502 skips
// the Response phase, and watching for it in Log would cost a PDK call on
// every request; a TCP connect from the plugin process costs none.
//
// Only replicas pinned within the idle window are probed; the probe loop
// stops by itself when there are none, so an instance Kong replaced leaves
// nothing running.
type Watch struct {
	interval time.Duration // between probes, and each probe's connect timeout
	idle     time.Duration // a replica not pinned for this long is forgotten
	dial     func(ctx context.Context, addr string) error
	fleet    *Fleet
	changed  func(target string, down bool, err error)

	replicas sync.Map // "ip:port" -> *replica
	mu       sync.Mutex
	running  bool
}

type replica struct {
	lastPinned atomic.Int64 // unix nanoseconds
	down       atomic.Bool
	// downAt is when a probe was last refused (unix nanoseconds): a
	// replica that restarted on the same address since a session was
	// created has forgotten that session.
	downAt   atomic.Int64
	pins     atomic.Int64 // pinned requests, halved at every probe: recent load
	failures int          // consecutive failed probes; the probe loop's alone
}

// downAfter failed probes in a row make a replica down: one lost SYN must
// not cost every session of a replica. A refused connection (nothing
// listens: the replica is gone) counts at once.
const downAfter = 2

// WatchOptions configure NewWatch.
type WatchOptions struct {
	// Interval is the time between probes, and each probe's connect timeout.
	Interval time.Duration
	// Fleet, when set, gets every replica first pinned for a service.
	Fleet *Fleet
	// Changed, when set, is told when the probes find a replica down (err
	// is the last probe's) and when it is reachable again (down false).
	Changed func(target string, down bool, err error)
}

// NewWatch returns a watch whose probes start with the first pin.
func NewWatch(opts WatchOptions) *Watch {
	return &Watch{
		interval: opts.Interval,
		idle:     max(30*time.Second, 10*opts.Interval),
		dial:     dialTCP,
		fleet:    opts.Fleet,
		changed:  opts.Changed,
	}
}

func dialTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
	}
	return err
}

// Pinned records that a request of a session of the Kong service service
// is being pinned to target, and tells whether the target is known to be
// down, and when the probes last found it down (unix nanoseconds, 0 never).
// A replica first watched here joins the fleet recoveries choose from (once
// per idle window, off the per-request path).
func (w *Watch) Pinned(service, target string, now time.Time) (down bool, downAt int64) {
	v, ok := w.replicas.Load(target)
	if !ok {
		var loaded bool
		if v, loaded = w.replicas.LoadOrStore(target, &replica{}); !loaded && service != "" && w.fleet != nil {
			w.fleet.Known(service, target, now)
		}
		w.start()
	}
	r := v.(*replica)
	r.lastPinned.Store(now.UnixNano())
	r.pins.Add(1)
	return r.down.Load(), r.downAt.Load()
}

// IsDown tells whether the probes find target down (false for a replica
// they do not watch).
func (w *Watch) IsDown(target string) bool {
	v, ok := w.replicas.Load(target)
	return ok && v.(*replica).down.Load()
}

// RecentPins is target's recent pinned requests, as a load measure.
func (w *Watch) RecentPins(target string) float64 {
	if v, ok := w.replicas.Load(target); ok {
		return float64(v.(*replica).pins.Load())
	}
	return 0
}

func (w *Watch) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running {
		w.running = true
		go w.loop()
	}
}

func (w *Watch) loop() {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for now := range t.C {
		if !w.probeAll(now) {
			w.mu.Lock()
			// A pin may have added a replica since the probe: look again
			// under the lock start() takes.
			if w.empty() {
				w.running = false
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
		}
	}
}

// probeAll probes every replica pinned within the idle window, in parallel,
// and forgets the others; it reports whether any replica is left.
func (w *Watch) probeAll(now time.Time) bool {
	var wg sync.WaitGroup
	left := false
	w.replicas.Range(func(k, v any) bool {
		r := v.(*replica)
		if now.Sub(time.Unix(0, r.lastPinned.Load())) > w.idle {
			w.replicas.Delete(k)
			return true
		}
		left = true
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			w.probe(addr, r)
		}(k.(string))
		return true
	})
	wg.Wait()
	return left
}

func (w *Watch) probe(addr string, r *replica) {
	ctx, cancel := context.WithTimeout(context.Background(), w.interval)
	defer cancel()
	r.pins.Store(r.pins.Load() / 2)
	if err := w.dial(ctx, addr); err != nil {
		r.failures++
		if errors.Is(err, syscall.ECONNREFUSED) {
			// Nothing listens: whatever answers there later has forgotten
			// the sessions (a timeout may be a network blip).
			r.failures = downAfter
			r.downAt.Store(time.Now().UnixNano())
		}
		if r.failures >= downAfter && !r.down.Swap(true) && w.changed != nil {
			w.changed(addr, true, err)
		}
		return
	}
	r.failures = 0
	if r.down.Swap(false) && w.changed != nil {
		w.changed(addr, false, nil)
	}
}

func (w *Watch) empty() bool {
	empty := true
	w.replicas.Range(func(any, any) bool { empty = false; return false })
	return empty
}

// SetProbed records target as the probes would leave it: down or up, and
// last refused at refusedAt (zero: never); it counts as pinned now. It
// serves the tests of callers that need a replica in such a state without
// waiting for probes.
func (w *Watch) SetProbed(target string, down bool, refusedAt time.Time) {
	r := &replica{}
	r.down.Store(down)
	if !refusedAt.IsZero() {
		r.downAt.Store(refusedAt.UnixNano())
	}
	r.lastPinned.Store(time.Now().UnixNano())
	w.replicas.Store(target, r)
}
