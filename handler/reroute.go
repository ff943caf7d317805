package handler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/handler/replica"
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/session"
)

// Recovery through Kong's balancer. A recovery opens the new upstream
// session on a replica the process knows to answer (recovery.go); a fresh
// node, or one whose known replicas all died or left, knows none, and the
// PDK cannot list an upstream's targets. Then the request that needs the
// recovery (a POST, or a GET stream's request) goes upstream as the
// session's replayed initialize, balanced by Kong as a new session is:
// health checks and retries choose a live replica. It stays buffered, and
// in the Response phase the plugin learns which target Kong chose (the
// Host Kong set for it, upstream_host), sends notifications/initialized
// there, records the recovery, and answers the client's own request:
//
//   - a POST Kong would have buffered (lists, notifications, answers to
//     the server's questions) is sent again to the new upstream session,
//     and its answer returned;
//   - a POST whose answer streams (tools/call: progress, elicitation) is
//     answered 307 to its own URL: the client sends it again, and it is
//     pinned and streamed like any request of the recovered session (the
//     TypeScript SDK and Go's net/http follow a 307 within the origin with
//     the same method and body; the tool runs once, on the new session);
//   - a GET stream is answered with an SSE stream that ends at once with
//     "retry: 500": clients reconnect it, pinned to the recovered session.
//
// Concurrent requests of the session wait for it (single flight; with
// Redis, the claim stays taken until the Response phase). When every
// target fails, Kong answers 502 and skips Response: the recovery ends in
// the Log phase (with -log-phase) or when overdue, its waiters are
// answered recovery_interrupted (503, the session stands), and the
// session's next request tries again.
//
// The chosen target is told as for a new session (balanced.go): not with
// the route's preserve_host, nor for a target given by name or an
// upstream's host_header; those recoveries fail as target_unknown.

// hRecovery marks the request Kong sends as a recovery's initialize, for
// the Log phase (kong.log.serialize() has the request headers); Response
// has the request's note. Its value names the recovery.
const hRecovery = "x-mcp-relay-recovery"

// reroute is one recovery through Kong's balancer, from Access to Response.
type reroute struct {
	token    string
	key      flightKey
	root, id string
	seen     session.Record // the record Access found for id
	service  string
	init     string
	dead     bool
	vars     upstreamVars
	release  func() // the shared store's claim; nil without one

	// The client's request, to answer once the session is recovered.
	method  string
	body    []byte
	headers map[string][]string

	start time.Time
	done  chan struct{}
	once  sync.Once
	out   recovered
}

// rerouteWait bounds a recovery through Kong's balancer, as the plugin
// bounds its own initialize to a replica (a variable for the tests).
var rerouteWait = replica.AnswerTimeout

// reroutes are the recoveries Kong's balancer is running in this process.
var reroutes = &rerouteSet{byToken: map[string]*reroute{}, byKey: map[flightKey]*reroute{}}

type rerouteSet struct {
	mu      sync.Mutex
	byToken map[string]*reroute
	byKey   map[flightKey]*reroute
	n       atomic.Int32
}

// any tells, without a lock, whether a recovery is under way: only then do
// Response and Log look for its marker.
func (s *rerouteSet) any() bool { return s.n.Load() > 0 }

func (s *rerouteSet) forKey(k flightKey) *reroute {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[k]
}

func (s *rerouteSet) byTok(token string) *reroute {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byToken[token]
}

func (s *rerouteSet) remove(rr *reroute) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byToken[rr.token] == rr {
		delete(s.byToken, rr.token)
		delete(s.byKey, rr.key)
		s.n.Add(-1)
	}
}

// newReroute registers a recovery of root that Kong's balancer will run
// with request r.
func newReroute(r *request, key flightKey, root, id string, seen session.Record, service, init string, dead bool,
	vars upstreamVars, release func()) *reroute {
	var b [16]byte
	_, _ = rand.Read(b[:])
	rr := &reroute{token: hex.EncodeToString(b[:]), key: key, root: root, id: id, seen: seen, service: service,
		init: init, dead: dead, vars: vars, release: release, method: r.method, headers: r.headers,
		body: append([]byte(nil), r.rpc.Body...), start: time.Now(), done: make(chan struct{})}
	reroutes.mu.Lock()
	reroutes.byToken[rr.token] = rr
	reroutes.byKey[key] = rr
	reroutes.n.Add(1)
	reroutes.mu.Unlock()
	// Kong's 502 skips Response, and Log comes only with -log-phase: the
	// recovery ends by itself, once its initialize is overdue. (A goroutine
	// rather than a timer field: finish may run before any field written
	// after the registration above.)
	overdue := time.NewTimer(rerouteWait)
	go func() {
		defer overdue.Stop()
		select {
		case <-overdue.C:
			rr.finish(recovered{reason: failBalancer})
		case <-rr.done:
		}
	}()
	return rr
}

// finish ends the recovery once: the waiters get out, the claim is freed.
func (rr *reroute) finish(out recovered) bool {
	first := false
	rr.once.Do(func() {
		first = true
		rr.out = out
		reroutes.remove(rr)
		if rr.release != nil {
			// The other nodes wait for the record's event, not the claim:
			// the client's answer need not wait for its release either.
			go rr.release()
		}
		close(rr.done)
	})
	return first
}

// wait is what a concurrent request of the session gets.
func (rr *reroute) wait() recovered {
	t := time.NewTimer(recoverWait)
	defer t.Stop()
	select {
	case <-rr.done:
		return rr.out
	case <-t.C:
		return recovered{reason: failBusy}
	}
}

// mayReroute tells whether the target Kong balances to can be told in the
// Response phase (see above).
func (p *Plugin) mayReroute() bool {
	return p.cfg.Upstream.HostHeader == "" && p.hosts.bits.Load()&hostRulePreserve == 0
}

// reroute turns r, in Access, into rr's initialize: method POST, the
// initialize as body, no session id, JSON-RPC content headers and the
// marker; it stays buffered (Access then leaves the note). Cost: 3 PDK
// calls, 4 for a GET.
func (p *Plugin) reroute(k kong.PDK, r *request) (exited bool) {
	rr := r.reroute
	err := error(nil)
	if r.method != "POST" {
		err = k.SetUpstreamMethod("POST")
	}
	if err == nil {
		err = k.SetUpstreamBody(replica.InitializeBody(rr.init))
	}
	if err == nil {
		err = k.ClearUpstreamHeader("Mcp-Session-Id")
	}
	if err == nil {
		err = k.SetUpstreamHeaders(map[string][]string{"Content-Type": {"application/json"},
			"Accept": {"application/json, text/event-stream"}, hRecovery: {rr.token}})
	}
	if err != nil {
		logger.Error("session recovery: turning the request into its initialize", "err", err)
		rr.finish(recovered{reason: failKong})
		p.recoveryFailed(rr.root, failKong, "")
		p.reply(k, r, reasonNoSession, "")
		return true
	}
	reroutesStarted.Inc()
	return false
}

// finishReroute is the Response phase of a request Kong sent as the
// recovery token names (headers are the request's, as Access left them).
func (p *Plugin) finishReroute(k kong.PDK, token string, status int) {
	rr := reroutes.byTok(token)
	if rr == nil {
		// Its Access ran in another process, or it timed out: the session
		// is not recovered, and the request cannot be answered as its own.
		logger.Warn("session recovery through Kong's balancer: no recovery under way for this answer")
		r := request{mcp: true}
		p.reply(k, &r, reasonInterrupted, "")
		return
	}
	r := rr.request(p)
	out, reason, detail, refused := p.openReroute(k, rr, status)
	if reason != "" {
		if rr.finish(recovered{reason: reason, refused: refused}) {
			p.recoveryEnded(rr.root, reason, detail, !refused && passingFailure(reason))
		}
		if !refused {
			// Passing (a replica's 5xx, a network error): the session
			// stands, and its next request tries again.
			p.reply(k, &r, reasonInterrupted, "")
			return
		}
		// The replica refused the session's initialize, or the target
		// cannot be told: retrying would not help.
		ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
		p.setState(ctx, rr.id, session.Lost)
		cancel()
		p.reply(k, &r, reasonNoSession, "")
		return
	}
	if !rr.finish(recovered{rec: out}) {
		// It timed out meanwhile; the record is written all the same.
		logger.Warn("session recovered through Kong's balancer after its waiters gave up", "session", fingerprint(rr.root))
	}
	reroutesDone.Inc()
	recoveryLatency.Observe(time.Since(rr.start).Seconds())
	logger.Info("session recovered on the replica Kong's balancer chose", "session", fingerprint(rr.root),
		"from", rr.seen.Target, "to", out.Target)
	rec := p.adopt(rr.id, rr.root, rr.seen, out)
	p.answerRerouted(k, rr, &r, rec)
}

// openReroute reads the initialize's answer, tells the target Kong chose,
// sends notifications/initialized there and records the recovery. refused
// says a failure will not pass by itself.
func (p *Plugin) openReroute(k kong.PDK, rr *reroute, status int) (rec session.Record, reason, detail string, refused bool) {
	if status != 200 {
		return rec, failBalancer, "the replica Kong chose answered the initialize " + strconv.Itoa(status), status/100 == 4
	}
	upstreamID, err := k.ResponseHeader("Mcp-Session-Id")
	if err != nil {
		return rec, failKong, err.Error(), false
	}
	if !validSessionID(upstreamID, p.cfg.Session.MaxIDLength) {
		return rec, failBalancer, "the replica Kong chose answered the initialize without a valid session id", true
	}
	body, err := k.UpstreamBody()
	if err != nil {
		return rec, failKong, err.Error(), false
	}
	version, err := replica.InitializeAnswer("", body)
	if err != nil {
		return rec, failBalancer, err.Error(), true
	}
	b, why, err := p.balancedTarget(k)
	if err != nil {
		return rec, failKong, err.Error(), false
	}
	if why != "" {
		return rec, failTarget, unnamedWhy(why), true
	}
	target := b.target
	call := replica.NewCall(rr.vars.scheme, target, rr.vars.uri, p.pinnedHost(rr.headers, target), rr.headers)
	ctx, cancel := context.WithTimeout(context.Background(), replica.AnswerTimeout)
	defer cancel()
	if err := call.Initialized(ctx, upstreamID, version); err != nil {
		return rec, failBalancer, err.Error(), false
	}
	rec, reason = p.recordRecovery(ctx, rr.root, rr.seen, rr.service, rr.init, target, upstreamID, rr.start)
	return rec, reason, "", false
}

// request is the client's request as Access read it.
func (rr *reroute) request(p *Plugin) request {
	r := newRequest(rr.headers)
	r.method = rr.method
	if len(rr.body) > 0 {
		r.withBody(envelope.Parse(rr.body, p.cfg.Envelope.MaxBodyBytes))
	}
	return r
}

// answerRerouted answers the client's own request on the recovered
// session, pinned with rec.
func (p *Plugin) answerRerouted(k kong.PDK, rr *reroute, r *request, rec session.Record) {
	switch {
	case rr.method != "POST":
		// An SSE stream that ends at once and says when to reconnect.
		k.Exit(200, []byte("retry: 500\n\n"), map[string][]string{"Content-Type": {"text/event-stream"}, "Cache-Control": {"no-cache"}})
	case r.rpc.Kind == envelope.Single && !r.rpc.IsNotification() && !r.rpc.IsResponse() && !p.buffers(r.rpc.Method):
		uri, err := k.NginxVar("request_uri")
		if err != nil {
			logger.Error("reading request_uri", "err", err)
			p.reply(k, r, reasonInterrupted, "")
			return
		}
		k.Exit(307, nil, map[string][]string{"Location": {selfReference(uri)}, "Retry-After": {"0"}})
	default:
		sid := rec.Upstream
		if sid == "" {
			sid = rr.id
		}
		if !p.resend(k, rr.headers, r, rec.Target, sid, rr.vars) {
			p.reply(k, r, reasonInterrupted, "")
		}
	}
}

// selfReference is a relative reference to the request URI uri that
// resolves to the URL the client used even behind a proxy that adds a
// path prefix: its last path segment and the query.
func selfReference(uri string) string {
	path, query, hasQuery := strings.Cut(uri, "?")
	ref := path[strings.LastIndexByte(path, '/')+1:]
	if ref == "" || strings.Contains(ref, ":") {
		ref = "./" + ref
	}
	if hasQuery {
		ref += "?" + query
	}
	return ref
}

// rerouteLogged is Log's part: a recovery whose request Kong answered
// without a Response phase (its 502 when no target took it) ends failed.
func rerouteLogged(token string, status int) {
	if rr := reroutes.byTok(token); rr != nil && rr.finish(recovered{reason: failBalancer}) {
		recoveryFailures.WithLabelValues(failBalancer).Inc()
		logger.Warn("session not recovered: no replica Kong's balancer chose opened a session",
			"session", fingerprint(rr.root), "status", status)
	}
}
