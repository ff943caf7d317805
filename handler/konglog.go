package handler

import (
	"sync"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/logging"
)

// flushKongLog writes the events waiting for Kong's error log (package
// logging queues every record at notice and above, at most one per kind per
// 10 s) through kong.log.err/warn/notice, one PDK call each. A request pays
// them only when something went wrong since the last flush (Pending is one
// atomic load). With Log events (-log-phase) the Log phase calls it, after
// the client has its answer; without, Access and Response do, as they end
// (flushingPDK).
func flushKongLog(k kong.PDK) {
	kl, ok := k.(kong.Logger)
	if !ok || !logging.Pending() {
		return
	}
	events := logging.Take()
	for i, e := range events {
		if err := kl.KongLog(e.Level, e.Line); err != nil {
			logging.Requeue(events[i:]) // the next request tries again
			return
		}
	}
}

// flushingPDK is a phase's PDK that writes the waiting events to Kong's
// log when the phase ends: before the handler answers (no PDK call may
// follow kong.response.exit), or in done. They are pooled: a request
// allocates nothing for it.
type flushingPDK struct {
	kong.PDK
	exited bool
}

var flushingPDKs = sync.Pool{New: func() any { return new(flushingPDK) }}

// flushAtEnd wraps k; the phase defers done.
func flushAtEnd(k kong.PDK) *flushingPDK {
	f := flushingPDKs.Get().(*flushingPDK)
	f.PDK, f.exited = k, false
	return f
}

func (f *flushingPDK) Exit(status int, body []byte, headers map[string][]string) {
	flushKongLog(f.PDK)
	f.exited = true
	f.PDK.Exit(status, body, headers)
}

// done flushes unless the handler answered. It runs after the handler's
// own panic handling, so it recovers its own panics.
func (f *flushingPDK) done() {
	defer func() {
		if v := recover(); v != nil {
			panics.Inc()
			logger.Error("panic writing to Kong's log", "panic", v)
		}
	}()
	if !f.exited {
		flushKongLog(f.PDK)
	}
	f.PDK = nil
	flushingPDKs.Put(f)
}
