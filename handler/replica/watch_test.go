package replica

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestReplicaWatch: a real loopback listener is up; once closed, two failed
// probes make it down; listening again brings it back.
func TestReplicaWatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go acceptAll(ln)
	w := NewWatch(WatchOptions{Interval: 20 * time.Millisecond})

	if pinnedDown(w, addr) {
		t.Fatal("new replica reported down")
	}
	time.Sleep(100 * time.Millisecond)
	if pinnedDown(w, addr) {
		t.Fatal("listening replica reported down")
	}

	ln.Close()
	if !waitFor(t, 2*time.Second, func() bool { return pinnedDown(w, addr) }) {
		t.Fatal("closed replica never reported down")
	}

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	defer ln2.Close()
	go acceptAll(ln2)
	if !waitFor(t, 2*time.Second, func() bool { return !pinnedDown(w, addr) }) {
		t.Fatal("replica listening again still reported down")
	}
}

// TestReplicaWatchStopsWhenIdle: the probe loop ends by itself once no
// replica was pinned within the idle window, and starts again on a pin.
func TestReplicaWatchStopsWhenIdle(t *testing.T) {
	w := NewWatch(WatchOptions{Interval: 10 * time.Millisecond})
	w.idle = 50 * time.Millisecond
	w.Pinned("", "127.0.0.1:9", time.Now())
	running := func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.running }
	if !running() {
		t.Fatal("probe loop not started by a pin")
	}
	if !waitFor(t, 2*time.Second, func() bool { return !running() }) {
		t.Fatal("probe loop still running with nothing pinned")
	}
	w.Pinned("", "127.0.0.1:9", time.Now())
	if !running() {
		t.Fatal("probe loop not restarted by a new pin")
	}
}

func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// waitFor polls cond every 5 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool) bool {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestReplicaDownAfterTwoFailures: a failed probe that is not a refusal
// (a timeout, a lost SYN) makes a replica down only on the second in a row,
// and one success in between starts the count again.
func TestReplicaDownAfterTwoFailures(t *testing.T) {
	w := NewWatch(WatchOptions{Interval: time.Hour}) // probes driven by hand below
	r := &replica{}
	fail := errors.New("i/o timeout")
	var next error
	w.dial = func(context.Context, string) error { return next }

	next = fail
	w.probe("10.0.0.1:80", r)
	if r.down.Load() {
		t.Fatal("down after one timeout")
	}
	next = nil
	w.probe("10.0.0.1:80", r)
	next = fail
	w.probe("10.0.0.1:80", r)
	if r.down.Load() {
		t.Fatal("down after timeouts that were not in a row")
	}
	w.probe("10.0.0.1:80", r)
	if !r.down.Load() {
		t.Fatal("not down after two timeouts in a row")
	}
	next = syscall.ECONNREFUSED
	r2 := &replica{}
	w.probe("10.0.0.2:80", r2)
	if !r2.down.Load() {
		t.Fatal("not down after a refused connection")
	}
	next = nil
	w.probe("10.0.0.1:80", r)
	if r.down.Load() {
		t.Fatal("still down after a successful probe")
	}
}

func pinnedDown(w *Watch, addr string) bool {
	down, _ := w.Pinned("", addr, time.Now())
	return down
}
