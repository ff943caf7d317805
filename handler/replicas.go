package handler

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/mcp-relay/mcp-relay/handler/replica"
	"github.com/mcp-relay/mcp-relay/logging"
	"github.com/mcp-relay/mcp-relay/session"
)

// The process's watches of replicas, one per probe interval and session
// TTL (in practice one): Kong replaces an instance after a config change
// or 60 s without requests, and what the process knows of a replica (that
// it restarted a moment ago) must outlive it; every route of a service
// shares its replicas.
var watches = struct {
	mu sync.Mutex
	m  map[watchKey]*replica.Watch
}{m: map[watchKey]*replica.Watch{}}

type watchKey struct{ interval, idle time.Duration }

// watchFor returns the process's watch for these settings.
func watchFor(interval, idle time.Duration) *replica.Watch {
	watches.mu.Lock()
	defer watches.mu.Unlock()
	k := watchKey{interval, idle}
	w := watches.m[k]
	if w == nil {
		w = replica.NewWatch(replica.WatchOptions{Interval: interval, Idle: idle, Fleet: fleet, Changed: replicaChanged,
			LastGone: replicaLastGone})
		watches.m[k] = w
	}
	return w
}

func allWatches() []*replica.Watch {
	watches.mu.Lock()
	defer watches.mu.Unlock()
	out := make([]*replica.Watch, 0, len(watches.m))
	for _, w := range watches.m {
		out = append(out, w)
	}
	return out
}

// replicaSeen records that target, a replica of service, answered an
// initialize (a session learned here or on another node, recovered, or
// restored): recoveries may choose it, and it is watched from now on, so
// that its sessions' requests through this node never reach a process
// that restarted meanwhile.
func replicaSeen(service, target string) {
	now := time.Now()
	fleet.Learned(service, target, now)
	for _, w := range allWatches() {
		w.Track(target, now)
	}
}

// replicasDownNow counts the watched replicas that are down.
func replicasDownNow() float64 {
	n := 0
	for _, w := range allWatches() {
		n += w.Down()
	}
	return float64(n)
}

// The change label of mcp_relay_replica_changes_total.
const (
	changeGone        = "gone"        // refused: the process exited (crash, stop, restart)
	changeUnreachable = "unreachable" // timeouts: the host stopped answering
	changeBack        = "back"        // accepting connections again
)

// replicaChanged logs and counts what the watches find.
func replicaChanged(target string, down bool, err error) {
	switch {
	case !down:
		replicaChanges.WithLabelValues(changeBack).Inc()
		logger.Log(context.Background(), logging.LevelNotice, "replica reachable again", "replica", target)
	case errors.Is(err, syscall.ECONNREFUSED):
		replicaChanges.WithLabelValues(changeGone).Inc()
		logger.Warn("replica gone (its process exited): its sessions are recovered on their next request",
			"replica", target)
		go tellReplicaGone(target, time.Now())
	default:
		replicaChanges.WithLabelValues(changeUnreachable).Inc()
		logger.Warn("replica unreachable: its sessions are recovered on their next request", "replica", target, "err", err)
	}
}

// News of replicas between nodes, through the shared stores
// (session.ReplicaNews): every node recovers the sessions of a replica any
// node found gone, even one that was not watching it then.

// sharedStores are the process's stores that carry replica news.
func sharedStores() []session.ReplicaNews {
	storeHealths.Lock()
	defer storeHealths.Unlock()
	var out []session.ReplicaNews
	for _, h := range storeHealths.m {
		if n, ok := session.ReplicaNewsOf(h.store); ok {
			out = append(out, n)
		}
	}
	return out
}

// tellReplicaGone tells the other nodes that this one found target gone.
func tellReplicaGone(target string, at time.Time) {
	for _, s := range sharedStores() {
		ctx, cancel := context.WithTimeout(context.Background(), newsTimeout)
		if err := s.ReplicaGone(ctx, target, at); err != nil {
			storeErrors.Inc()
			logger.Warn("session store failed", "op", "replica gone", "err", err)
		}
		cancel()
	}
}

// replicaLastGone is when a node last found target gone (the Watch's
// LastGone).
func replicaLastGone(target string) time.Time {
	var last time.Time
	for _, s := range sharedStores() {
		ctx, cancel := context.WithTimeout(context.Background(), newsTimeout)
		at, err := s.ReplicaGoneAt(ctx, target)
		cancel()
		if err == nil && at.After(last) {
			last = at
		}
	}
	return last
}

// replicaGoneElsewhere is the stores' ReplicaGone: another node found
// target gone.
func replicaGoneElsewhere(target string, at time.Time) {
	for _, w := range allWatches() {
		w.Gone(target, at)
	}
	logger.Info("replica gone, as another node found", "replica", target)
}

// newsTimeout bounds one store call for replica news.
const newsTimeout = time.Second
