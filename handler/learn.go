package handler

import (
	"sync"
	"sync/atomic"
	"time"
)

// learnHints carries "this answer created a session" from the Response
// phase to the Log phase. Only Log can learn which replica Kong chose
// (kong.log.serialize's balancer tries), but Kong gives Log no way to tell
// one request from another without a PDK call; with the hints, Log makes
// that call only while a new session's answer is in flight, not for every
// request. A hint names the session id, so Log learns exactly the sessions
// Response saw, whatever else runs concurrently.
type learnHints struct {
	mu       sync.Mutex
	ids      map[string]time.Time // session id -> when the hint is dropped
	overflow time.Time            // too many hints: learn every session until then
	waiting  atomic.Bool          // len(ids) > 0 or overflow: read without the lock
	lastGC   time.Time
}

const (
	// hintTTL bounds how long a hint waits for its Log phase, which Kong
	// runs in a timer right after the answer: seconds are plenty.
	hintTTL = 30 * time.Second
	// maxHints bounds the memory of hints whose Log never came (a plugin
	// restart between the phases loses them anyway).
	maxHints = 100_000
)

// hints is shared by all instances of the process: Kong may replace an
// instance (config change) between a request's Response and Log phases.
var hints = newLearnHints()

func newLearnHints() *learnHints { return &learnHints{ids: map[string]time.Time{}} }

// add records that the answer for session id is on its way to Log.
func (h *learnHints) add(id string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expire(now)
	if len(h.ids) >= maxHints {
		h.overflow = now.Add(hintTTL)
	} else {
		h.ids[id] = now.Add(hintTTL)
	}
	h.waiting.Store(true)
}

// pending tells Log, without a lock or a PDK call, whether any request may
// need learning.
func (h *learnHints) pending() bool { return h.waiting.Load() }

// take consumes the hint for id; true means Log should learn the session.
func (h *learnHints) take(id string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.ids[id]
	delete(h.ids, id)
	h.expire(now)
	return ok || now.Before(h.overflow)
}

// expire drops stale hints, at most once a second unless the map is full.
func (h *learnHints) expire(now time.Time) {
	if len(h.ids) > 0 && (now.Sub(h.lastGC) >= time.Second || len(h.ids) >= maxHints) {
		h.lastGC = now
		for id, until := range h.ids {
			if now.After(until) {
				delete(h.ids, id)
			}
		}
	}
	h.waiting.Store(len(h.ids) > 0 || now.Before(h.overflow))
}
