package handler

import (
	"time"

	"github.com/tidwall/gjson"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/logging"
	"github.com/mcp-relay/mcp-relay/session"
)

// logger is the process's one logger (package logging): every line goes to
// stderr, which Kong copies into its error log at info; lines at notice and
// above also reach Kong's log at their level (flushKongLog). Values are
// quoted, so header values cannot forge lines.
var logger = logging.Logger.With("plugin", "mcp-relay")

// log runs only when Kong sends Log events (-log-phase: logphase.go). It
// learns the new sessions the Response phase could not (learnHints) from
// what Kong saved of the finished request: kong.log.serialize()'s balancer
// tries name the replica Kong chose. Kong runs it in a timer after the
// client has the answer, for every request; it makes no PDK call unless
// such an answer is in flight. Access covers the race with the learn wait.
func (p *Plugin) log(k kong.PDK) {
	defer p.catchPanic(k, "log", nil)
	p.logState().saw()
	flushKongLog(k)
	if p.store == nil || (!p.hints.pending() && !reroutes.any() && !panicTest) {
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
	if f.recovery != "" { // a recovery's initialize (reroute.go)
		rerouteLogged(f.recovery, f.status)
		return
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
	// Created is when the initialize reached Kong: a replica found gone
	// after that may have forgotten the session before this Log ran.
	var created time.Time
	if f.started > 0 {
		created = time.UnixMilli(f.started)
	}
	p.recordSession(f.responseSession, session.Record{Target: f.target, Consumer: f.consumer, Init: init, Service: f.service,
		Created: created})
}
