package handler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"runtime/debug"
	"strconv"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/logging"
	"github.com/mcp-relay/mcp-relay/session"
)

// logger is the process's one logger (package logging): every line goes to
// stderr, which Kong copies into its error log at info; lines at notice and
// above also reach Kong's log at their level, through the Log phase
// (flushKongLog). Values are quoted, so header values cannot forge lines.
var logger = logging.Logger.With("plugin", "mcp-relay")

// log learns new sessions from what Kong saved of the finished request
// (kong.log.serialize(): the only place Kong tells which replica it chose).
// Kong runs it in a timer after the client has the answer, for every
// request; it makes no PDK call unless the Response phase saw an answer
// create a session (learnHints). Access covers the race with the learn wait.
func (p *Plugin) log(k kong.PDK) {
	defer p.recoverPhase(k, "log", nil)
	flushKongLog(k)
	if p.store == nil || (!p.hints.pending() && !panicTest) {
		return
	}
	data, err := k.Serialize()
	if err != nil {
		logger.Error("kong.log.serialize failed", "err", err)
		return
	}
	f := readServed(data)
	p.hosts.learn(data)
	if panicTest && gjson.GetBytes(data, "request.headers.x-mcp-relay-panic").Str == "log" {
		panic("injected panic (panictest build)")
	}
	if f.modern || f.requestSession != "" || f.responseSession == "" {
		return
	}
	hinted, init := p.hints.takeInit(f.responseSession, time.Now())
	if !hinted {
		return
	}
	if f.status < 200 || f.status > 299 || f.target == "" ||
		!validSessionID(f.responseSession, p.cfg.Session.MaxIDLength) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
	defer cancel()
	start := time.Now()
	err = p.store.Learn(ctx, f.responseSession, session.Record{
		Target: f.target, Consumer: f.consumer, Created: start, State: session.Active, Init: init, Service: f.service,
	})
	fleet.learned(f.service, f.target, start)
	storeLatency.WithLabelValues("learn").Observe(time.Since(start).Seconds())
	if err != nil {
		storeErrors.Inc()
		logger.Warn("could not record session", "err", err)
		return
	}
	sessionsLearned.Inc()
}

// ownRecord checks that a finished request really was its session's: an
// active session of this consumer; it returns the session's record. A
// request the plugin answered itself (unknown or someone else's session)
// must never end or lose a session.
func (p *Plugin) ownRecord(ctx context.Context, id, consumer string) (session.Record, bool) {
	if !validSessionID(id, p.cfg.Session.MaxIDLength) {
		return session.Record{}, false
	}
	rec, found, err := p.store.Lookup(ctx, id, 0)
	if err != nil {
		storeErrors.Inc()
		return session.Record{}, false
	}
	return rec, found && rec.State == session.Active &&
		(!p.cfg.Session.BindConsumer || rec.Consumer == consumer)
}

// setState ends or loses a session on every node.
func (p *Plugin) setState(ctx context.Context, id string, state session.State) {
	if state == session.Ended {
		p.storeOp("end", func() error { return p.store.End(ctx, id) })
		sessionsEnded.Inc()
		return
	}
	p.storeOp("lost", func() error { return p.store.MarkLost(ctx, id) })
	sessionsLost.Inc()
	logger.Warn("replica failed: session marked lost", "session", fingerprint(id))
}

func (p *Plugin) storeOp(op string, call func() error) {
	start := time.Now()
	err := call()
	storeLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		storeErrors.Inc()
		logger.Warn("session store failed", "op", op, "err", err)
	}
}

// served is what the Log phase needs of kong.log.serialize().
type served struct {
	status          int
	requestSession  string
	responseSession string
	consumer        string
	target          string // ip:port of the last balancer try
	service         string // the Kong service's id
	modern          bool
}

func readServed(data []byte) served {
	// gjson on a string view: the results reference data, which outlives them.
	js := unsafe.String(unsafe.SliceData(data), len(data))
	res := gjson.GetMany(js,
		"response.status",
		"request.headers.mcp-session-id", "response.headers.mcp-session-id",
		"request.headers.x-consumer-id", "request.headers.mcp-protocol-version", "tries", "service.id")
	f := served{
		status:          int(res[0].Int()),
		requestSession:  headerValue(res[1]),
		responseSession: headerValue(res[2]),
		consumer:        headerValue(res[3]),
		modern:          isModern(headerValue(res[4])),
		service:         res[6].Str,
	}
	if tries := res[5].Array(); len(tries) > 0 {
		last := tries[len(tries)-1]
		ip, port := last.Get("ip").Str, last.Get("port").Int()
		if ip != "" && port > 0 {
			f.target = net.JoinHostPort(ip, strconv.FormatInt(port, 10))
		}
	}
	return f
}

// headerValue reads a serialized header: a string, or an array when the
// header was repeated (then the first, as kong.request.get_header does).
func headerValue(v gjson.Result) string {
	if v.IsArray() {
		return v.Get("0").Str
	}
	return v.Str
}

// recoverPhase turns a panic into a logged error and, where a client is
// still waiting, a 500 envelope (echoing the request's id when Access had
// read it), so the process serving the node lives on.
func (p *Plugin) recoverPhase(k kong.PDK, phase string, r *request) {
	v := recover()
	if v == nil {
		return
	}
	panics.Inc()
	logger.Error("recovered from panic", "phase", phase, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	if phase == "log" {
		return
	}
	defer func() { _ = recover() }() // the connection may be gone
	envelopes.WithLabelValues(reasonInternal.name).Inc()
	k.Exit(500, internalEnvelope(r), jsonOnly)
}

// internalEnvelope answers a request whose handler panicked. The request
// may be what caused the panic: on a second one, answer with id null.
func internalEnvelope(r *request) (body []byte) {
	e := envelope.Error{Code: envelope.CodeInternalError, Message: reasonInternal.message,
		Data: envelope.Data{Status: 500, Reason: reasonInternal.name}}
	defer func() {
		if recover() != nil || len(body) == 0 {
			body, _ = envelope.Append(nil, envelope.Request{}, e)
		}
	}()
	if r != nil {
		body, _ = envelope.Append(nil, r.rpc, e)
	}
	return body
}

// fingerprint names a session in logs without revealing its id.
func fingerprint(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:4])
}
