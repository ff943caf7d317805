package standin

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Healthchecks is an upstream's `healthchecks` (kong/db/schema/entities/
// upstreams.lua of Kong 3.9, with its defaults), as Kong hands it to
// lua-resty-healthcheck (kong/runloop/balancer/healthcheckers.lua
// create_healthchecker). The stand-in implements what a plugin's tests
// need: active probes of type http (tcp ones are off, as in Kong's http
// subsystem), passive counting of proxied requests' outcomes, and the
// balancer skipping unhealthy targets.
type Healthchecks struct {
	Active  ActiveHealthcheck
	Passive PassiveHealthcheck
}

// ActiveHealthcheck is healthchecks.active. Intervals and the timeout are in
// seconds; an interval of 0 turns the probes of targets in that state off.
type ActiveHealthcheck struct {
	Type      string // "http" (default), "tcp"; https and grpc are not emulated
	Timeout   float64
	HTTPPath  string
	Headers   map[string][]string // sent with each http probe
	Healthy   HealthyCounters
	Unhealthy UnhealthyCounters
}

// PassiveHealthcheck is healthchecks.passive (its intervals do not exist).
type PassiveHealthcheck struct {
	Type      string
	Healthy   HealthyCounters
	Unhealthy UnhealthyCounters
}

// HealthyCounters: Successes in a row make an unhealthy target healthy
// again (0: never); HTTPStatuses count as successes.
type HealthyCounters struct {
	Interval     float64
	Successes    int
	HTTPStatuses []int
}

// UnhealthyCounters: failures of one kind in a row that make a healthy
// target unhealthy (0: that kind never does); HTTPStatuses count as HTTP
// failures.
type UnhealthyCounters struct {
	Interval     float64
	TCPFailures  int
	Timeouts     int
	HTTPFailures int
	HTTPStatuses []int
}

// Kong 3.9's defaults (upstreams.lua healthchecks_defaults).
func defaultHealthchecks() *Healthchecks {
	return &Healthchecks{
		Active: ActiveHealthcheck{Type: "http", Timeout: 1, HTTPPath: "/",
			Healthy:   HealthyCounters{HTTPStatuses: []int{200, 302}},
			Unhealthy: UnhealthyCounters{HTTPStatuses: []int{429, 404, 500, 501, 502, 503, 504, 505}},
		},
		Passive: PassiveHealthcheck{Type: "http",
			Healthy: HealthyCounters{HTTPStatuses: []int{200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
				300, 301, 302, 303, 304, 305, 306, 307, 308}},
			Unhealthy: UnhealthyCounters{HTTPStatuses: []int{429, 500, 503}},
		},
	}
}

// parseHealthchecks reads an upstream's healthchecks over Kong's defaults.
func (l *deckLoader) parseHealthchecks(v any, where string) *Healthchecks {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	h := defaultHealthchecks()
	num := func(m map[string]any, k string, dst *float64) {
		if x, ok := m[k]; ok && x != nil {
			f, ok := toFloat(x)
			if !ok || f < 0 || f > 65535 {
				l.errorf("%s.%s: value should be between 0 and 65535", where, k)
				return
			}
			*dst = f
		}
	}
	count := func(m map[string]any, k string, dst *int) {
		if n, ok := intOr(m, k, *dst); ok && n >= 0 && n <= 255 {
			*dst = n
		} else {
			l.errorf("%s.%s: value should be between 0 and 255", where, k)
		}
	}
	statuses := func(m map[string]any, k string, dst *[]int) {
		raw, ok := m[k].([]any)
		if !ok {
			return
		}
		var out []int
		for _, x := range raw {
			f, ok := toFloat(x)
			n := int(f)
			if !ok || f != float64(n) || n < 100 || n > 999 {
				l.errorf("%s.%s: value should be between 100 and 999", where, k)
				return
			}
			out = append(out, n)
		}
		*dst = out
	}
	sub := func(m map[string]any, k string) map[string]any { s, _ := m[k].(map[string]any); return s }
	if a := sub(m, "active"); a != nil {
		if t := str(a, "type"); t != "" {
			h.Active.Type = t
		}
		if h.Active.Type != "http" && h.Active.Type != "tcp" {
			l.errorf("%s.active.type: the stand-in probes with http or tcp only (got %q)", where, h.Active.Type)
		}
		num(a, "timeout", &h.Active.Timeout)
		if p := str(a, "http_path"); p != "" {
			h.Active.HTTPPath = p
		}
		if hs, ok := a["headers"].(map[string]any); ok {
			h.Active.Headers = map[string][]string{}
			for k, v := range hs {
				vs, _ := v.([]any)
				for _, x := range vs {
					if s, ok := x.(string); ok {
						h.Active.Headers[k] = append(h.Active.Headers[k], s)
					}
				}
			}
		}
		if s := sub(a, "healthy"); s != nil {
			num(s, "interval", &h.Active.Healthy.Interval)
			count(s, "successes", &h.Active.Healthy.Successes)
			statuses(s, "http_statuses", &h.Active.Healthy.HTTPStatuses)
		}
		if s := sub(a, "unhealthy"); s != nil {
			num(s, "interval", &h.Active.Unhealthy.Interval)
			count(s, "tcp_failures", &h.Active.Unhealthy.TCPFailures)
			count(s, "timeouts", &h.Active.Unhealthy.Timeouts)
			count(s, "http_failures", &h.Active.Unhealthy.HTTPFailures)
			statuses(s, "http_statuses", &h.Active.Unhealthy.HTTPStatuses)
		}
	}
	if p := sub(m, "passive"); p != nil {
		if t := str(p, "type"); t != "" {
			h.Passive.Type = t
		}
		if s := sub(p, "healthy"); s != nil {
			count(s, "successes", &h.Passive.Healthy.Successes)
			statuses(s, "http_statuses", &h.Passive.Healthy.HTTPStatuses)
		}
		if s := sub(p, "unhealthy"); s != nil {
			count(s, "tcp_failures", &h.Passive.Unhealthy.TCPFailures)
			count(s, "timeouts", &h.Passive.Unhealthy.Timeouts)
			count(s, "http_failures", &h.Passive.Unhealthy.HTTPFailures)
			statuses(s, "http_statuses", &h.Passive.Unhealthy.HTTPStatuses)
		}
	}
	return h
}

// healthChecker is one upstream's lua-resty-healthcheck instance on one
// node: a state per target address, changed by counters as
// lua-resty-healthcheck's incr_counter does (a success resets the failure
// counters; a failure resets the success counter; reaching a threshold
// flips the state and resets all counters).
type healthChecker struct {
	hc       *Healthchecks
	upstream string
	log      *nodeLog

	mu      sync.Mutex
	targets map[string]*targetHealth // "ip:port"
	stop    chan struct{}
	done    sync.WaitGroup
}

type targetHealth struct {
	addr                                 string
	unhealthy                            bool
	successes, tcp, timeouts, httpFailed int
}

// health outcome kinds (lua-resty-healthcheck report_*).
const (
	hcSuccess = iota
	hcTCPFailure
	hcTimeout
	hcHTTPFailure
)

func newHealthChecker(u *Upstream, log *nodeLog, addrs []*address) *healthChecker {
	if u.Healthchecks == nil {
		return nil
	}
	hc := u.Healthchecks
	if hc.Active.Type == "tcp" {
		// create_healthchecker (kong/runloop/balancer/healthcheckers.lua)
		// turns active checks of type tcp off in the http subsystem, where
		// this node proxies: they run only in Kong's stream subsystem.
		off := *hc
		off.Active.Healthy.Interval, off.Active.Unhealthy.Interval = 0, 0
		hc = &off
	}
	h := &healthChecker{hc: hc, upstream: u.Name, log: log,
		targets: map[string]*targetHealth{}, stop: make(chan struct{})}
	for _, a := range addrs {
		k := net.JoinHostPort(a.ip, strconv.Itoa(a.port))
		h.targets[k] = &targetHealth{addr: k}
	}
	a := h.hc.Active
	if a.Healthy.Interval > 0 || a.Unhealthy.Interval > 0 {
		h.done.Add(1)
		go h.probeLoop()
	}
	return h
}

// available is the balancer's check (round_robin.lua getPeer skips
// addresses whose `available` the healthchecker's callback cleared).
func (h *healthChecker) available(ip string, port int) bool {
	if h == nil {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.targets[net.JoinHostPort(ip, strconv.Itoa(port))]
	return t == nil || !t.unhealthy
}

// passive reports a proxied try's outcome: Kong.balancer reports each failed
// try before the next (kong/init.lua: report_timeout for a 504, else
// report_tcp_failure) and the final status after the response
// (balancer.after_balance: report_http_status).
func (h *healthChecker) passive(ip string, port int, failed bool, code int) {
	if h == nil {
		return
	}
	p := h.hc.Passive
	switch {
	case failed && code == 504:
		h.report(ip, port, hcTimeout, p.Healthy, p.Unhealthy, "passive")
	case failed:
		h.report(ip, port, hcTCPFailure, p.Healthy, p.Unhealthy, "passive")
	case slices.Contains(p.Healthy.HTTPStatuses, code):
		h.report(ip, port, hcSuccess, p.Healthy, p.Unhealthy, "passive")
	case slices.Contains(p.Unhealthy.HTTPStatuses, code):
		h.report(ip, port, hcHTTPFailure, p.Healthy, p.Unhealthy, "passive")
	}
}

func (h *healthChecker) report(ip string, port int, kind int, ok HealthyCounters, bad UnhealthyCounters, source string) {
	key := net.JoinHostPort(ip, strconv.Itoa(port))
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.targets[key]
	if t == nil {
		return
	}
	flip := func(unhealthy bool, why string) {
		t.unhealthy = unhealthy
		t.successes, t.tcp, t.timeouts, t.httpFailed = 0, 0, 0, 0
		state := "healthy"
		if unhealthy {
			state = "unhealthy"
		}
		h.log.logf(lvlWarn, "[healthcheck] (%s) %s target %s is %s (%s %s)", h.upstream, source, key, state, source, why)
	}
	if kind == hcSuccess {
		t.tcp, t.timeouts, t.httpFailed = 0, 0, 0
		if t.unhealthy {
			t.successes++
			if ok.Successes > 0 && t.successes >= ok.Successes {
				flip(false, fmt.Sprintf("%d successes", t.successes))
			}
		}
		return
	}
	t.successes = 0
	if t.unhealthy {
		return
	}
	var n, limit int
	var what string
	switch kind {
	case hcTCPFailure:
		t.tcp++
		n, limit, what = t.tcp, bad.TCPFailures, "tcp failures"
	case hcTimeout:
		t.timeouts++
		n, limit, what = t.timeouts, bad.Timeouts, "timeouts"
	case hcHTTPFailure:
		t.httpFailed++
		n, limit, what = t.httpFailed, bad.HTTPFailures, "http failures"
	}
	if limit > 0 && n >= limit {
		flip(true, fmt.Sprintf("%d %s", n, what))
	}
}

// probeLoop is the active checker: healthy targets every
// healthy.interval, unhealthy ones every unhealthy.interval (lua-resty-
// healthcheck runs one timer per list), each probe bounded by timeout.
func (h *healthChecker) probeLoop() {
	defer h.done.Done()
	a := h.hc.Active
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := map[bool]time.Time{}
	for {
		select {
		case <-h.stop:
			return
		case now := <-tick.C:
			for _, unhealthy := range []bool{false, true} {
				iv := a.Healthy.Interval
				if unhealthy {
					iv = a.Unhealthy.Interval
				}
				if iv <= 0 || now.Sub(last[unhealthy]) < time.Duration(iv*float64(time.Second)) {
					continue
				}
				last[unhealthy] = now
				for _, key := range h.list(unhealthy) {
					h.probe(key)
				}
			}
		}
	}
}

func (h *healthChecker) list(unhealthy bool) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for k, t := range h.targets {
		if t.unhealthy == unhealthy {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// probe is lua-resty-healthcheck's run_single_check: connect (a refused or
// failed connect is a tcp failure, a timed out one a timeout); for http,
// GET http_path and classify the status by the active lists.
func (h *healthChecker) probe(key string) {
	a := h.hc.Active
	host, portText, _ := net.SplitHostPort(key)
	port, _ := strconv.Atoi(portText)
	timeout := time.Duration(a.Timeout * float64(time.Second))
	c, err := net.DialTimeout("tcp", key, timeout)
	if err != nil {
		kind := hcTCPFailure
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, syscall.ECONNREFUSED) {
			kind = hcTimeout
		}
		h.report(host, port, kind, a.Healthy, a.Unhealthy, "active")
		return
	}
	defer c.Close()
	if a.Type == "tcp" {
		h.report(host, port, hcSuccess, a.Healthy, a.Unhealthy, "active")
		return
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	var hdr strings.Builder
	for k, vs := range a.Headers {
		for _, v := range vs {
			hdr.WriteString(k + ": " + v + "\r\n")
		}
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\n%sHost: %s\r\nConnection: close\r\n\r\n", a.HTTPPath, hdr.String(), key); err != nil {
		h.report(host, port, hcTCPFailure, a.Healthy, a.Unhealthy, "active")
		return
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	var status int
	if f := strings.Fields(string(buf[:n])); (err == nil || n > 0) && len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
		status, _ = strconv.Atoi(f[1])
	}
	switch {
	case status == 0:
		h.report(host, port, hcTimeout, a.Healthy, a.Unhealthy, "active")
	case slices.Contains(a.Healthy.HTTPStatuses, status):
		h.report(host, port, hcSuccess, a.Healthy, a.Unhealthy, "active")
	case slices.Contains(a.Unhealthy.HTTPStatuses, status):
		h.report(host, port, hcHTTPFailure, a.Healthy, a.Unhealthy, "active")
	}
}

func (h *healthChecker) close() {
	if h == nil {
		return
	}
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	h.done.Wait()
}
