package handler

import (
	"sync"
	"sync/atomic"
	"time"
)

// learnHints carries "this answer created a session" from the Response
// phase to the Log phase, for the sessions Response cannot learn itself
// (newsession.go): only Kong's balancer tries, in kong.log.serialize(), name
// their replica. Kong gives Log no way to tell one request from another
// without a PDK call; with the hints, Log makes that call only while such
// an answer is in flight, not for every request. A hint names the session
// id, so Log learns exactly the sessions Response saw, whatever else runs
// concurrently.
type learnHints struct {
	mu       sync.Mutex
	ids      map[string]hint // session id -> its hint
	overflow time.Time       // too many hints: learn every session until then
	waiting  atomic.Bool     // len(ids) > 0 or overflow: read without the lock
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

// hint is what Log learns with a session besides what Kong saved.
type hint struct {
	until time.Time // when the hint is dropped
	init  string    // the initialize params (Record.Init)
}

func newLearnHints() *learnHints { return &learnHints{ids: map[string]hint{}} }

// add records that the answer for session id is on its way to Log.
func (h *learnHints) add(id string, now time.Time) { _ = h.addInit(id, now, "") }

// addInit is add with the params of the initialize that opened the session.
// It returns how many hints it found expired untaken: their Log never came.
func (h *learnHints) addInit(id string, now time.Time, init string) (expired int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	expired = h.expire(now)
	if len(h.ids) >= maxHints {
		h.overflow = now.Add(hintTTL)
	} else {
		h.ids[id] = hint{until: now.Add(hintTTL), init: init}
	}
	h.waiting.Store(true)
	return expired
}

// pending tells Log, without a lock or a PDK call, whether any request may
// need learning.
func (h *learnHints) pending() bool { return h.waiting.Load() }

// take consumes the hint for id; true means Log should learn the session.
func (h *learnHints) take(id string, now time.Time) bool {
	ok, _ := h.takeInit(id, now)
	return ok
}

// takeInit is take, also returning the hint's initialize params.
func (h *learnHints) takeInit(id string, now time.Time) (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	x, ok := h.ids[id]
	delete(h.ids, id)
	h.expire(now)
	return ok || now.Before(h.overflow), x.init
}

// expire drops stale hints, at most once a second unless the map is full,
// and returns how many it dropped.
func (h *learnHints) expire(now time.Time) (dropped int) {
	if len(h.ids) > 0 && (now.Sub(h.lastGC) >= time.Second || len(h.ids) >= maxHints) {
		h.lastGC = now
		for id, x := range h.ids {
			if now.After(x.until) {
				delete(h.ids, id)
				dropped++
			}
		}
	}
	h.waiting.Store(len(h.ids) > 0 || now.Before(h.overflow))
	return dropped
}
