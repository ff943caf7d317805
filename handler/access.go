package handler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"time"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
)

// access decides, per request: answer it here (auth envelope, bad input,
// unknown session), pin it to its session's replica, and whether Kong may
// buffer the upstream answer (only when the Response phase may rewrite it).
func (p *Plugin) access(k kong.PDK) {
	if !p.logState().events() {
		w := flushAtEnd(k)
		defer w.done()
		k = w
	}
	var r request // what was read so far, for the envelope of a panic
	defer p.catchPanic(k, "access", &r)
	defer p.countRequest(&r)
	if p.invalid != nil {
		p.answerInvalid(k)
		return
	}

	headers, err := k.RequestHeaders()
	if err != nil {
		logger.Error("reading request headers", "err", err)
		return
	}
	r = newRequest(headers)
	if r.mayHaveBody() {
		// Without the header check, a 2026-07-28 request names its method
		// in Mcp-Method: its body is read only if the plugin answers it.
		r.bodyUnread = r.modern && !p.cfg.Upstream.CheckMethodHeaders && first(headers, hMethod) != ""
		if !r.bodyUnread {
			p.readBody(k, &r)
		}
	}
	// The method costs a round trip: ask only where headers and body leave
	// it open and it matters (a CORS preflight, a session's GET or DELETE).
	if r.needsMethod() {
		if r.method, err = k.RequestMethod(); err != nil {
			logger.Error("reading request method", "err", err)
			return
		}
	}

	// Protected-resource metadata is public (CORS *), whatever the Origin.
	if p.serveMetadata(k, &r) {
		return
	}
	if !p.origins.allows(headers) {
		p.rejectOrigin(k, &r)
		return
	}
	if r.method == "OPTIONS" { // CORS preflight passes untouched
		p.stream(k)
		return
	}
	if panicTest && first(headers, hPanicTest) == "access" {
		panic("injected panic (panictest build)")
	}

	if p.anonymous(headers) {
		if r.bodyUnread { // the envelope echoes the id
			p.readBody(k, &r)
		}
		if !r.mcp {
			envelopes.WithLabelValues("unauthorized_plain").Inc()
			k.Exit(401, []byte(`{"message":"Unauthorized"}`), p.authHeaders())
			return
		}
		p.reply(k, &r, reasonUnauthorized, p.wwwAuthenticate(k, &r))
		return
	}
	if p.authzAccess(k, &r) {
		return
	}
	if !r.mcp {
		p.setMethodHeaders(k, &r) // a client's own are removed
		p.stream(k)
		return
	}
	if p.methodHeadersUnreadable(k, &r) {
		return
	}

	var n note // what the Response phase must do
	if r.modern {
		// Kong routes and ACLs may match on these headers: they must not lie.
		if p.cfg.Upstream.CheckMethodHeaders && r.rpc.Kind == envelope.Single &&
			!envelope.MatchesHeaders(r.rpc, first(headers, hMethod), first(headers, hName)) {
			p.reply(k, &r, reasonMismatch, "")
			return
		}
	} else if p.store != nil && len(headers[hSessionID]) > 0 {
		if exited := p.pin(k, &r); exited {
			return
		}
		switch {
		case r.reroute != nil:
			n = note{kind: noteReroute, session: r.reroute.token}
		case r.method == "DELETE":
			n = note{kind: noteEnd, consumer: first(headers, hConsumerID), session: headers[hSessionID][0]}
		}
	} else if p.store != nil && r.rpc.Kind == envelope.Single && r.rpc.Method == "initialize" {
		n = note{kind: noteLearn, consumer: first(headers, hConsumerID)}
		if p.cfg.Session.Recover {
			n.initKey = inits.put(headers, paramsOf(r.rpc.Body), time.Now()) // for recovery: see initParams
		}
	}

	if n.kind == 0 && p.judgesList(&r) {
		n = note{kind: noteList, consumer: first(headers, hConsumerID), username: first(headers, hConsumerName)}
	}

	if r.reroute == nil { // else it goes upstream as an initialize: its method's headers would lie
		p.setMethodHeaders(k, &r)
	}
	p.serializeFields(k, &r, "")
	if !p.buffered(&r) {
		p.stream(k)
	} else if n.kind != 0 {
		if err := k.SetRequestNote(noteKey, n.encode()); err != nil {
			logger.Error("leaving the Response phase its note", "err", err)
		}
	}
}

// buffered says whether the upstream answer may be held back for the
// Response phase: never for a stream, only where a rewrite may be needed.
func (p *Plugin) buffered(r *request) bool {
	if r.method == "DELETE" || r.reroute != nil {
		return true
	}
	if r.bodyUnread {
		return p.buffers(first(r.headers, hMethod))
	}
	switch r.rpc.Kind {
	case envelope.Single:
		// A new session is learned from its initialize answer: Response
		// must see it.
		return p.buffers(r.rpc.Method) || (p.store != nil && r.rpc.Method == "initialize" && !r.modern)
	case envelope.Batch:
		all, n := true, 0
		r.rpc.Elements(func(e envelope.Request) bool {
			n++
			all = p.buffers(e.Method)
			return all
		})
		return (all && n > 0) || p.batchHasFilteredList(r)
	}
	return false
}

func (p *Plugin) readBody(k kong.PDK, r *request) {
	body, err := k.RequestBody()
	if err != nil {
		logger.Error("reading request body", "err", err)
	}
	r.bodyUnread = false
	r.withBody(envelope.Parse(body, p.cfg.Envelope.MaxBodyBytes))
}

func (p *Plugin) stream(k kong.PDK) {
	if err := k.ClearBuffering(); err != nil {
		logger.Error("clearing buffered_proxying", "err", err)
	}
}

// anonymous recognises the consumer the route's auth plugins fall back to
// (their `anonymous` option): Kong sets these request headers in
// kong/plugins/*/handler.lua set_consumer.
func (p *Plugin) anonymous(h map[string][]string) bool {
	if first(h, hAnonymous) == "true" {
		return true
	}
	a := p.cfg.Auth.Anonymous
	return a != "" && (first(h, hConsumerID) == a || first(h, hConsumerName) == a)
}

func (p *Plugin) authHeaders() map[string][]string {
	if p.cfg.Auth.WWWAuthenticate == "" {
		return jsonOnly
	}
	return map[string][]string{"Content-Type": {"application/json"}, "WWW-Authenticate": {p.cfg.Auth.WWWAuthenticate}}
}

// pin sends a legacy request to the replica that owns its session, or
// answers it when the session is unknown, lost, ended or someone else's.
func (p *Plugin) pin(k kong.PDK, r *request) (exited bool) {
	ids := r.headers[hSessionID]
	if len(ids) != 1 || !validSessionID(ids[0], p.cfg.Session.MaxIDLength) {
		p.reply(k, r, reasonBadSession, "")
		return true
	}
	id := ids[0]
	wait := p.learnWait()
	start := time.Now()

	rec, found, waited, err := p.lookup(id, wait)
	if err != nil {
		storeErrors.Inc()
		p.health.failed()
		logger.Warn("session store failed", "err", err, "store_error", p.cfg.Session.StoreError)
		if p.settings.storeErrorReject {
			p.reply(k, r, reasonStore, "")
			return true
		}
		return false
	}
	if found && p.cfg.Session.BindConsumer && rec.Consumer != first(r.headers, hConsumerID) {
		bindRejections.Inc()
		logger.Warn("session presented by another consumer",
			"session", fingerprint(id), "owner", rec.Consumer, "consumer", first(r.headers, hConsumerID))
		// Answer as for an unknown id, after the same store work: look up an
		// id that cannot exist, with the same wait. Neither the answer nor
		// its timing may tell that the session exists (a plain sleep would
		// skip the store's round trips, measurable with a distant Redis).
		// Left: when this node's cache did not hold the record, finding it
		// cost one Redis round trip more; it then holds it for the cache
		// life, so that is one sample per node and minute.
		_, _, _, _ = p.lookup(decoyID(), wait)
		found = false
	}
	// Kong's balancer may find a live replica for a recovery by sending
	// this request upstream as the session's initialize (reroute.go).
	r.mayReroute = r.method == "POST" || r.method == "GET"
	if found && rec.State == session.Active && p.replicas != nil {
		// A replica down, or gone since the session was created (it
		// restarted and forgot it): recover, or lose the session.
		if down, downAt := p.replicas.Pinned(rec.Service, rec.Target, start); down || downAt > rec.Created.UnixNano() {
			var vars upstreamVars
			if !p.recoverSession(k, r, &vars, id, &rec, down) && r.reroute == nil && down && !passingFailure(r.recoveryFailed) {
				ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
				p.setState(ctx, id, session.Lost)
				cancel()
				rec.State = session.Lost
			}
		}
	} else if found && rec.State == session.Lost {
		var vars upstreamVars
		p.recoverSession(k, r, &vars, id, &rec, true)
	}
	if r.reroute != nil {
		return p.reroute(k, r)
	}
	if passingFailure(r.recoveryFailed) {
		p.reply(k, r, reasonInterrupted, "")
		return true
	}
	if !found || rec.State != session.Active {
		if found && rec.State == session.Lost {
			logger.Info("request for a lost session", "session", fingerprint(id))
		}
		sessionsUnknown.Inc()
		if p.settings.unknownPass {
			return false
		}
		p.reply(k, r, reasonNoSession, "")
		return true
	}

	host, portText, err := net.SplitHostPort(rec.Target)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil {
		logger.Error("session record has a bad target", "session", fingerprint(id), "target", rec.Target)
		return false
	}
	if err := k.SetTarget(host, port); err != nil {
		logger.Error("set_target failed", "err", err)
		return false
	}
	// A recovered session's replica knows it by rec.Upstream.
	p.setPinnedHeaders(k, r.headers, rec.Target, host, port, rec.Upstream)
	pinsHit.Inc()
	if waited {
		pinsAfterWait.Inc()
	}
	return false
}

// learnWait is how long a request naming an unknown session waits for its
// record (session.learn_wait_ms): only while records may be written after
// their initialize's answer, in a Log phase (this process's, with
// -log-phase, or another node's through Redis, whose plugin may run with
// -log-phase or be an older version), and in a new process's first
// seconds, when a Kong reload's old process may still hand its memory
// store's sessions over (plugin/takeover.go). A record learned in the
// Response phase exists before the client can name its session.
func (p *Plugin) learnWait() time.Duration {
	if p.settings.redisStore || p.logState().events() || time.Since(processStart) < handoverWindow {
		return p.settings.learnWait
	}
	return 0
}

// processStart is when this plugin process started; handoverWindow bounds
// how long after it an old process's sessions may still arrive: the old
// process sees the takeover within 50 ms and writes its sessions, which
// this one merges within 50 ms more.
var processStart = time.Now()

const handoverWindow = 5 * time.Second

// decoyID is a valid session id no one has: 32 random bytes, hex.
func decoyID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "mcp-relay-decoy-" + hex.EncodeToString(b[:])
}

// lookup asks the store first without waiting, so a wait (a record learned
// in a Log phase, after its answer) is visible in the metrics. Stores bound their own calls (the wait, each
// Redis command's timeout): a deadline here would only cost allocations.
func (p *Plugin) lookup(id string, wait time.Duration) (rec session.Record, found, waited bool, err error) {
	ctx := context.Background()
	start := time.Now()
	rec, found, err = p.store.Lookup(ctx, id, 0)
	if err == nil && !found && wait > 0 {
		waited = true
		rec, found, err = p.store.Lookup(ctx, id, wait)
	}
	lookupLatency.Observe(time.Since(start).Seconds())
	return rec, found, waited && found, err
}

func (p *Plugin) storeTimeout() time.Duration {
	return p.settings.storeTimeout
}
