package handler

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are process-wide: one plugin process serves every route and worker
// of a Kong node. Labels never carry session ids, consumers or keys.
var (
	registry = prometheus.NewRegistry()

	sessionsLearned = counter("sessions_learned_total", "Sessions recorded after a replica answered initialize with Mcp-Session-Id.")
	pinsHit         = counter("pins_total", "Requests sent to the replica that owns their session.")
	pinsAfterWait   = counter("pins_after_wait_total", "Pinned requests whose session record arrived while they waited (the Log-phase race).")
	sessionsUnknown = counter("sessions_unknown_total", "Requests with a session id no store knows (after the learn wait), answered 404 or passed.")
	sessionsLost    = counter("sessions_lost_total", "Sessions marked lost because their replica failed (unreachable to the probes, or an upstream 502/504).")
	sessionsEnded   = counter("sessions_ended_total", "Sessions ended by a DELETE the replica accepted.")
	bindRejections  = counter("binding_rejections_total", "Session ids presented by another consumer than the one that created them.")
	storeErrors     = counter("store_errors_total", "Session store calls that failed (Redis down or timed out).")
	panics          = counter("panics_total", "Handler panics recovered (the request got a 500 envelope).")

	replicasDown = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "mcp_relay", Name: "replicas_down",
		Help: "Pinned replicas the plugin's probes cannot connect to (counted once per route watching them).",
	})

	envelopes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcp_relay", Name: "envelopes_total",
		Help: "JSON-RPC error envelopes written, by reason.",
	}, []string{"reason"})

	storeLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mcp_relay", Name: "store_latency_seconds",
		Help:    "Latency of session store calls, learn waits included.",
		Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
)

// lookupLatency is resolved once: it is observed on every pinned request.
var lookupLatency = storeLatency.WithLabelValues("lookup")

func counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "mcp_relay", Name: name, Help: help})
	registry.MustRegister(c)
	return c
}

func init() {
	registry.MustRegister(envelopes, storeLatency, replicasDown)
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// MetricsHandler serves the Prometheus exposition of the plugin process.
func MetricsHandler() http.Handler {
	return promhttp.HandlerFor(registry, promhttp.HandlerOpts{})
}
