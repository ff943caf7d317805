package handler

import (
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/mcp-relay/mcp-relay/session"
)

// initParams carries the params of an initialize request from Access (which
// read its body) to Response (which sees the new session id in the answer),
// in the process: only their key travels in the request's note (note.go).
// The key is a hash of all the request's headers (Content-Length included);
// params under one key are taken first in first out.
// Two initializes in flight at once with identical headers (same client
// software, same credentials, same body length) may swap params; such
// clients send the same params in practice.
type initParams struct {
	mu      sync.Mutex
	seed    maphash.Seed
	pending map[uint64][]pendingInit
	lastGC  time.Time
}

type pendingInit struct {
	init string
	at   time.Time
}

const (
	// initTTL bounds how long params wait for their Response phase (an
	// upstream failure skips it).
	initTTL = 30 * time.Second
	// maxPendingInits bounds their memory.
	maxPendingInits = 10_000
)

var inits = &initParams{seed: maphash.MakeSeed(), pending: map[uint64][]pendingInit{}}

// paramsOf returns the params of an initialize body as Record.Init, or ""
// when they are missing or larger than session.MaxInitBytes (logged: that
// session cannot be recovered).
func paramsOf(body []byte) string {
	p := gjson.GetBytes(body, "params")
	if !p.IsObject() {
		return ""
	}
	if len(p.Raw) > session.MaxInitBytes {
		recoveryFailures.WithLabelValues(failInitTooLarge).Inc()
		logger.Warn("initialize params too large to keep: the session cannot be recovered",
			"bytes", len(p.Raw), "max", session.MaxInitBytes)
		return ""
	}
	return p.Raw
}

// put remembers the params of an initialize about to be proxied, and
// returns the key its Response phase takes them with (0: none kept).
func (q *initParams) put(headers map[string][]string, init string, now time.Time) uint64 {
	if init == "" {
		return 0
	}
	h := q.hash(headers) | 1 // never 0
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(now)
	if len(q.pending) >= maxPendingInits {
		return 0
	}
	// Copy: init points into the request body.
	q.pending[h] = append(q.pending[h], pendingInit{init: string([]byte(init)), at: now})
	return h
}

// take returns the params put returned key h for.
func (q *initParams) take(h uint64, now time.Time) string {
	if h == 0 {
		return ""
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.pending[h]
	for len(list) > 0 && now.Sub(list[0].at) > initTTL {
		list = list[1:]
	}
	if len(list) == 0 {
		delete(q.pending, h)
		return ""
	}
	init := list[0].init
	if len(list) == 1 {
		delete(q.pending, h)
	} else {
		q.pending[h] = list[1:]
	}
	return init
}

func (q *initParams) expire(now time.Time) {
	if now.Sub(q.lastGC) < time.Second && len(q.pending) < maxPendingInits {
		return
	}
	q.lastGC = now
	for h, list := range q.pending {
		if now.Sub(list[len(list)-1].at) > initTTL {
			delete(q.pending, h)
		}
	}
}

// hash covers every header, in name order.
func (q *initParams) hash(headers map[string][]string) uint64 {
	names := make([]string, 0, len(headers))
	for n := range headers {
		names = append(names, n)
	}
	slices.Sort(names)
	var m maphash.Hash
	m.SetSeed(q.seed)
	for _, n := range names {
		m.WriteString(n)
		m.WriteByte(0)
		for _, v := range headers[n] {
			m.WriteString(v)
			m.WriteByte(1)
		}
		m.WriteByte(2)
	}
	return m.Sum64()
}
