package handler

import (
	"context"
	"errors"
	"time"

	"github.com/mcp-relay/mcp-relay/handler/replica"
	"github.com/mcp-relay/mcp-relay/handler/rules"
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
	failBalancer     = "balancer"       // no replica Kong's balancer chose opened a session
	failTarget       = "target_unknown" // the replica Kong's balancer chose cannot be told (preserve_host, host_header)
)

// recoveryFailureReasons are every failure reason, so that each label
// shows from the start.
var recoveryFailureReasons = []string{failNoInit, failInitTooLarge, failNoReplica, failStore, failBusy, failEnded, failKong,
	failInternal, failBalancer, failTarget}

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
// why there is none, or the recovery Kong's balancer is running
// (reroute.go) for the request that started it.
type recovered struct {
	rec    session.Record
	reason string
	// refused: the replica refused the session's initialize, or the target
	// cannot be told; the session is lost, whatever reason says.
	refused bool
	via     *reroute
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
// record's replica is down (it is then not chosen again). When no known
// replica opens a session and r may go upstream as the initialize
// (r.mayReroute), the recovery goes through Kong's balancer: r.reroute is
// set and false returned.
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
	led := false
	res, err := recoveries.Do(flightKey{p.store, root}, func() recovered {
		led = true
		return p.recoverRoot(k, r, vars, root, id, seen, dead)
	})
	if err == nil && res.via != nil {
		if led { // this request goes upstream as the initialize
			r.reroute = res.via
			return false
		}
		res = res.via.wait()
	}
	out, reason, refused := res.rec, res.reason, res.refused
	switch {
	case errors.Is(err, replica.ErrBusy):
		reason = failBusy
	case err != nil:
		reason = failInternal
	}
	if reason != "" {
		p.recoveryEnded(root, reason, "", !refused && passingFailure(reason))
		if !refused {
			r.recoveryFailed = reason
		}
		return false
	}
	*rec = p.adopt(id, root, seen, out)
	recoveryLatency.Observe(time.Since(start).Seconds())
	return true
}

// adopt returns the record to pin id with, now that its family root was
// recovered as out: id's own record when the client uses an upstream id it
// adopted, written unless it already says so.
func (p *Plugin) adopt(id, root string, seen, out session.Record) session.Record {
	if id == root {
		return out
	}
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
	return alias
}

// recoverRoot runs one recovery of the session family root (the client's
// original id): root's new record, why there is none, or the recovery it
// handed to Kong's balancer.
func (p *Plugin) recoverRoot(k kong.PDK, r *request, vars *upstreamVars, root, id string, seen session.Record, dead bool) recovered {
	key := flightKey{p.store, root}
	if rr := reroutes.forKey(key); rr != nil { // Kong's balancer is recovering it
		return rr.wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), recoverWait)
	defer cancel()
	fail := func(reason string) recovered { return recovered{reason: reason} }
	base := seen
	if id != root {
		rec, found, err := p.store.Lookup(ctx, root, 0)
		if err != nil {
			return fail(failStore)
		}
		if found {
			base = rec
		}
	}
	if base.State == session.Ended {
		return fail(failEnded)
	}
	// Another recovery may have finished since seen was read: a newer
	// Active record on a live replica is the answer.
	newer := func(rec session.Record) bool {
		return rec.State == session.Active && rec.Created.After(base.Created) &&
			(p.replicas == nil || !p.replicas.IsDown(rec.Target))
	}
	if base.State == session.Active && base.Created.After(seen.Created) && newer(base) {
		return recovered{rec: base}
	}
	var release func()
	if fl, ok := session.FlightOf(p.store); ok {
		rel, claimed, err := fl.Claim(ctx, root, recoverWait)
		if err != nil {
			logger.Warn("session store failed", "op", "claim", "err", err)
			return fail(failStore)
		}
		if !claimed {
			rec, found, taken, err := awaitRecovery(ctx, fl, root, func(rec session.Record) bool {
				return newer(rec) || rec.State == session.Ended
			})
			switch {
			case ctx.Err() != nil:
				return fail(failBusy)
			case err != nil:
				return fail(failStore)
			case found && rec.State == session.Ended:
				return fail(failEnded)
			case found:
				return recovered{rec: rec}
			}
			rel = taken
		}
		release = rel
		// The claim's holder before us may have finished just now.
		if rec, found, err := p.store.Lookup(ctx, root, 0); err == nil && found && newer(rec) {
			release()
			return recovered{rec: rec}
		}
	}
	handed := false
	defer func() {
		if release != nil && !handed {
			release()
		}
	}()

	init := base.Init
	if init == "" {
		init = seen.Init
	}
	if !vars.get(k) {
		return fail(failKong)
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
	for i, c := range cands {
		if i == maxRecoverTries {
			break
		}
		call := replica.NewCall(vars.scheme, c.Target, vars.uri, p.pinnedHost(r.headers, c.Target), r.headers)
		opened := time.Now()
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
		rec, reason := p.recordRecovery(ctx, root, seen, service, init, c.Target, upstreamID, opened)
		if reason == "" {
			logger.Info("session recovered on a live replica", "session", fingerprint(root),
				"from", seen.Target, "to", c.Target, "tries", i+1)
		}
		return recovered{rec: rec, reason: reason}
	}
	if r.mayReroute && p.mayReroute() {
		logger.Info("session recovery: no known replica opened a session, asking Kong's balancer",
			"session", fingerprint(root), "dead", seen.Target, "known", len(cands))
		handed = true
		return recovered{via: newReroute(r, key, root, id, seen, service, init, dead, *vars, release)}
	}
	if len(cands) == 0 {
		logger.Warn("session recovery: no live replica known (none answered an initialize lately)",
			"session", fingerprint(root), "dead", seen.Target)
	}
	return fail(failNoReplica)
}

// passingFailure tells whether a recovery failed for a reason that may be
// gone by the session's next request: the store or Kong failed, another
// recovery of the session did not finish in time, or no replica Kong's
// balancer chose opened a session (every target down for a moment: Kong
// answered the recovery's own request with its 502). The session then
// stands and the request is answered recovery_interrupted (503): a 404
// would end the session for clients that never initialize again (mcp-go,
// the TypeScript SDK). The other reasons hold until the session or the
// configuration changes.
func passingFailure(reason string) bool {
	switch reason {
	case failBusy, failStore, failKong, failInternal, failBalancer:
		return true
	}
	return false
}

// claimRecheck is how often a request awaiting a recovery that another
// plugin process claimed checks that the claim still stands.
const claimRecheck = time.Second

// awaitRecovery awaits the recovery of root that another plugin process
// claimed: its record (done holds), or, once the claim is gone without one
// (its holder failed, or died and its lease ran out), the claim, taken by
// this request to recover the session itself (release non-nil). ctx
// bounds it.
func awaitRecovery(ctx context.Context, fl session.Flight, root string, done func(session.Record) bool) (
	rec session.Record, found bool, release func(), err error) {
	for {
		rec, found, err = fl.AwaitWrite(ctx, root, claimRecheck, done)
		if err != nil || found {
			return rec, found, nil, err
		}
		rel, claimed, err := fl.Claim(ctx, root, recoverWait)
		if err != nil || claimed {
			return rec, false, rel, err
		}
	}
}

// recordRecovery records the family root's new upstream session upstreamID
// on target, whose initialize was sent at opened, and returns root's new
// record. The records are created at opened: a replica found gone after
// that may have forgotten the new session already.
func (p *Plugin) recordRecovery(ctx context.Context, root string, seen session.Record, service, init, target, upstreamID string,
	opened time.Time) (session.Record, string) {
	now := opened
	replicaSeen(service, target)
	consumer := seen.Consumer
	// The upstream id first: root's record (whose event wakes the other
	// nodes) must not name an id the store does not know yet.
	err := p.store.Learn(ctx, upstreamID, session.Record{Target: target, Consumer: consumer,
		Created: now, State: session.Active, Init: init, Alias: root, Service: service})
	out := session.Record{Target: target, Consumer: consumer, Created: now, State: session.Active,
		Init: init, Upstream: upstreamID, Service: service}
	if err == nil {
		err = p.store.Learn(ctx, root, out)
	}
	if err != nil {
		storeErrors.Inc()
		logger.Warn("session store failed", "op", "recover", "err", err)
		return session.Record{}, failStore
	}
	sessionsRecovered.Inc()
	return out, ""
}

func (p *Plugin) recoveryFailed(root, reason, detail string) {
	p.recoveryEnded(root, reason, detail, passingFailure(reason))
}

// recoveryEnded counts and logs a recovery that did not happen; stands
// says whether the session is kept for a later try.
func (p *Plugin) recoveryEnded(root, reason, detail string, stands bool) {
	recoveryFailures.WithLabelValues(reason).Inc()
	if stands {
		logger.Warn("session not recovered for now: the session stands", "session", fingerprint(root), "reason", reason, "detail", detail)
		return
	}
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
	return p.resend(k, headers, r, rec.Target, sid, vars)
}

// resend sends r (a buffered request of a recovered session) to target in
// the upstream session sid, and answers the client with the replica's
// answer, filtered by the access rules as any list answer. false: it could
// not be sent, and nothing was answered.
func (p *Plugin) resend(k kong.PDK, headers map[string][]string, r *request, target, sid string, vars upstreamVars) bool {
	call := replica.NewCall(vars.scheme, target, vars.uri, p.pinnedHost(headers, target), headers)
	ctx, cancel := context.WithTimeout(context.Background(), replica.AnswerTimeout)
	defer cancel()
	resp, body, err := call.Resend(ctx, r.rpc.Body, sid, first(headers, hProtocolVersion))
	if err != nil {
		logger.Warn("session recovered, but re-sending the request failed", "session", fingerprint(sid), "err", err)
		return false
	}
	out := map[string][]string{}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		out["Content-Type"] = []string{ct}
	}
	if p.rules != nil && resp.StatusCode/100 == 2 {
		f := rules.Filter{Rules: p.rules, Hidden: countHidden, Caller: func() *rules.Caller { return callerOf(k, headers) }}
		if filtered, changed := f.Body(body); changed {
			body = filtered
		}
	}
	k.Exit(resp.StatusCode, body, out)
	return true
}
