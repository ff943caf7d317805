package logging

import (
	"bytes"
	"log"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// withClock gives the queue a settable clock for the test and drains it.
func withClock(t *testing.T) *time.Time {
	t.Helper()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q.mu.Lock()
	q.now = func() time.Time { return now }
	clear(q.kinds)
	q.mu.Unlock()
	Take()
	t.Cleanup(func() {
		q.mu.Lock()
		q.now = nil
		q.mu.Unlock()
		Take()
	})
	return &now
}

func TestEventsRateLimitedPerKind(t *testing.T) {
	now := withClock(t)
	var out bytes.Buffer
	l := slog.New(newHandler(&out, nil)).With("plugin", "mcp-relay")
	for range 5 {
		l.Warn("session store failed", "err", "dial tcp: connection refused")
	}
	l.Error("reading request headers", "err", "closed")
	l.Info("request for a lost session") // below notice: stderr only
	ev := Take()
	if len(ev) != 2 || ev[0].Level != slog.LevelWarn || ev[1].Level != slog.LevelError {
		t.Fatalf("events: %+v", ev)
	}
	if want := `msg="session store failed" plugin=mcp-relay err="dial tcp: connection refused"`; ev[0].Line != want {
		t.Errorf("line %q, want %q", ev[0].Line, want)
	}
	if n := strings.Count(out.String(), "session store failed"); n != 4 {
		t.Errorf("stderr has %d store lines, want the 4 held back (the first is Kong's):\n%s", n, out.String())
	}
	if Pending() {
		t.Error("Pending after Take")
	}

	*now = now.Add(Window - time.Second)
	l.Warn("session store failed", "err", "again")
	if ev := Take(); len(ev) != 0 {
		t.Fatalf("within the window: %+v", ev)
	}
	*now = now.Add(2 * time.Second)
	l.Warn("session store failed", "err", "again")
	ev = Take()
	if len(ev) != 1 || !strings.HasSuffix(ev[0].Line, "suppressed=5") {
		t.Fatalf("after the window: %+v", ev)
	}
}

func TestKindAttributeGroupsEvents(t *testing.T) {
	withClock(t)
	l := slog.New(newHandler(&bytes.Buffer{}, nil))
	l.Error("invalid configuration", "kind", "config a")
	l.Error("invalid configuration", "kind", "config b")
	l.Error("invalid configuration", "kind", "config a")
	if ev := Take(); len(ev) != 2 {
		t.Fatalf("want one event per kind, got %+v", ev)
	}
	l.Log(t.Context(), LevelNotice, "replica reachable again")
	if ev := Take(); len(ev) != 1 || ev[0].Level != LevelNotice {
		t.Fatalf("notice: %+v", ev)
	}
}

func TestQueueBounded(t *testing.T) {
	withClock(t)
	l := slog.New(newHandler(&bytes.Buffer{}, nil))
	for i := range maxPending + 10 {
		l.Warn("distinct", "kind", strings.Repeat("k", i+1))
	}
	ev := Take()
	if len(ev) != maxPending+1 || !strings.Contains(ev[maxPending].Line, "dropped=10") {
		t.Fatalf("got %d events, last %+v", len(ev), ev[len(ev)-1])
	}
}

// go-pdk logs through the standard log package; after kong.response.exit
// it logs its failed write on the closed socket, which says nothing wrong.
func TestStandardLogRoutedWithoutBenignLine(t *testing.T) {
	withClock(t)
	var out bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(newHandler(&out, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	log.Print("write unix /usr/local/kong/mcp-relay.socket->@: use of closed network connection")
	log.Printf("closed instance %d", 3)
	if s := out.String(); strings.Contains(s, "closed network connection") || !strings.Contains(s, `level=INFO msg="closed instance 3"`) {
		t.Errorf("stderr:\n%s", s)
	}
	if Pending() {
		t.Error("an info line was queued for Kong's log")
	}
}

// A queued event's line reaches stderr only when no request took it to
// Kong's log in time, when its PDK write failed, or at Flush; never twice.
func TestQueuedEventEchoedToStderrOnlyWhenNotTaken(t *testing.T) {
	withClock(t)
	echoDelay = 50 * time.Millisecond
	t.Cleanup(func() { echoDelay = EchoDelay })
	var out syncBuffer
	l := slog.New(newHandler(&out, nil))
	count := func(msg string) int { return strings.Count(out.String(), msg) }

	l.Warn("taken in time")
	Take()
	l.Warn("left waiting")
	time.Sleep(4 * echoDelay)
	if n := count("taken in time"); n != 0 {
		t.Errorf("an event Kong's log took is on stderr too (%d)", n)
	}
	if n := count("left waiting"); n != 1 {
		t.Errorf("an event no request took: %d stderr lines, want 1", n)
	}
	if ev := Take(); len(ev) != 1 || !strings.Contains(ev[0].Line, "left waiting") {
		t.Fatalf("the waiting event must still reach Kong's log with the next request: %+v", ev)
	}

	l.Error("write failed")
	ev := Take()
	Requeue(ev)
	if n := count("write failed"); n != 1 {
		t.Errorf("a requeued event: %d stderr lines, want 1 at once", n)
	}
	Take()
	time.Sleep(4 * echoDelay)
	if n := count("write failed"); n != 1 {
		t.Errorf("a requeued event: %d stderr lines after the delay, want 1", n)
	}

	l.Error("stopping with this one queued")
	Flush()
	Flush()
	if n := count("stopping with this one queued"); n != 1 {
		t.Errorf("Flush: %d stderr lines, want 1", n)
	}
}

// syncBuffer is a bytes.Buffer safe for the echo timers' writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
