package handler

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/mcp-relay/mcp-relay/handler/replica"
	"github.com/mcp-relay/mcp-relay/logging"
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
		w = replica.NewWatch(replica.WatchOptions{Interval: interval, Idle: idle, Fleet: fleet, Changed: replicaChanged})
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
	default:
		replicaChanges.WithLabelValues(changeUnreachable).Inc()
		logger.Warn("replica unreachable: its sessions are recovered on their next request", "replica", target, "err", err)
	}
}
