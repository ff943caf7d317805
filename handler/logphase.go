package handler

import "sync/atomic"

// Kong runs a Go plugin's Log phase for every request of every route the
// plugin is on when its -dump lists the phase, and never otherwise
// (kong/runloop/plugin_servers/plugin.lua build_phases): about 70 µs of
// Kong's CPU per request, measured on Kong 3.9.1, even when the plugin's
// Log handler returns at once. mcp-relay learns new sessions in the
// initialize's Response phase instead, which Kong runs anyway, so it
// declares no Log phase unless started with -log-phase: deployments whose
// initialize answers do not name their replica (routes with preserve_host,
// targets given by name, an upstream host_header) need Kong's balancer
// tries, which only the Log phase's kong.log.serialize() carries.
type logPhaseState struct {
	declared atomic.Bool // started with -log-phase: -dump lists the phase
	seen     atomic.Bool // a Log event arrived
}

// logPhase is the process's: every instance shares it (tests give an
// instance its own).
var logPhase = &logPhaseState{}

// DeclareLogPhase records that the process runs with -log-phase, so that
// Kong was told (-dump) to send Log events.
func DeclareLogPhase(on bool) { logPhase.declared.Store(on) }

// Phases are the phases -dump declares.
func Phases() []string {
	if logPhase.declared.Load() {
		return []string{"access", "response", "log"}
	}
	return []string{"access", "response"}
}

// events reports whether Kong sends this process Log events: it was
// started with -log-phase, or one arrived (-dump had the flag, the server
// not).
func (l *logPhaseState) events() bool { return l.declared.Load() || l.seen.Load() }

// saw records a Log event.
func (l *logPhaseState) saw() {
	if !l.seen.Load() {
		l.seen.Store(true)
	}
}

// logState is the instance's log-phase state (the process's unless a test
// gave it its own; an instance whose configuration was refused has none).
func (p *Plugin) logState() *logPhaseState {
	if p.logs == nil {
		return logPhase
	}
	return p.logs
}
