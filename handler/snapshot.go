package handler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-relay/mcp-relay/session"
)

// PendingHints returns the learn hints whose Log phase has not run yet, for
// the plugin process to keep in its session snapshot at a graceful stop:
// Kong sends a request's Log event to whichever process serves the socket
// by then, and with the hint the new process still records the session.
func PendingHints() []session.Hint {
	return hints.pendingHints(time.Now())
}

// ReplicaSeen tells the process that target, a replica of the Kong service
// service, answered an initialize once: the sessions file's TargetSeen
// (the sessions it restores are pinned to it).
func ReplicaSeen(service, target string) { fleet.Seen(service, target) }

// RestoreHints adds hints a previous plugin process left in its snapshot.
func RestoreHints(hs []session.Hint) {
	hints.restore(hs, time.Now())
}

func (h *learnHints) pendingHints(now time.Time) []session.Hint {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]session.Hint, 0, len(h.ids))
	for id, x := range h.ids {
		if now.Before(x.until) {
			out = append(out, session.Hint{ID: id, Until: x.until, Init: x.init})
		}
	}
	return out
}

func (h *learnHints) restore(hs []session.Hint, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range hs {
		if len(h.ids) >= maxHints {
			break
		}
		if now.Before(x.Until) && x.ID != "" {
			h.ids[x.ID] = hint{until: x.Until, init: x.Init}
		}
	}
	h.waiting.Store(len(h.ids) > 0 || now.Before(h.overflow))
}

// Snapshot metrics read the session package's process-wide counters.
func init() {
	stat := func(f func(session.SnapshotStats) float64) func() float64 {
		return func() float64 { return f(session.ReadSnapshotStats()) }
	}
	registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "mcp_relay", Name: "sessions_restored_total",
			Help: "Session records (tombstones too) restored from the memory store's snapshot file at start."},
			stat(func(s session.SnapshotStats) float64 { return float64(s.Restored) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "mcp_relay", Name: "snapshot_writes_total",
			Help: "Snapshot files of the memory stores written."},
			stat(func(s session.SnapshotStats) float64 { return float64(s.Writes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "mcp_relay", Name: "snapshot_errors_total",
			Help: "Snapshot files that could not be written or read (an unreadable file is moved aside)."},
			stat(func(s session.SnapshotStats) float64 { return float64(s.WriteErrors + s.ReadErrors) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "mcp_relay", Name: "snapshot_records",
			Help: "Session records in the last snapshot file written."},
			stat(func(s session.SnapshotStats) float64 { return float64(s.LastRecords) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "mcp_relay", Name: "snapshot_bytes",
			Help: "Size of the last snapshot file written."},
			stat(func(s session.SnapshotStats) float64 { return float64(s.LastBytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "mcp_relay", Name: "snapshot_write_seconds",
			Help: "How long the last snapshot write took."},
			stat(func(s session.SnapshotStats) float64 { return time.Duration(s.LastWriteNs).Seconds() })),
	)
}
