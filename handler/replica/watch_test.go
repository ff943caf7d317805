package replica

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server is a loopback listener that keeps every connection it accepts
// open, as an HTTP server keeps an idle one; exit closes everything as a
// process that exits does.
type server struct {
	t        *testing.T
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted atomic.Int64
}

func listenAt(t *testing.T, addr string) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.accepted.Add(1)
		}
	}()
	t.Cleanup(s.exit)
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

// exit closes the listener, then every connection.
func (s *server) exit() {
	_ = s.ln.Close()
	s.closeConns()
}

// closeConns closes the open connections only (an idle close).
func (s *server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func watching(w *Watch, s *server) bool { return s.accepted.Load() > 0 && !w.IsDown(s.addr()) }

// TestWatchSeesRestartInPlace: a replica whose process exits and is
// replaced on the same address 10 ms later (ten times faster than a
// service manager restarts one) is found gone from the moment it exited:
// DownAt is after the exit and before the new process listened; once the
// new process listens, the replica is up again and keeps that DownAt.
func TestWatchSeesRestartInPlace(t *testing.T) {
	var changes []string
	var mu sync.Mutex
	w := NewWatch(WatchOptions{Interval: 100 * time.Millisecond, Changed: func(target string, down bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, map[bool]string{true: "down", false: "up"}[down])
	}})
	s := listenAt(t, "127.0.0.1:0")
	addr := s.addr()
	if down, at := w.Pinned("svc", addr, time.Now()); down || at != 0 {
		t.Fatalf("new replica: down %v, downAt %d", down, at)
	}
	if !waitFor(2*time.Second, func() bool { return watching(w, s) }) {
		t.Fatal("no watch connection")
	}

	exited := time.Now()
	s.exit()
	time.Sleep(10 * time.Millisecond)
	restarted := time.Now()
	s2 := listenAt(t, addr)

	at := w.DownAt(addr)
	if at.Before(exited) || !at.Before(restarted) {
		t.Fatalf("DownAt %v: want between the exit (%v) and the restart (%v)", at, exited, restarted)
	}
	if !waitFor(2*time.Second, func() bool { return watching(w, s2) }) {
		t.Fatal("not watching the new process")
	}
	if _, downAt := w.Pinned("svc", addr, time.Now()); downAt != at.UnixNano() {
		t.Errorf("DownAt moved to %v once the replica was back", time.Unix(0, downAt))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[0] != "down" || changes[1] != "up" {
		t.Errorf("changes %v, want down then up", changes)
	}
}

// TestWatchIdleCloseIsNotDown: a server that closes the idle watch
// connection while it still listens is not down: the watch connects again.
func TestWatchIdleCloseIsNotDown(t *testing.T) {
	w := NewWatch(WatchOptions{Interval: 100 * time.Millisecond})
	s := listenAt(t, "127.0.0.1:0")
	w.Track(s.addr(), time.Now())
	for i := range 3 {
		if !waitFor(2*time.Second, func() bool { return s.accepted.Load() > int64(i) }) {
			t.Fatalf("close %d: no new watch connection", i)
		}
		s.closeConns()
	}
	if !waitFor(2*time.Second, func() bool { return s.accepted.Load() >= 4 }) {
		t.Fatal("no watch connection after the last idle close")
	}
	if w.IsDown(s.addr()) || !w.DownAt(s.addr()).IsZero() {
		t.Errorf("idle closes made the replica down (DownAt %v)", w.DownAt(s.addr()))
	}
}

// TestWatchTimeouts: dials that time out (a host that stopped answering)
// make a replica down on the second in a row, without moving DownAt (a
// network blip is not a restart); a dial that succeeds brings it back.
func TestWatchTimeouts(t *testing.T) {
	w := NewWatch(WatchOptions{Interval: 20 * time.Millisecond})
	var fail atomic.Bool
	var dials atomic.Int64
	w.dial = func(ctx context.Context, addr string, _ time.Duration) (net.Conn, error) {
		dials.Add(1)
		if fail.Load() {
			<-ctx.Done()
			return nil, os.ErrDeadlineExceeded
		}
		c1, c2 := net.Pipe()
		go func() { <-ctx.Done(); time.Sleep(time.Hour); _ = c2.Close() }()
		return c1, nil
	}
	fail.Store(true)
	w.Track("10.0.0.1:80", time.Now())
	if !waitFor(time.Second, func() bool { return dials.Load() >= 1 }) {
		t.Fatal("no dial")
	}
	if w.IsDown("10.0.0.1:80") && dials.Load() < 2 {
		t.Fatal("down after one timeout")
	}
	if !waitFor(2*time.Second, func() bool { return w.IsDown("10.0.0.1:80") }) {
		t.Fatal("not down after timeouts")
	}
	if !w.DownAt("10.0.0.1:80").IsZero() {
		t.Error("timeouts moved DownAt")
	}
	fail.Store(false)
	if !waitFor(2*time.Second, func() bool { return !w.IsDown("10.0.0.1:80") }) {
		t.Fatal("still down after a dial succeeded")
	}
}

// TestWatchStopsWhenIdle: a replica unused for the idle window is no
// longer watched (its connection closed, its state forgotten); a pin
// watches it again.
func TestWatchStopsWhenIdle(t *testing.T) {
	w := NewWatch(WatchOptions{Interval: 10 * time.Millisecond})
	w.idle = 100 * time.Millisecond
	s := listenAt(t, "127.0.0.1:0")
	w.Pinned("", s.addr(), time.Now())
	if !waitFor(2*time.Second, func() bool { return s.accepted.Load() == 1 }) {
		t.Fatal("not watched")
	}
	known := func() bool { _, ok := w.replicas.Load(s.addr()); return ok }
	if !waitFor(2*time.Second, func() bool { return !known() }) {
		t.Fatal("still watched after the idle window")
	}
	w.Pinned("", s.addr(), time.Now())
	if !waitFor(2*time.Second, func() bool { return s.accepted.Load() == 2 }) {
		t.Fatal("not watched again after a pin")
	}
}

// TestWatchGone: news that another node found a replica gone moves DownAt
// forward only.
func TestWatchGone(t *testing.T) {
	w := NewWatch(WatchOptions{Interval: time.Hour})
	w.SetProbed("10.0.0.2:80", false, time.Time{})
	later := time.Now()
	w.Gone("10.0.0.2:80", later)
	w.Gone("10.0.0.2:80", later.Add(-time.Minute))
	if got := w.DownAt("10.0.0.2:80"); !got.Equal(later) {
		t.Errorf("DownAt %v, want %v", got, later)
	}
}

func TestIsTimeout(t *testing.T) {
	if !isTimeout(os.ErrDeadlineExceeded) || isTimeout(errors.New("x")) || isTimeout(nil) {
		t.Error("isTimeout")
	}
}

// TestWatchAsksLastGone: a replica first pinned here takes what other
// nodes found (LastGone) before the request is pinned: a restart this
// process did not watch still makes older sessions recover.
func TestWatchAsksLastGone(t *testing.T) {
	elsewhere := time.Now().Add(-time.Second)
	var asked atomic.Int64
	w := NewWatch(WatchOptions{Interval: time.Hour, LastGone: func(target string) time.Time {
		asked.Add(1)
		if target == "10.0.0.3:80" {
			return elsewhere
		}
		return time.Time{}
	}})
	if _, at := w.Pinned("svc", "10.0.0.3:80", time.Now()); at != elsewhere.UnixNano() {
		t.Errorf("downAt %v, want what another node found, %v", time.Unix(0, at), elsewhere)
	}
	w.Pinned("svc", "10.0.0.3:80", time.Now())
	if _, at := w.Pinned("svc", "10.0.0.4:80", time.Now()); at != 0 {
		t.Errorf("downAt %v for a replica never gone", time.Unix(0, at))
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("LastGone asked %d times, want once per replica", n)
	}
}

// TestPinnedWaitsForNewsAnotherCallerAsked: when Track (a session learned
// through another node) or another request started watching a replica, a
// request pinned meanwhile still waits for the other nodes' news before it
// is told the replica's state: a process started after a replica restarted
// in place (a Kong reload) must not pin an older session to the new process.
func TestPinnedWaitsForNewsAnotherCallerAsked(t *testing.T) {
	elsewhere := time.Now().Add(-time.Second)
	release := make(chan struct{})
	w := NewWatch(WatchOptions{Interval: time.Hour, LastGone: func(string) time.Time {
		<-release // a slow store
		return elsewhere
	}})
	defer w.Close()
	for _, first := range []struct {
		name  string
		start func(target string)
	}{
		{"Track", func(target string) { w.Track(target, time.Now()) }},
		{"another request", func(target string) { go w.Pinned("svc", target, time.Now()) }},
	} {
		t.Run(first.name, func(t *testing.T) {
			target := "10.0.0.9:" + map[string]string{"Track": "80", "another request": "81"}[first.name]
			first.start(target)
			for _, ok := w.replicas.Load(target); !ok; _, ok = w.replicas.Load(target) {
				time.Sleep(time.Millisecond) // until the first caller stored it
			}
			got := make(chan int64, 1)
			go func() {
				_, at := w.Pinned("svc", target, time.Now())
				got <- at
			}()
			select {
			case at := <-got:
				t.Fatalf("pinned before the news arrived (downAt %v)", time.Unix(0, at))
			case <-time.After(50 * time.Millisecond):
			}
			release <- struct{}{}
			select {
			case at := <-got:
				if at != elsewhere.UnixNano() {
					t.Errorf("downAt %v, want what another node found, %v", time.Unix(0, at), elsewhere)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the pinned request never went on after the news")
			}
		})
	}
}
