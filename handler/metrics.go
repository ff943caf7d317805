package handler

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcp-relay/mcp-relay/session"
)

// Every metric of the plugin process, in one place. Metrics are
// process-wide: one plugin process serves every route and worker of a Kong
// node. Labels never carry session ids, consumers or keys, and their sets
// are bounded.
var (
	registry = prometheus.NewRegistry()

	// Sessions and pinning.
	sessionsLearned = counter("sessions_learned_total", "Sessions recorded after a replica answered initialize with Mcp-Session-Id.")
	pinsHit         = counter("pins_total", "Requests sent to the replica that owns their session.")
	pinsAfterWait   = counter("pins_after_wait_total", "Pinned requests whose session record arrived while they waited (learned in Kong's Log phase, on this node or another).")
	sessionsUnknown = counter("sessions_unknown_total", "Requests with a session id no store knows (after the learn wait), answered 404 or passed.")
	sessionsLost    = counter("sessions_lost_total", "Sessions marked lost because their replica failed (unreachable to the probes, or an upstream 502/504).")
	sessionsEnded   = counter("sessions_ended_total", "Sessions ended by a DELETE the replica accepted.")
	bindRejections  = counter("binding_rejections_total", "Session ids presented by another consumer than the one that created them.")
	replicasDown    = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "mcp_relay", Name: "replicas_down",
		Help: "Watched replicas that are down: gone (connections refused) or unreachable.",
	}, replicasDownNow)
	replicaChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcp_relay", Name: "replica_changes_total",
		Help: "What the watch connections found, by change: gone (its process exited: a crash, a stop or a restart in place), unreachable (timeouts), back (accepting again).",
	}, []string{"change"})
	sessionsUnlearned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcp_relay", Name: "sessions_unlearned_total",
		Help: "New sessions the initialize's Response phase could not pin (its answer names no replica) while Kong sends the plugin no Log event (start it with -log-phase), by reason.",
	}, []string{"reason"})

	// Session recovery (recovery.go).
	sessionsRecovered = counter("sessions_recovered_total",
		"Sessions recovered: a new upstream session opened on a live replica for a session whose replica was down or forgot it.")
	reroutesStarted = counter("recoveries_via_balancer_started_total",
		"Recoveries sent through Kong's balancer (no known replica opened a session): the request went upstream as the session's initialize.")
	reroutesDone = counter("recoveries_via_balancer_total",
		"Sessions recovered on the replica Kong's balancer chose (counted in sessions_recovered_total too).")
	recoveryFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcp_relay", Name: "recovery_failures_total",
		Help: "Recoveries that did not happen, by reason: answered 404 as without recovery, or 503 recovery_interrupted (the session stands) for store, busy, kong, internal and balancer.",
	}, []string{"reason"})
	recoveryLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "mcp_relay", Name: "recovery_latency_seconds",
		Help:    "Time a request waited for its session's recovery (the replayed initialize included).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})

	// The session store (storehealth.go).
	storeErrors  = counter("store_errors_total", "Session store calls that failed (Redis down or timed out).")
	storeLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mcp_relay", Name: "store_latency_seconds",
		Help:    "Latency of session store calls, learn waits included.",
		Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
	storeUp = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "mcp_relay", Name: "store_up",
		Help: "1 when every Redis session store in use answered its last check, 0 while one does not (a memory store is always up).",
	}, storesUp)

	// Answers and requests.
	envelopes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcp_relay", Name: "envelopes_total",
		Help: "JSON-RPC error envelopes written, by reason.",
	}, []string{"reason"})
	panics           = counter("panics_total", "Handler panics recovered (the request got a 500 envelope).")
	requestsByMethod = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcp_relay", Name: "requests_total",
		Help: "MCP requests seen in Access, by JSON-RPC method and tool (tools/call only); unknown methods and tools beyond the label limit count as other.",
	}, []string{"method", "tool"})
	hiddenEntries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcp_relay", Name: "list_entries_hidden_total",
		Help: "Entries removed from list answers by access rules or tool pinning, by list (tools, prompts, resources).",
	}, []string{"list"})
	metadataServed = counter("resource_metadata_served_total", "Protected-resource metadata documents served.")

	// Tool pinning (toolpin.go).
	toolChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcp_relay", Name: "tool_changes_total",
		Help: "Tool definitions seen in tools/list answers that are not approved, by tool (tools beyond the label limit count as other) and change (changed, new, unreadable); each counted once per node and hold time.",
	}, []string{"tool", "change"})
)

// lookupLatency is resolved once: it is observed on every pinned request.
var lookupLatency = storeLatency.WithLabelValues("lookup")

func counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "mcp_relay", Name: name, Help: help})
	registry.MustRegister(c)
	return c
}

// sessionsFileMetrics read the session package's process-wide counters of
// the memory store's sessions file.
func sessionsFileMetrics() []prometheus.Collector {
	stat := func(f func(session.SessionsFileStats) float64) func() float64 {
		return func() float64 { return f(session.ReadSessionsFileStats()) }
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "mcp_relay", Name: "sessions_restored_total",
			Help: "Session records (tombstones too) restored from the memory store's snapshot file at start."},
			stat(func(s session.SessionsFileStats) float64 { return float64(s.Restored) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "mcp_relay", Name: "snapshot_writes_total",
			Help: "Snapshot files of the memory stores written."},
			stat(func(s session.SessionsFileStats) float64 { return float64(s.Writes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "mcp_relay", Name: "snapshot_errors_total",
			Help: "Snapshot files that could not be written or read (an unreadable file is moved aside)."},
			stat(func(s session.SessionsFileStats) float64 { return float64(s.WriteErrors + s.ReadErrors) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "mcp_relay", Name: "snapshot_records",
			Help: "Session records in the last snapshot file written."},
			stat(func(s session.SessionsFileStats) float64 { return float64(s.LastRecords) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "mcp_relay", Name: "snapshot_bytes",
			Help: "Size of the last snapshot file written."},
			stat(func(s session.SessionsFileStats) float64 { return float64(s.LastBytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "mcp_relay", Name: "snapshot_write_seconds",
			Help: "How long the last snapshot write took."},
			stat(func(s session.SessionsFileStats) float64 { return time.Duration(s.LastWriteNs).Seconds() })),
	}
}

func init() {
	registry.MustRegister(replicasDown, replicaChanges, sessionsUnlearned, recoveryFailures, recoveryLatency, storeLatency, storeUp,
		envelopes, requestsByMethod, hiddenEntries, toolChanges)
	registry.MustRegister(sessionsFileMetrics()...)
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range recoveryFailureReasons {
		recoveryFailures.WithLabelValues(r)
	}
	for _, r := range unnamedReasons {
		sessionsUnlearned.WithLabelValues(r)
	}
	for _, c := range []string{changeGone, changeUnreachable, changeBack} {
		replicaChanges.WithLabelValues(c)
	}
}

// MetricsHandler serves the Prometheus exposition of the plugin process.
func MetricsHandler() http.Handler {
	return promhttp.HandlerFor(registry, promhttp.HandlerOpts{})
}
