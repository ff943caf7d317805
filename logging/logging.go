// Package logging is the plugin process's one logger, and the queue of the
// important events that must also reach Kong's error log at their level.
//
// Kong copies a Go plugin's stdout and stderr into its error log at info
// (kong/runloop/plugin_servers/process.lua grab_logs), which Kong's default
// log_level (notice) hides. So every record at LevelNotice or above is
// queued, rate-limited per kind, and the handler writes the queue through
// kong.log.err/warn/notice (PDK) with the next request, where the plugin
// already is. One event is one line in Kong's log: a queued record is
// echoed to stderr only when no request has taken it within EchoDelay (a
// node without traffic, where stderr at info is all there is), when its
// PDK write failed, or when the process stops; the records rate limiting
// holds back, and those past the queue's bound, go to stderr at once.
package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LevelNotice is Kong's notice level (between info and warn): events a
// default Kong shows that are not failures, such as a store coming back.
const LevelNotice = slog.Level(2)

// KindKey names the attribute that groups events for rate limiting; when a
// record has none, its message is its kind.
const KindKey = "kind"

// Window is how often one kind of event may reach Kong's log: at most one
// per kind per Window per process; the next one says how many were held back.
const Window = 10 * time.Second

// maxPending bounds the queue: events past it are counted, not kept.
const maxPending = 64

// EchoDelay is how long a queued event may wait for a request to take it
// to Kong's log before its line is written to stderr instead.
const EchoDelay = 2 * time.Second

var echoDelay = EchoDelay // tests shorten it

// Event is one line for Kong's log.
type Event struct {
	Level slog.Level
	Line  string // message and attributes, in the text handler's form
	echo  *echo  // the stderr line, written unless Kong's log gets the event
}

// echo is a queued event's stderr line. taken is set when a request takes
// the event for Kong's log; the line is written at most once.
type echo struct {
	w     io.Writer
	text  []byte
	taken atomic.Bool
	once  sync.Once
}

func (e *echo) write() {
	if e == nil {
		return
	}
	e.once.Do(func() {
		echoMu.Lock()
		defer echoMu.Unlock()
		_, _ = e.w.Write(e.text)
	})
}

// echoMu keeps deferred lines whole when several are written at once.
var echoMu sync.Mutex

// benign are lines that go-pdk prints through the standard log package and
// that say nothing wrong: after kong.response.exit Kong closes the event's
// socket, and go-pdk's servePb logs its failed write of the reply.
var benign = []string{"use of closed network connection"}

// Logger is the plugin process's logger. Its text handler quotes values,
// so header values cannot forge lines.
var Logger = slog.New(newHandler(os.Stderr, nil))

var q = &queue{kinds: map[string]*kindState{}}

type kindState struct {
	last       time.Time
	suppressed int
}

type queue struct {
	mu      sync.Mutex
	kinds   map[string]*kindState
	events  []Event
	dropped int
	pending atomic.Bool
	now     func() time.Time // tests
}

// Install makes Logger the default slog logger, which also routes the
// standard log package (go-pdk's output) through it at info level, without
// go-pdk's benign lines.
func Install() { slog.SetDefault(Logger) }

// Pending says whether events wait for Kong's log: one atomic load, so the
// Log phase can check it on every request.
func Pending() bool { return q.pending.Load() }

// Take returns the waiting events and empties the queue. Concurrent callers
// each get distinct events.
func Take() []Event {
	if !q.pending.Load() {
		return nil
	}
	q.mu.Lock()
	ev := q.events
	for _, e := range ev {
		if e.echo != nil {
			e.echo.taken.Store(true)
		}
	}
	if q.dropped > 0 {
		ev = append(ev, Event{Level: slog.LevelWarn,
			Line: fmt.Sprintf("msg=%q dropped=%d", "mcp-relay: events dropped (queue full)", q.dropped)})
	}
	q.events, q.dropped = nil, 0
	q.pending.Store(false)
	q.mu.Unlock()
	return ev
}

// Requeue puts events back (their PDK write failed), up to the bound; their
// lines go to stderr now, since Kong's log may not get them soon.
func Requeue(ev []Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range ev {
		e.echo.write()
		q.push(e)
	}
}

// Flush writes to stderr the lines of the events still waiting for Kong's
// log: the process is about to stop, and no request will take them.
func Flush() {
	q.mu.Lock()
	ev := slices.Clone(q.events)
	q.mu.Unlock()
	for _, e := range ev {
		e.echo.write()
	}
}

// push queues an event; past the bound it is counted and its line goes to
// stderr at once.
func (q *queue) push(e Event) {
	if len(q.events) >= maxPending {
		q.dropped++
		e.echo.write()
	} else {
		q.events = append(q.events, e)
	}
	q.pending.Store(true)
}

// offer queues a record's line unless its kind already reached Kong's log
// within Window; a line held back goes to stderr at once.
func (q *queue) offer(level slog.Level, kind, line string, e *echo) {
	now := time.Now()
	if q.now != nil {
		now = q.now()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.kinds[kind]
	if st == nil {
		if len(q.kinds) > 1024 { // kinds are message texts: bound the map anyway
			clear(q.kinds)
		}
		st = &kindState{}
		q.kinds[kind] = st
	}
	if !st.last.IsZero() && now.Sub(st.last) < Window {
		st.suppressed++
		e.write()
		return
	}
	if st.suppressed > 0 {
		line += fmt.Sprintf(" suppressed=%d", st.suppressed)
	}
	st.last, st.suppressed = now, 0
	q.push(Event{Level: level, Line: line, echo: e})
	time.AfterFunc(echoDelay, func() {
		if !e.taken.Load() {
			e.write()
		}
	})
}

// handler writes text lines to w, and queues those at LevelNotice and
// above, whose stderr lines wait (see echo).
type handler struct {
	w     io.Writer
	opts  *slog.HandlerOptions
	attrs []slog.Attr  // for the queued line and the deferred one (groups are not used)
	text  slog.Handler // writes to w
}

func newHandler(w io.Writer, opts *slog.HandlerOptions) *handler {
	return &handler{w: w, opts: opts, text: slog.NewTextHandler(w, opts)}
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.text.Enabled(ctx, l) }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	c.text = h.text.WithAttrs(as)
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	c := *h
	c.text = h.text.WithGroup(name)
	return &c
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < LevelNotice {
		for _, b := range benign {
			if strings.Contains(r.Message, b) {
				return nil
			}
		}
	}
	if r.Level < LevelNotice {
		return h.text.Handle(ctx, r)
	}
	var stderrLine bytes.Buffer
	if err := slog.NewTextHandler(&stderrLine, h.opts).WithAttrs(h.attrs).Handle(ctx, r); err != nil {
		return err
	}
	kind := r.Message
	var sb strings.Builder
	line := slog.New(slog.NewTextHandler(&sb, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{} // Kong's log line has both
			}
			return a
		},
	}).WithAttrs(h.attrs))
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == KindKey {
			kind = a.Value.String()
		}
		return true
	})
	_ = line.Handler().Handle(ctx, r)
	q.offer(r.Level, kind, strings.TrimSuffix(sb.String(), "\n"), &echo{w: h.w, text: stderrLine.Bytes()})
	return nil
}
