package replica

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Fleet is what the process knows of the replicas that answer, per Kong
// service: the targets of sessions learned on this node, of sessions other
// nodes learned (the Redis store's events), of the sessions restored from
// the sessions file, and of recovered sessions. A recovery opens its new
// upstream session on one of the session's service: Kong's balancer is not
// reachable from a plugin, so these are the replicas known to be live.
// It is safe for concurrent use.
type Fleet struct {
	mu       sync.Mutex
	replicas map[fleetKey]*fleetReplica
}

// NewFleet returns an empty fleet.
func NewFleet() *Fleet { return &Fleet{replicas: map[fleetKey]*fleetReplica{}} }

// fleetKey is one replica of one service.
type fleetKey struct{ service, target string }

type fleetReplica struct {
	seen time.Time // last time it answered an initialize
	load float64   // sessions opened on it, decaying with loadHalfLife
	at   time.Time // when load was last brought up to date
}

const (
	// fleetWindow: a replica not seen answering for this long is not chosen.
	fleetWindow = 10 * time.Minute
	// loadHalfLife: how fast sessions opened on a replica stop counting.
	loadHalfLife = time.Minute
	maxFleet     = 4096
)

// Learned records that target, a replica of service, answered an
// initialize at now.
func (f *Fleet) Learned(service, target string, now time.Time) {
	if target == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fleetKey{service, target}
	r := f.replicas[k]
	if r == nil {
		if len(f.replicas) >= maxFleet {
			f.forget(now)
		}
		r = &fleetReplica{at: now}
		f.replicas[k] = r
	}
	r.load = r.loadAt(now) + 1
	r.at, r.seen = now, now
}

// Seen is Learned now: the session store's TargetSeen.
func (f *Fleet) Seen(service, target string) { f.Learned(service, target, time.Now()) }

// Known records target as a replica of service that sessions are pinned
// to (their records name it: it answered an initialize once), without
// adding load. The probes tell whether it is still up.
func (f *Fleet) Known(service, target string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fleetKey{service, target}
	if r := f.replicas[k]; r != nil {
		r.seen = now
		return
	}
	if len(f.replicas) >= maxFleet {
		f.forget(now)
	}
	f.replicas[k] = &fleetReplica{seen: now, at: now}
}

func (r *fleetReplica) loadAt(now time.Time) float64 {
	return r.load * math.Exp2(-float64(now.Sub(r.at))/float64(loadHalfLife))
}

func (f *Fleet) forget(now time.Time) {
	for t, r := range f.replicas {
		if now.Sub(r.seen) > fleetWindow {
			delete(f.replicas, t)
		}
	}
}

// Candidate is a replica a recovery may open a session on.
type Candidate struct {
	Target string
	Load   float64 // sessions opened on it lately, and pinned requests
}

// Candidates lists the replicas of service seen answering within
// fleetWindow, least loaded first (ties in random order, so that nodes
// spread), without exclude and without those isDown reports. pins adds each
// replica's recent pinned requests to its load.
func (f *Fleet) Candidates(service string, now time.Time, exclude string, isDown func(string) bool, pins func(string) float64) []Candidate {
	f.mu.Lock()
	out := make([]Candidate, 0, len(f.replicas))
	for k, r := range f.replicas {
		if k.service != service || k.target == exclude || now.Sub(r.seen) > fleetWindow {
			continue
		}
		out = append(out, Candidate{Target: k.target, Load: r.loadAt(now)})
	}
	f.mu.Unlock()
	out = slices.DeleteFunc(out, func(c Candidate) bool { return isDown != nil && isDown(c.Target) })
	for i := range out {
		if pins != nil {
			out[i].Load += pins(out[i].Target)
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	slices.SortStableFunc(out, func(a, b Candidate) int {
		switch {
		case a.Load < b.Load:
			return -1
		case a.Load > b.Load:
			return 1
		}
		return 0
	})
	return out
}
