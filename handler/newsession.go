package handler

import (
	"context"
	"time"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
)

// learnSession records the session a legacy initialize's answer created, in
// that request's Response phase: before the client has the answer, so its
// next request finds the record on every node sharing the store, with no
// learn wait. Four PDK calls: the answer's Mcp-Session-Id, and where Kong
// sent the request (balanced.go). When the answer does not name the replica,
// the Log phase learns the session from Kong's balancer tries, if Kong
// sends this process Log events (-log-phase); else the session stays
// unpinned, loudly.
func (p *Plugin) learnSession(k kong.PDK, n note) {
	id, err := k.ResponseHeader("Mcp-Session-Id")
	if err != nil {
		logger.Error("reading response Mcp-Session-Id", "err", err)
		return
	}
	if id == "" || !validSessionID(id, p.cfg.Session.MaxIDLength) {
		return
	}
	now := time.Now()
	var init string
	if p.cfg.Session.Recover {
		init = inits.take(n.initKey, now)
	}
	b, why, err := p.balancedTarget(k)
	if err != nil {
		logger.Error("reading where Kong sent an initialize: its session is learned in the Log phase if Kong runs it", "err", err)
		why = unnamedNoHost
	}
	if why != "" {
		p.learnInLog(id, init, why, now)
		return
	}
	p.hosts.learnBalanced(b.scheme)
	p.recordSession(id, session.Record{Target: b.target, Consumer: n.consumer, Init: init, Service: b.service})
}

// learnInLog leaves session id to the Log phase. Without Log events the
// session cannot be pinned: its requests are then answered as for an
// unknown session (or balanced, with session.unknown "pass").
func (p *Plugin) learnInLog(id, init, why string, now time.Time) {
	expired := p.hints.addInit(id, now, init)
	if p.logState().declared.Load() && !p.logState().seen.Load() && expired > 0 {
		logger.Error("new sessions not pinned: Kong sent no Log event, though mcp-relay runs with -log-phase: "+
			"add -log-phase to the plugin's query_cmd too (pluginserver_mcp_relay_query_cmd), so that -dump declares the phase",
			"sessions", expired)
	}
	if p.logState().events() {
		return
	}
	sessionsUnlearned.WithLabelValues(why).Inc()
	logger.Error("new session not pinned: "+unnamedWhy(why)+
		"; start mcp-relay with -log-phase (in pluginserver_mcp_relay_start_cmd and query_cmd) to learn such sessions from Kong's Log phase",
		"reason", why, "session", fingerprint(id))
}

// unnamedWhy explains a reason of balancedTarget.
func unnamedWhy(why string) string {
	switch why {
	case unnamedPreserveHost:
		return "the route has preserve_host, so Kong's answer does not name the replica it chose"
	case unnamedName:
		return "Kong balanced to a name (a target given by name, which may resolve to several replicas, or the upstream's host_header), not to an address"
	}
	return "Kong did not say where it sent the initialize"
}

// recordSession writes a new session's record (learned in Response or in
// Log) and tells the replica fleet its target answered. rec.Created, when
// set and past, is kept: when the initialize reached Kong.
func (p *Plugin) recordSession(id string, rec session.Record) {
	ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
	defer cancel()
	start := time.Now()
	if rec.Created.IsZero() || rec.Created.After(start) {
		rec.Created = start
	}
	rec.State = session.Active
	err := p.store.Learn(ctx, id, rec)
	replicaSeen(rec.Service, rec.Target)
	storeLatency.WithLabelValues("learn").Observe(time.Since(start).Seconds())
	if err != nil {
		storeErrors.Inc()
		logger.Warn("could not record session", "err", err)
		return
	}
	sessionsLearned.Inc()
}
