package handler

import (
	"context"
	"errors"
	"time"

	"github.com/mcp-relay/mcp-relay/handler/replica"
	"github.com/mcp-relay/mcp-relay/kong"
		"github.com/mcp-relay/mcp-relay/session"
)

// Transparent recovery (config.session.recover): a legacy session whose
// replica is down, or forgot it, gets a new upstream session on a live
// replica, opened by the plugin with the session's own initialize params.
// The client keeps its session id: its record now names the new replica and
// the new upstream id (sent in Mcp-Session-Id, one PDK call), and the new
// id gets a record of its own naming the client's id as its alias, so a
// client that adopts the new id from a response header works as well.
// One recovery per session runs at a time: in-process single flight, and
// with Redis a claim key that makes the other nodes wait for its record.

// Why a recovery did not happen: the reason label of
// mcp_relay_recovery_failures_total.
const (
	failNoInit       = "no_init"        // the session's initialize params were not kept
	failInitTooLarge = "init_too_large" // counted when the params were dropped
	failNoReplica    = "no_replica"     // no live replica known, or none opened a session
	failStore        = "store"          // the session store failed
	failBusy         = "busy"           // another recovery of the session did not finish in time
	failEnded        = "ended"          // the client ended the session meanwhile
	failKong         = "kong"           // a PDK call failed
	failInternal     = "internal"       // a panic during the recovery
)

// recoveryFailureReasons are every failure reason, so that each label
// shows from the start.
var recoveryFailureReasons = []string{failNoInit, failInitTooLarge, failNoReplica, failStore, failBusy, failEnded, failKong, failInternal}

const (
	// recoverWait bounds how long a request waits for a recovery of its
	// session run by another request (on this node or another).
	recoverWait = 2*replica.AnswerTimeout + time.Second
	// maxRecoverTries bounds the replicas one recovery tries.
	maxRecoverTries = 3
)

// The process's replicas and recoveries: Kong may replace an instance
// between two requests of a session, and every route of a service shares
// its replicas.
var (
	fleet      = replica.NewFleet()
	recoveries = replica.NewFlights[flightKey, recovered](recoverWait)
)

// flightKey names one session family in one store.
type flightKey struct {
	store session.Store
	id    string
}

// recovered is the outcome of one recovery: the record to pin with, or
// why there is none.
type recovered struct {
	rec    session.Record
	reason string
}

// upstreamVars are Kong's upstream_scheme and upstream_uri, read only on
// the recovery path (two PDK calls) and at most once per request.
type upstreamVars struct {
	scheme, uri string
	read        bool
}

func (u *upstreamVars) get(k kong.PDK) bool {
	if u.read {
		return true
	}
	var err error
	if u.scheme, err = k.NginxVar("upstream_scheme"); err != nil {
		logger.Error("reading upstream_scheme", "err", err)
		return false
	}
	if u.uri, err = k.NginxVar("upstream_uri"); err != nil {
		logger.Error("reading upstream_uri", "err", err)
		return false
	}
	u.read = true
	return true
}

// recoverSession recovers session id, whose record is rec, and on success
// replaces rec with the record to pin the request with. dead says the
// record's replica is down (it is then not chosen again).
func (p *Plugin) recoverSession(k kong.PDK, r *request, vars *upstreamVars, id string, rec *session.Record, dead bool) bool {
	if !p.cfg.Session.Recover {
		return false
	}
	start := time.Now()
	root := id
	if rec.Alias != "" {
		root = rec.Alias
	}
	if rec.Init == "" {
		p.recoveryFailed(root, failNoInit, "the session's initialize params were not kept")
		return false
	}
	seen := *rec
	res, err := recoveries.Do(flightKey{p.store, root}, func() recovered {
		rec, reason := p.recoverRoot(k, r, vars, root, id, seen, dead)
		return recovered{rec, reason}
	})
	out, reason := res.rec, res.reason
	switch {
	case errors.Is(err, replica.ErrBusy):
		reason = failBusy
	case err != nil:
		reason = failInternal
	}
	if reason != "" {
		p.recoveryFailed(root, reason, "")
		return false
	}
	if id != root {
		// The client uses an upstream id it adopted: route it like the
		// client's id, and keep it recoverable under the same root.
		alias := session.Record{Target: out.Target, Consumer: out.Consumer, Created: out.Created,
			State: session.Active, Init: out.Init, Upstream: out.Upstream, Alias: root, Service: out.Service}
		if id == out.Upstream {
			alias.Upstream = ""
		}
		if seen.Target != out.Target || seen.Upstream != alias.Upstream {
			ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
			p.storeOp("recover", func() error { return p.store.Learn(ctx, id, alias) })
			cancel()
		}
		out = alias
	}
	*rec = out
	recoveryLatency.Observe(time.Since(start).Seconds())
	return true
}

// recoverRoot runs one recovery of the session family root (the client's
// original id) and returns root's new record.
func (p *Plugin) recoverRoot(k kong.PDK, r *request, vars *upstreamVars, root, id string, seen session.Record, dead bool) (session.Record, string) {
	ctx, cancel := context.WithTimeout(context.Background(), recoverWait)
	defer cancel()
	base := seen
	if id != root {
		rec, found, err := p.store.Lookup(ctx, root, 0)
		if err != nil {
			return session.Record{}, failStore
		}
		if found {
			base = rec
		}
	}
	if base.State == session.Ended {
		return session.Record{}, failEnded
	}
	// Another recovery may have finished since seen was read: a newer
	// Active record on a live replica is the answer.
	newer := func(rec session.Record) bool {
		return rec.State == session.Active && rec.Created.After(base.Created) &&
			(p.replicas == nil || !p.replicas.IsDown(rec.Target))
	}
	if base.State == session.Active && base.Created.After(seen.Created) && newer(base) {
		return base, ""
	}
	if fl, ok := p.store.(session.Flight); ok {
		release, claimed, err := fl.Claim(ctx, root, recoverWait)
		if err != nil {
			logger.Warn("session store failed", "op", "claim", "err", err)
			return session.Record{}, failStore
		}
		if !claimed {
			rec, found, err := fl.AwaitWrite(ctx, root, recoverWait, func(rec session.Record) bool {
				return newer(rec) || rec.State == session.Ended
			})
			switch {
			case err != nil:
				return session.Record{}, failStore
			case !found:
				return session.Record{}, failBusy
			case rec.State == session.Ended:
				return session.Record{}, failEnded
			}
			return rec, ""
		}
		defer release()
		// The claim's holder before us may have finished just now.
		if rec, found, err := p.store.Lookup(ctx, root, 0); err == nil && found && newer(rec) {
			return rec, ""
		}
	}

	init := base.Init
	if init == "" {
		init = seen.Init
	}
	if !vars.get(k) {
		return session.Record{}, failKong
	}
	exclude := ""
	if dead {
		exclude = seen.Target
	}
	var isDown func(string) bool
	var pins func(string) float64
	if p.replicas != nil {
		isDown, pins = p.replicas.IsDown, p.replicas.RecentPins
	}
	service := base.Service
	if service == "" {
		service = seen.Service
	}
	cands := fleet.Candidates(service, time.Now(), exclude, isDown, pins)
	if len(cands) == 0 {
		logger.Warn("session recovery: no live replica known (none answered an initialize lately)",
			"session", fingerprint(root), "dead", seen.Target)
		return session.Record{}, failNoReplica
	}
	for i, c := range cands {
		if i == maxRecoverTries {
			break
		}
		call := replica.NewCall(vars.scheme, c.Target, vars.uri, p.pinnedHost(r.headers, c.Target), r.headers)
		tctx, tcancel := context.WithTimeout(ctx, replica.AnswerTimeout)
		upstreamID, err := call.OpenSession(tctx, init)
		tcancel()
		if err != nil {
			logger.Warn("session recovery: replica did not open a session, trying the next",
				"session", fingerprint(root), "replica", c.Target, "err", err)
			continue
		}
		if !validSessionID(upstreamID, p.cfg.Session.MaxIDLength) {
			logger.Warn("session recovery: replica minted an invalid session id", "replica", c.Target)
			continue
		}
		now := time.Now()
		replicaSeen(service, c.Target)
		consumer := seen.Consumer
		// The upstream id first: root's record (whose event wakes the other
		// nodes) must not name an id the store does not know yet.
		err = p.store.Learn(ctx, upstreamID, session.Record{Target: c.Target, Consumer: consumer,
			Created: now, State: session.Active, Init: init, Alias: root, Service: service})
		if err == nil {
			err = p.store.Learn(ctx, root, session.Record{Target: c.Target, Consumer: consumer,
				Created: now, State: session.Active, Init: init, Upstream: upstreamID, Service: service})
		}
		if err != nil {
			storeErrors.Inc()
			logger.Warn("session store failed", "op", "recover", "err", err)
			return session.Record{}, failStore
		}
		sessionsRecovered.Inc()
		logger.Info("session recovered on a live replica", "session", fingerprint(root),
			"from", seen.Target, "to", c.Target, "tries", i+1)
		return session.Record{Target: c.Target, Consumer: consumer, Created: now, State: session.Active,
			Init: init, Upstream: upstreamID, Service: service}, ""
	}
	return session.Record{}, failNoReplica
}

func (p *Plugin) recoveryFailed(root, reason, detail string) {
	recoveryFailures.WithLabelValues(reason).Inc()
	logger.Warn("session not recovered: answered as lost", "session", fingerprint(root), "reason", reason, "detail", detail)
}

// resendAfter404 handles a buffered request of a session its replica
// answered 404 (the replica restarted and forgot it): it recovers the
// session, sends the request again to the new upstream session, and
// answers the client with that answer. false: the 404 stands.
func (p *Plugin) resendAfter404(k kong.PDK, headers map[string][]string, r *request) bool {
	ids := headers[hSessionID]
	if !p.cfg.Session.Recover || len(ids) != 1 || !validSessionID(ids[0], p.cfg.Session.MaxIDLength) {
		return false
	}
	id := ids[0]
	ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
	rec, found, err := p.store.Lookup(ctx, id, 0)
	cancel()
	if err != nil || !found || rec.State != session.Active ||
		(p.cfg.Session.BindConsumer && rec.Consumer != first(headers, hConsumerID)) {
		return false
	}
	p.readBody(k, r)
	if len(r.rpc.Body) == 0 || !r.mcp {
		return false
	}
	var vars upstreamVars
	if !p.recoverSession(k, r, &vars, id, &rec, false) {
		return false
	}
	if !vars.get(k) {
		return false
	}
	sid := rec.Upstream
	if sid == "" {
		sid = id
	}
	call := replica.NewCall(vars.scheme, rec.Target, vars.uri, p.pinnedHost(headers, rec.Target), headers)
	sctx, scancel := context.WithTimeout(context.Background(), replica.AnswerTimeout)
	defer scancel()
	resp, body, err := call.Resend(sctx, r.rpc.Body, sid, first(headers, hProtocolVersion))
	if err != nil {
		logger.Warn("session recovered, but re-sending the request failed", "session", fingerprint(id), "err", err)
		return false
	}
	out := map[string][]string{}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		out["Content-Type"] = []string{ct}
	}
	k.Exit(resp.StatusCode, body, out)
	return true
}
