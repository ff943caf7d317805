package standin

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// RequestRecord is what the stand-in saw of one request: the events sent to
// the plugin and its PDK calls, each one round trip over the socket.
type RequestRecord struct {
	ID       string // Kong's request id (X-Kong-Request-Id)
	Method   string // the client's method
	Path     string // the client's request URI
	Route    string // matched route's name (or id); "" when none matched
	Status   int    // status sent to the client
	Consumer string // authenticated consumer's username (or id)
	// Events are the plugin events in the order they were sent
	// ("rewrite", "access", "response", "log"); a retried event (after
	// "no plugin instance" or "closed") appears again.
	Events []string
	// Calls counts PDK calls by phase, then method name
	// (Calls["access"]["kong.request.get_header"]).
	Calls map[string]map[string]int
	// InstanceStarts counts cmd_start_instance round trips made for it.
	InstanceStarts int
	// Exited: the response came from kong.response.exit/error (a plugin's
	// or Kong's own, e.g. key-auth), not from the upstream.
	Exited bool
	// Buffered: buffered proxying ran (the Response event could run).
	Buffered bool
	// Target is the address the last try connected to ("ip:port"), or the
	// one given to kong.service.set_target.
	Target string
	Tries  []Try
	// Serialized is cjson.encode(kong.log.serialize()) as the Log phase saw
	// it: what Kong's logging plugins send. Without a Log event it is
	// computed at the end of the request for nodes with OnRecord, else "".
	Serialized string
	// Errors are the Lua and plugin-server errors Kong logged for it.
	Errors []string
	Start  time.Time
	// Duration runs until the response was complete (before the Log event).
	Duration time.Duration
}

// Try is one balancer try.
type Try struct {
	IP    string
	Port  int
	State string // "failed" for a failed try
	Code  int
}

// RoundTrips counts the socket round trips of the request: events, PDK
// calls and instance starts.
func (r RequestRecord) RoundTrips() int {
	n := len(r.Events) + r.InstanceStarts
	for _, m := range r.Calls {
		for _, c := range m {
			n += c
		}
	}
	return n
}

// PhaseCalls counts the PDK calls made in one phase.
func (r RequestRecord) PhaseCalls(phase string) int {
	n := 0
	for _, c := range r.Calls[phase] {
		n += c
	}
	return n
}

// HasEvent reports whether the event ran.
func (r RequestRecord) HasEvent(ev string) bool {
	for _, e := range r.Events {
		if e == ev {
			return true
		}
	}
	return false
}

// String is the one-line summary the CLI prints.
func (r RequestRecord) String() string {
	var calls []string
	phases := make([]string, 0, len(r.Calls))
	for p := range r.Calls {
		phases = append(phases, p)
	}
	sort.Strings(phases)
	for _, p := range phases {
		var ms []string
		for m, c := range r.Calls[p] {
			ms = append(ms, fmt.Sprintf("%s=%d", strings.TrimPrefix(m, "kong."), c))
		}
		sort.Strings(ms)
		calls = append(calls, fmt.Sprintf("%s[%s]", p, strings.Join(ms, " ")))
	}
	flags := ""
	if r.Exited {
		flags += " exited"
	}
	if r.Buffered {
		flags += " buffered"
	}
	if r.Target != "" {
		flags += " target=" + r.Target
	}
	return fmt.Sprintf("%s %s %d events=%s calls=%s rt=%d%s (%v)", r.Method, r.Path, r.Status,
		strings.Join(r.Events, ","), strings.Join(calls, " "), r.RoundTrips(), flags, r.Duration.Round(time.Millisecond))
}

// Totals are the node's cumulative counters.
type Totals struct {
	Requests       int
	Events         map[string]int // by event name
	Calls          map[string]int // by PDK method
	InstanceStarts int
	RoundTrips     int
	Dropped        int // records not delivered because Records() was full
}

// Totals returns a copy of the cumulative counters.
func (n *Node) Totals() Totals {
	n.totalsMu.Lock()
	defer n.totalsMu.Unlock()
	t := n.totals
	t.Events = map[string]int{}
	t.Calls = map[string]int{}
	for k, v := range n.totals.Events {
		t.Events[k] = v
	}
	for k, v := range n.totals.Calls {
		t.Calls[k] = v
	}
	return t
}

func (n *Node) deliver(rec RequestRecord) {
	n.totalsMu.Lock()
	n.totals.Requests++
	for _, e := range rec.Events {
		n.totals.Events[e]++
	}
	for _, m := range rec.Calls {
		for k, c := range m {
			n.totals.Calls[k] += c
		}
	}
	n.totals.InstanceStarts += rec.InstanceStarts
	n.totals.RoundTrips += rec.RoundTrips()
	dropped := false
	select {
	case n.records <- rec:
	default:
		n.totals.Dropped++
		dropped = true
	}
	n.totalsMu.Unlock()
	_ = dropped
	if n.opts.OnRecord != nil {
		n.opts.OnRecord(rec)
	}
}

// copyRecord copies the maps of a record for delivery.
func copyRecord(r *RequestRecord) RequestRecord {
	out := *r
	out.Events = append([]string(nil), r.Events...)
	out.Errors = append([]string(nil), r.Errors...)
	out.Tries = append([]Try(nil), r.Tries...)
	out.Calls = map[string]map[string]int{}
	for p, m := range r.Calls {
		mm := map[string]int{}
		for k, v := range m {
			mm[k] = v
		}
		out.Calls[p] = mm
	}
	return out
}
