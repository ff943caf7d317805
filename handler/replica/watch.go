package replica

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Watch keeps one idle TCP connection open to every replica sessions are
// pinned to (a watch connection: nothing is ever sent on it), so that a
// replica that dies or restarts is noticed before its sessions' next
// request reaches it:
//
//   - A process that exits, however it exits, closes its sockets: the
//     watch connection ends within microseconds, and a dial at once is
//     refused (nothing listens yet). The replica is then down, from that
//     moment (DownAt): even if a new process listens on the address a few
//     milliseconds later, it has forgotten every session created before,
//     and they are recovered on their next request.
//   - A server that closes idle connections (Go servers after their
//     ReadHeaderTimeout, Node's after its headers timeout) ends the watch
//     connection too, but the dial at once is accepted and the new
//     connection stays open: nothing else happens.
//   - A host that vanishes without closing anything is found by TCP
//     keepalive on the watch connection, then by dials that time out: two
//     failures in a row make it down.
//
// Kong's own 502 skips the Response phase, and reading every request's
// outcome in Log would cost a PDK call per request; a watch connection
// costs no PDK call and one socket per replica and process.
//
// Not seen: a replica behind a proxy that keeps the TCP connection (the
// watch sees the proxy), and a listening socket handed from one process to
// the next (systemd socket activation): there the replica's own 404 to a
// buffered request is what triggers recovery.
type Watch struct {
	interval time.Duration // keepalive probes, dial timeout, dials of a down replica
	idle     time.Duration // a replica unused this long is no longer watched
	dial     func(ctx context.Context, addr string, keepAlive time.Duration) (net.Conn, error)
	fleet    *Fleet
	changed  func(target string, down bool, err error)
	lastGone func(target string) time.Time

	replicas sync.Map // "ip:port" -> *replica
	closed   chan struct{}
	close    sync.Once
}

type replica struct {
	lastUsed atomic.Int64 // unix nanoseconds: pinned, or known to hold sessions
	down     atomic.Bool
	// downAt is when the replica was last found gone (unix nanoseconds): a
	// process listening there later has forgotten every session created
	// before.
	downAt atomic.Int64
	pins   atomic.Int64 // pinned requests, halved every interval: recent load
	failed atomic.Int64 // consecutive failures other than a refusal
	// newsRead is closed once the other nodes' news of the replica (when it
	// was last found gone) is in downAt: a request pinned before that could
	// reach a process that restarted since its session was created.
	newsRead chan struct{}
}

const (
	// downAfter failures in a row (timeouts) make a replica down: one lost
	// SYN must not cost every session of a replica. A refusal counts at once.
	downAfter = 2
	// settle bounds how long a watch connection that ended is checked
	// against a process that is exiting: a dial it accepts from its backlog
	// is reset once its listener closes.
	settle = 20 * time.Millisecond
	// healthy is how long a new connection must stay open to count.
	healthy = 5 * time.Millisecond
	// fastRedial is how often a replica found gone is dialled at first, so
	// that a restarted one is seen up again quickly; after fastFor, every
	// interval.
	fastRedial = 50 * time.Millisecond
	fastFor    = 2 * time.Second
)

// WatchOptions configure NewWatch.
type WatchOptions struct {
	// Interval is the dial timeout, the TCP keepalive interval of watch
	// connections, and how often a down replica is dialled once it has been
	// down for a while.
	Interval time.Duration
	// Idle is how long a replica neither pinned nor tracked stays watched
	// (at least 30 s and 10 intervals): as long as its sessions may still
	// send requests.
	Idle time.Duration
	// Fleet, when set, gets every replica first pinned for a service.
	Fleet *Fleet
	// Changed, when set, is told when a replica is found down (err says
	// why) and when it is reachable again (down false).
	Changed func(target string, down bool, err error)
	// LastGone, when set, tells when another node last found target gone
	// (zero: never); it is asked once, when the process starts watching
	// target, so that a restart this process did not see still counts.
	LastGone func(target string) time.Time
}

// NewWatch returns a watch; it watches replicas once they are pinned or
// tracked.
func NewWatch(opts WatchOptions) *Watch {
	return &Watch{
		interval: opts.Interval,
		idle:     max(30*time.Second, 10*opts.Interval, opts.Idle),
		dial:     dialTCP,
		fleet:    opts.Fleet,
		changed:  opts.Changed,
		lastGone: opts.LastGone,
		closed:   make(chan struct{}),
	}
}

// Close stops watching every replica (the process's watches live as long
// as the process; tests close theirs).
func (w *Watch) Close() { w.close.Do(func() { close(w.closed) }) }

func (w *Watch) isClosed() bool {
	select {
	case <-w.closed:
		return true
	default:
		return false
	}
}

func dialTCP(ctx context.Context, addr string, keepAlive time.Duration) (net.Conn, error) {
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepAlive, Interval: keepAlive, Count: 2}}
	return d.DialContext(ctx, "tcp", addr)
}

// Pinned records that a request of a session of the Kong service service
// is being pinned to target, and tells whether target is known to be down,
// and when it was last found gone (unix nanoseconds, 0 never). A replica
// first watched here joins the fleet recoveries choose from.
func (w *Watch) Pinned(service, target string, now time.Time) (down bool, downAt int64) {
	r, added := w.use(target, now, true)
	if added && service != "" && w.fleet != nil {
		w.fleet.Known(service, target, now)
	}
	r.pins.Add(1)
	return r.down.Load(), r.downAt.Load()
}

// Track watches target, a replica that sessions are pinned to (learned on
// this node or another, or restored), before any request is pinned to it
// here: the request of a session created through another node may come
// through this one after its replica restarted.
func (w *Watch) Track(target string, now time.Time) {
	if target != "" {
		w.use(target, now, false)
	}
}

// use marks target used at now, and starts watching it if it is new; the
// news of other nodes is asked for then (at once when wait says so: a
// request is about to be pinned to it).
func (w *Watch) use(target string, now time.Time, wait bool) (r *replica, added bool) {
	v, ok := w.replicas.Load(target)
	if !ok {
		fresh := &replica{newsRead: make(chan struct{})}
		fresh.lastUsed.Store(now.UnixNano())
		if v, ok = w.replicas.LoadOrStore(target, fresh); !ok {
			go w.run(target, fresh)
			readNews := func() {
				if w.lastGone != nil {
					fresh.gone(w.lastGone(target))
				}
				close(fresh.newsRead)
			}
			if wait {
				readNews()
			} else {
				go readNews()
			}
			return fresh, true
		}
	}
	r = v.(*replica)
	if wait {
		// Another request, or Track, started watching it: its news may
		// still be on the way (the store call is bounded by its timeout).
		<-r.newsRead
	}
	if now.UnixNano() > r.lastUsed.Load() {
		r.lastUsed.Store(now.UnixNano())
	}
	return r, false
}

// IsDown tells whether target is down (false for a replica not watched).
func (w *Watch) IsDown(target string) bool {
	v, ok := w.replicas.Load(target)
	return ok && v.(*replica).down.Load()
}

// DownAt is when target was last found gone (zero: never, or not watched).
func (w *Watch) DownAt(target string) time.Time {
	if v, ok := w.replicas.Load(target); ok {
		if at := v.(*replica).downAt.Load(); at > 0 {
			return time.Unix(0, at)
		}
	}
	return time.Time{}
}

// Gone records that another node found target gone at at (the shared
// store's news): its sessions created before are recovered here too.
func (w *Watch) Gone(target string, at time.Time) {
	r, _ := w.use(target, time.Now(), false)
	r.gone(at)
}

// gone moves DownAt forward to at.
func (r *replica) gone(at time.Time) {
	if at.IsZero() {
		return
	}
	for {
		old := r.downAt.Load()
		if at.UnixNano() <= old || r.downAt.CompareAndSwap(old, at.UnixNano()) {
			return
		}
	}
}

// Down counts the watched replicas that are down.
func (w *Watch) Down() int {
	n := 0
	w.replicas.Range(func(_, v any) bool {
		if v.(*replica).down.Load() {
			n++
		}
		return true
	})
	return n
}

// RecentPins is target's recent pinned requests, as a load measure.
func (w *Watch) RecentPins(target string) float64 {
	if v, ok := w.replicas.Load(target); ok {
		return float64(v.(*replica).pins.Load())
	}
	return 0
}

// run watches one replica until it has been unused for the idle window.
func (w *Watch) run(addr string, r *replica) {
	defer w.replicas.CompareAndDelete(addr, r)
	var downSince time.Time
	for !w.idleNow(r) {
		conn, err := w.reach(addr)
		if err != nil {
			wait := w.interval
			if errors.Is(err, syscall.ECONNREFUSED) || isTimeout(err) {
				if downSince.IsZero() {
					downSince = time.Now()
				}
				w.failed(addr, r, err)
				if errors.Is(err, syscall.ECONNREFUSED) && time.Since(downSince) < fastFor {
					wait = min(wait, fastRedial)
				}
			}
			select {
			case <-time.After(wait):
			case <-w.closed:
			}
			continue
		}
		downSince = time.Time{}
		w.up(addr, r)
		err = w.hold(conn, r)
		_ = conn.Close()
		if err == nil {
			return // idle
		}
		if isTimeout(err) { // keepalive: the host stopped answering
			w.failed(addr, r, err)
		}
		// Otherwise the process exited, or the server closed an idle
		// connection: the loop dials at once, and a refusal tells.
	}
}

// reach dials addr until a connection stays open, for at most settle while
// connections end at once (a process that is exiting may still accept
// from its backlog, then reset). It returns the connection, or the last
// error: a refusal (nothing listens), a timeout, or an end.
func (w *Watch) reach(addr string) (net.Conn, error) {
	deadline := time.Now().Add(settle)
	for {
		c, err := w.connect(addr)
		if err == nil || errors.Is(err, syscall.ECONNREFUSED) || isTimeout(err) || time.Now().After(deadline) {
			return c, err
		}
	}
}

// connect dials addr and checks that the connection stays open.
func (w *Watch) connect(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.interval)
	defer cancel()
	c, err := w.dial(ctx, addr, w.interval)
	if err != nil {
		return nil, err
	}
	if err := stays(c); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// stays reports nil when c neither ends nor is reset within healthy.
func stays(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(healthy))
	var b [64]byte
	_, err := c.Read(b[:])
	if isTimeout(err) {
		_ = c.SetReadDeadline(time.Time{})
		return nil
	}
	if err == nil {
		return nil // the server said something: it is alive
	}
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF // an end, not the timeout of a read
	}
	return err
}

// hold reads from conn until it ends (returning why), or until r has been
// unused for the idle window (nil). Bytes the server sends are dropped.
func (w *Watch) hold(conn net.Conn, r *replica) error {
	var b [512]byte
	for {
		_ = conn.SetReadDeadline(time.Now().Add(w.interval))
		_, err := conn.Read(b[:])
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return err
		}
		r.pins.Store(r.pins.Load() / 2)
		if w.idleNow(r) {
			return nil
		}
	}
}

func (w *Watch) idleNow(r *replica) bool {
	return w.isClosed() || time.Since(time.Unix(0, r.lastUsed.Load())) > w.idle
}

// failed counts a failure; a refusal makes the replica down at once and
// moves DownAt.
func (w *Watch) failed(addr string, r *replica, err error) {
	if w.isClosed() {
		return
	}
	n := r.failed.Add(1)
	if errors.Is(err, syscall.ECONNREFUSED) {
		r.downAt.Store(time.Now().UnixNano())
		n = downAfter
	}
	if n >= downAfter && !r.down.Swap(true) && w.changed != nil {
		w.changed(addr, true, err)
	}
}

func (w *Watch) up(addr string, r *replica) {
	r.failed.Store(0)
	if r.down.Swap(false) && w.changed != nil {
		w.changed(addr, false, nil)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.ETIMEDOUT))
}

// SetProbed records target as the watch would leave it: down or up, and
// last found gone at refusedAt (zero: never); it counts as pinned now. It
// serves the tests of callers that need a replica in such a state without
// waiting for the watch; nothing dials it.
func (w *Watch) SetProbed(target string, down bool, refusedAt time.Time) {
	r := &replica{newsRead: make(chan struct{})}
	close(r.newsRead)
	r.down.Store(down)
	if !refusedAt.IsZero() {
		r.downAt.Store(refusedAt.UnixNano())
	}
	r.lastUsed.Store(time.Now().UnixNano())
	w.replicas.Store(target, r)
}
