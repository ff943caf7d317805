package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/mcp-relay/mcp-relay/test/cmd/bench/plugins/pdkcalls"
)

// probeCalls are what the probe's Response phase asks Kong, in a buffered
// request that Kong balanced to one of two targets.
var probeCalls = []string{"get_var:upstream_host", "get_var:upstream_addr", "get_ctx:balancer_data",
	"serialize", "get_route", "get_service"}

// probeRoutes: targets by IP and by host name, with and without preserve_host.
func probeRoutes() []kongRoute {
	var routes []kongRoute
	for _, svc := range []string{"probe-ip", "probe-name"} {
		for _, preserve := range []bool{false, true} {
			name := svc
			if preserve {
				name += "-preserve"
			}
			routes = append(routes, kongRoute{name: name, service: svc, plugin: "bench-access-response", preserveHost: preserve,
				config: map[string]any{"response": probeCalls, "report": true}})
		}
	}
	return append(routes, kongRoute{name: "probe-retry", service: "probe-retry", plugin: "bench-access-response",
		config: map[string]any{"response": []string{"get_var:upstream_host"}, "report": true}},
		// Would dropping the request's collected plugins skip the Log event?
		kongRoute{name: "probe-drop-plugins", service: "probe-ip", plugin: "bench-access-log",
			config: map[string]any{"access": []string{"clear_ctx:plugins"}}})
}

// dropPluginsProbe sends one request through probe-drop-plugins and says
// what Kong answered and logged.
func dropPluginsProbe(client *http.Client, n *kongNode) string {
	logSize := len(n.node.ErrorLog())
	res, err := do(client, mcpPost(rpcInit, "apikey", demoKey).httpRequest(n.url("probe-drop-plugins")))
	if err != nil {
		return "the request failed: " + err.Error()
	}
	return fmt.Sprintf("Kong answered %d; its error log: %s", res.Status, newErrors(n.node.ErrorLog(), logSize))
}

// probeUpstreams are two targets that record, per X-Probe-Id, which of
// them served the request and the Host it came with.
type probeUpstreams struct {
	mu    sync.Mutex
	seen  map[string]string // probe id → "target <name>, Host <host>"
	ports []string
	dead  string // a loopback port nothing listens on
	stops []func()
}

func startProbeUpstreams(ctx context.Context) (*probeUpstreams, error) {
	p := &probeUpstreams{seen: map[string]string{}}
	for _, name := range []string{"A", "B"} {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			p.mu.Lock()
			p.seen[r.Header.Get("X-Probe-Id")] = fmt.Sprintf("%s (Host `%s`)", name, r.Host)
			p.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Mcp-Session-Id", "probe-session-"+name)
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"probe","version":"1"}}}`)
		})
		addr, stop, err := serve(ctx, h)
		if err != nil {
			p.close()
			return nil, err
		}
		p.stops = append(p.stops, stop)
		p.ports = append(p.ports, addr[strings.LastIndexByte(addr, ':')+1:])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.close()
		return nil, err
	}
	p.dead = ln.Addr().String()
	_ = ln.Close()
	return p, nil
}

// retryTargets are A and a target that refuses connections: Kong retries
// every request balanced to it on A (the upstream has no health checks).
func (p *probeUpstreams) retryTargets() []string {
	return []string{"127.0.0.1:" + p.ports[0], p.dead}
}

func (p *probeUpstreams) ipTargets() []string {
	return []string{"127.0.0.1:" + p.ports[0], "127.0.0.1:" + p.ports[1]}
}

func (p *probeUpstreams) nameTargets() []string {
	return []string{"localhost:" + p.ports[0], "localhost:" + p.ports[1]}
}

func (p *probeUpstreams) targetName(hostPort string) string {
	for i, port := range p.ports {
		if strings.HasSuffix(hostPort, ":"+port) {
			return string(rune('A' + i))
		}
	}
	if hostPort == p.dead {
		return "dead"
	}
	return "?"
}

func (p *probeUpstreams) close() {
	for _, s := range p.stops {
		s()
	}
	p.stops = nil
}

// probeResult is one probe request: one call, what it returned or how Kong
// failed, and which target served the request with which Host.
type probeResult struct {
	route, call string
	saw         string
	outcome     probeOutcome
	err         error
}

type probeOutcome struct {
	Call  string          `json:"call"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
}

// runProbes sends one initialize per probe route and call (six through
// probe-retry, half of which Kong first sends to the dead target).
func runProbes(client *http.Client, n *kongNode) (out []probeResult, refused int) {
	seq := 0
	for _, r := range probeRoutes() {
		if r.plugin != "bench-access-response" {
			continue
		}
		calls := probeCalls
		if r.name == "probe-retry" {
			logSize := len(n.node.ErrorLog())
			defer func() {
				refused = strings.Count(string(n.node.ErrorLog()[logSize:]), "Connection refused) while connecting to upstream")
			}()
			calls = []string{"get_var:upstream_host", "get_var:upstream_host", "get_var:upstream_host",
				"get_var:upstream_host", "get_var:upstream_host", "get_var:upstream_host"}
		}
		for _, call := range calls {
			seq++
			id := strconv.Itoa(seq)
			pr := probeResult{route: r.name, call: call}
			logSize := len(n.node.ErrorLog())
			req := mcpPost(rpcInit, "apikey", demoKey, "X-Probe-Id", id, pdkcalls.ProbeHeader, call).httpRequest(n.url(r.name))
			res, err := do(client, req)
			var list []probeOutcome
			switch {
			case err != nil:
			case res.Status != 200:
				err = fmt.Errorf("answered %d; Kong's error log: %s", res.Status, newErrors(n.node.ErrorLog(), logSize))
			default:
				err = json.Unmarshal(res.Body, &list)
				if err == nil && len(list) != 1 {
					err = fmt.Errorf("report of %d calls: %.200s", len(list), res.Body)
				}
			}
			if err == nil {
				pr.outcome = list[0]
			}
			n.probe.mu.Lock()
			pr.saw = n.probe.seen[id]
			n.probe.mu.Unlock()
			pr.err = err
			out = append(out, pr)
		}
	}
	return out, refused
}

// newErrors are the error lines Kong logged after offset, without their
// time stamp and process ids.
func newErrors(log []byte, offset int) string {
	if offset > len(log) {
		offset = 0
	}
	var lines []string
	for _, l := range strings.Split(string(log[offset:]), "\n") {
		if i := strings.Index(l, "[error]"); i >= 0 {
			l = l[i:]
			if j := strings.Index(l, ": *"); j >= 0 { // "[error] 123#123: *45 ..."
				if k := strings.IndexByte(l[j+3:], ' '); k >= 0 {
					l = "[error] " + l[j+3+k+1:]
				}
			}
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "nothing"
	}
	return strings.Join(lines, "; ")
}

// summary is a short, readable form of a call's value.
func (o probeOutcome) summary(p *probeUpstreams) string {
	if o.Error != "" {
		return "error: " + o.Error
	}
	var v any
	if len(o.Value) == 0 || json.Unmarshal(o.Value, &v) != nil || v == nil {
		return "nil (nothing)"
	}
	switch o.Call {
	case "get_ctx:balancer_data":
		m, _ := v.(map[string]any)
		return "`" + compact(pick(m, "host", "ip", "port", "try_count", "tries")) + "`"
	case "serialize":
		m, _ := v.(map[string]any)
		req, _ := m["request"].(map[string]any)
		hdr, _ := req["headers"].(map[string]any)
		s := pick(m, "tries", "upstream_uri")
		if hdr != nil {
			s["request.headers.host"] = hdr["host"]
		}
		return fmt.Sprintf("%d bytes: `%s`", len(o.Value), compact(s))
	case "get_route", "get_service":
		m, _ := v.(map[string]any)
		return fmt.Sprintf("ok: name `%v` (%d fields)", m["name"], len(m))
	}
	s := fmt.Sprint(v)
	if str, ok := v.(string); ok {
		s = "`" + str + "`"
		if t := p.targetName(str); t != "?" {
			s += " (target " + t + ")"
		}
	}
	return s
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
