package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcp-relay/mcp-relay/test/realkong"
)

// benchPlugins are the minimal Go plugins (test/cmd/bench/plugins), one
// plugin server each, as Kong runs every Go plugin. bench-access-1p is
// bench-access under another name, run with GOMAXPROCS=1: does the Go
// runtime's scheduling weigh on a PDK round trip? bench-access-coalesced is
// bench-access on a plugin-server loop that sends each call's frames in one
// write (pdkcalls.ServeCoalesced).
var benchPlugins = []string{"bench-access", "bench-access-log", "bench-access-response", "bench-access-1p", "bench-access-coalesced"}

// baselineName is the plugin name of -kong-baseline's build of mcp-relay.
const baselineName = "mcp-relay-base"

// pluginEnv is the environment a bench plugin starts with.
var pluginEnv = map[string]string{"bench-access-1p": "GOMAXPROCS=1"}

// kongKind is a request kind: the request (for wrk and for the check) and
// what its answer must be, through mcp-relay or not.
type kongKind struct {
	name  string
	req   func(session string) wrkRequest
	check func(r result, relay bool) error
}

// kongVariant is one timed run: a route and a request kind.
type kongVariant struct {
	id    string // route/kind, the name formulas use
	route string
	kind  *kongKind
	short bool // timed in a -short run too
}

const (
	rpcEcho     = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`
	rpcProgress = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"progress","arguments":{"steps":1,"delay_ms":0,"settle_ms":0},"_meta":{"progressToken":"p1"}}}`
	rpcList     = `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`
	rpcInit     = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`
)

var rpcModernEcho = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"},` + modernMeta + `}}`

func mcpPost(body string, header ...string) wrkRequest {
	return wrkRequest{method: http.MethodPost, path: "/mcp", body: body, header: append([]string{
		"Content-Type", "application/json", "Accept", "application/json, text/event-stream"}, header...)}
}

// padHeaders are 16 headers of 256 bytes: a request 4 KiB bigger.
func padHeaders() []string {
	var h []string
	for i := 0; i < 16; i++ {
		h = append(h, fmt.Sprintf("X-Bench-Pad-%02d", i), strings.Repeat("p", 256))
	}
	return h
}

func expect(cond bool, what string, r result) error {
	if cond {
		return nil
	}
	return fmt.Errorf("want %s, got %s", what, r)
}

var (
	kindJSON = &kongKind{name: "pinned tools/call, JSON answer",
		req: func(s string) wrkRequest { return mcpPost(rpcEcho, sessionHeaders(s)...) },
		check: func(r result, _ bool) error {
			return expect(r.Status == 200 && strings.Contains(r.ContentType, "json") && strings.Contains(string(r.Body), "hello"), "200 JSON with hello", r)
		}}
	kindJSONBig = &kongKind{name: "pinned tools/call, JSON answer, 4 KiB more request headers",
		req: func(s string) wrkRequest {
			return mcpPost(rpcEcho, append(sessionHeaders(s), padHeaders()...)...)
		},
		check: kindJSON.check}
	kindSSE = &kongKind{name: "pinned tools/call, SSE answer",
		req: func(s string) wrkRequest { return mcpPost(rpcProgress, sessionHeaders(s)...) },
		check: func(r result, _ bool) error {
			return expect(r.Status == 200 && strings.Contains(r.ContentType, "text/event-stream") && strings.Contains(string(r.Body), "done 1"), "200 SSE with done 1", r)
		}}
	kindInit = &kongKind{name: "initialize",
		req: func(string) wrkRequest { return mcpPost(rpcInit, "apikey", demoKey) },
		check: func(r result, _ bool) error {
			return expect(r.Status == 200 && r.Session != "", "200 with a session id", r)
		}}
	kindModern = &kongKind{name: "2026-07-28 tools/call",
		req: func(string) wrkRequest { return mcpPost(rpcModernEcho, modernHeaders...) },
		check: func(r result, _ bool) error {
			return expect(r.Status == 200 && strings.Contains(string(r.Body), "hello"), "200 with hello", r)
		}}
	kindNonMCP = &kongKind{name: "non-MCP GET (/healthz, Accept: text/html)",
		req: func(string) wrkRequest {
			return wrkRequest{method: http.MethodGet, path: "/healthz", header: []string{"Accept", "text/html", "apikey", demoKey}}
		},
		check: func(r result, _ bool) error {
			return expect(r.Status == 200 && strings.TrimSpace(string(r.Body)) == "ok", "200 ok", r)
		}}
	kindAnon = &kongKind{name: "anonymous initialize (no apikey)",
		req: func(string) wrkRequest { return mcpPost(rpcInit) },
		check: func(r result, relay bool) error {
			if relay {
				return expect(r.Status/100 == 2 && strings.Contains(string(r.Body), `"error"`), "a 2xx JSON-RPC error envelope (wrk counts other statuses as errors)", r)
			}
			return expect(r.Status == 200 && r.Session != "", "200 with a session id", r)
		}}
	kindListPlain = &kongKind{name: "pinned tools/list (buffered), no access rules",
		req: func(s string) wrkRequest { return mcpPost(rpcList, sessionHeaders(s)...) },
		check: func(r result, _ bool) error {
			return expect(r.Status == 200 && strings.Contains(string(r.Body), `"sleep"`), "200 with sleep", r)
		}}
	kindList = &kongKind{name: "pinned tools/list",
		req: func(s string) wrkRequest { return mcpPost(rpcList, sessionHeaders(s)...) },
		check: func(r result, relay bool) error {
			if relay {
				return expect(r.Status == 200 && strings.Contains(string(r.Body), `"echo"`) && !strings.Contains(string(r.Body), `"sleep"`), "200 with echo, without sleep (access rules)", r)
			}
			return expect(r.Status == 200 && strings.Contains(string(r.Body), `"sleep"`), "200 with sleep", r)
		}}
)

// kongRoutes are the node's routes: see kongDeck. Upstream "legacy" is the
// legacy replica of the pinned kinds, "init" another one that takes the
// sessions initialize creates, "modern" the 2026-07-28 server.
func kongRoutes(legacyTarget string, baseline bool) []kongRoute {
	access := func(name string, calls ...string) kongRoute {
		return kongRoute{name: name, service: "legacy", plugin: "bench-access", config: map[string]any{"access": calls, "target": legacyTarget}}
	}
	repeat := func(call string, n int) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = call
		}
		return l
	}
	response := func(name string, calls ...string) kongRoute {
		return kongRoute{name: name, service: "legacy", plugin: "bench-access-response", config: map[string]any{"response": calls}}
	}
	coalesced := func(name string, calls ...string) kongRoute {
		return kongRoute{name: name, service: "legacy", plugin: "bench-access-coalesced", config: map[string]any{"access": calls, "target": legacyTarget}}
	}
	padding := make([]string, 400)
	for i := range padding {
		padding[i] = strings.Repeat("c", 256)
	}
	routes := []kongRoute{
		{name: "none", service: "legacy"},
		{name: "relay", service: "legacy", plugin: "mcp-relay"},
		{name: "relay-rules", service: "legacy", plugin: "mcp-relay", config: authzRelayConfig},
		access("access"),
		{name: "access-log", service: "legacy", plugin: "bench-access-log"},
		access("pinning", "get_headers", "set_target", "set_host"),
		{name: "pinning-1p", service: "legacy", plugin: "bench-access-1p",
			config: map[string]any{"access": []string{"get_headers", "set_target", "set_host"}, "target": legacyTarget}},
		access("get_method-1", "get_method"),
		access("get_method-3", repeat("get_method", 3)...),
		access("get_method-5", repeat("get_method", 5)...),
		access("get_headers-5", repeat("get_headers", 5)...),
		access("get_raw_body-5", repeat("get_raw_body", 5)...),
		access("set_ctx-5", repeat("set_ctx", 5)...),
		access("get_route-5", repeat("get_route", 5)...),
		access("get_service-5", repeat("get_service", 5)...),
		access("buffered", "buffering_on"),
		response("response"),
		response("response-get_var", "get_var:upstream_host"),
		response("response-get_headers", "get_headers"),
		response("response-get_ctx", "get_ctx:mcp_relay"),
		{name: "log-serialize", service: "legacy", plugin: "bench-access-log", config: map[string]any{"log": []string{"serialize"}}},
		{name: "access-bigconfig", service: "legacy", plugin: "bench-access", config: map[string]any{"padding": padding}},
		{name: "none-init", service: "init"},
		{name: "relay-init", service: "init", plugin: "mcp-relay"},
		{name: "none-modern", service: "modern"},
		{name: "relay-modern", service: "modern", plugin: "mcp-relay"},
		coalesced("access-co"),
		coalesced("get_method-5-co", repeat("get_method", 5)...),
		coalesced("pinning-co", "get_headers", "set_target", "set_host"),
		access("pinning-body", "get_headers", "get_raw_body", "set_target", "set_host"),
		// mcp-relay's calls on a pinned tools/call, from a plugin with a
		// Response phase and no Log phase, as mcp-relay declares.
		{name: "relay-calls", service: "legacy", plugin: "bench-access-response", config: map[string]any{
			"access": []string{"get_headers", "get_raw_body", "set_target", "set_host", "buffering_off"}, "target": legacyTarget}},
	}
	if baseline {
		routes = append(routes,
			kongRoute{name: "base", service: "legacy", plugin: baselineName},
			kongRoute{name: "base-rules", service: "legacy", plugin: baselineName, config: authzRelayConfig},
			kongRoute{name: "base-init", service: "init", plugin: baselineName},
			kongRoute{name: "base-modern", service: "modern", plugin: baselineName})
	}
	return append(routes, probeRoutes()...)
}

// kongVariants are the timed runs. With baseline, each mcp-relay run has a
// twin through -kong-baseline's build (route base*), right after it.
func kongVariants(baseline bool) []kongVariant {
	v := func(route string, k *kongKind, short bool) kongVariant {
		return kongVariant{id: route + "/" + kindID(k), route: route, kind: k, short: short}
	}
	vs := []kongVariant{
		v("none", kindJSON, true), v("access", kindJSON, true), v("access-log", kindJSON, true),
		v("pinning", kindJSON, true), v("relay", kindJSON, true),
	}
	if baseline {
		vs = append(vs, v("base", kindJSON, true))
	}
	for _, p := range []struct {
		k           *kongKind
		none, relay string
	}{
		{kindSSE, "none", "relay"}, {kindInit, "none-init", "relay-init"}, {kindModern, "none-modern", "relay-modern"},
		{kindNonMCP, "none", "relay"}, {kindAnon, "none-init", "relay-init"}, {kindListPlain, "none", "relay"},
		{kindList, "none", "relay-rules"},
	} {
		vs = append(vs, v(p.none, p.k, false), v(p.relay, p.k, false))
		if baseline {
			vs = append(vs, v(strings.Replace(p.relay, "relay", "base", 1), p.k, false))
		}
	}
	for _, r := range []string{"pinning-1p", "get_method-1", "get_method-3", "get_method-5", "get_headers-5", "get_raw_body-5",
		"set_ctx-5", "get_route-5", "get_service-5", "buffered", "response", "response-get_var", "response-get_headers",
		"response-get_ctx", "log-serialize",
		"access-bigconfig", "access-co", "get_method-5-co", "pinning-co", "pinning-body", "relay-calls"} {
		vs = append(vs, v(r, kindJSON, r == "response"))
	}
	return append(vs, v("none", kindJSONBig, false), v("access", kindJSONBig, false), v("get_headers-5", kindJSONBig, false))
}

func kindID(k *kongKind) string {
	switch k {
	case kindJSON:
		return "json"
	case kindJSONBig:
		return "json-big"
	case kindSSE:
		return "sse"
	case kindInit:
		return "initialize"
	case kindModern:
		return "modern"
	case kindNonMCP:
		return "non-mcp"
	case kindAnon:
		return "anonymous"
	case kindList:
		return "tools-list"
	case kindListPlain:
		return "tools-list-plain"
	}
	panic("kindID: unknown kind " + k.name)
}

// kongNode is the benchmark's real Kong node and what runs behind it.
type kongNode struct {
	node     *realkong.Node
	prefix   string
	build    string // the harness's build directory
	sessions map[string]string
	probe    *probeUpstreams
}

func (n *kongNode) url(route string) string { return n.node.URL() + "/r/" + route }

// workerPID is the node's nginx worker (one worker per node).
func (n *kongNode) workerPID() int {
	raw, err := os.ReadFile(filepath.Join(n.prefix, "nginx.pid"))
	if err != nil {
		return 0
	}
	master := strings.TrimSpace(string(raw))
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		str := string(b)
		i := strings.LastIndexByte(str, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(str[i+1:])
		if len(f) > 1 && f[1] == master {
			dir := filepath.Dir(s)
			cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
			if !strings.Contains(string(cmd), "worker process") {
				continue // Kong's privileged agent, where it runs one
			}
			pid, _ := strconv.Atoi(filepath.Base(dir))
			return pid
		}
	}
	return 0
}

// pluginPIDs are the node's live plugin processes.
func (n *kongNode) pluginPIDs() []int {
	var pids []int
	files, _ := filepath.Glob(filepath.Join(n.prefix, "pids", "pluginserver-*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func (n *kongNode) close() {
	if n.node != nil {
		if err := n.node.Close(); err != nil {
			log.Print(err)
		}
	}
	if n.prefix != "" {
		_ = os.RemoveAll(n.prefix)
	}
	if n.probe != nil {
		n.probe.close()
	}
}

// buildBenchPlugins builds the minimal plugins into dir.
func buildBenchPlugins(dir string) error {
	for _, p := range benchPlugins {
		src := p
		if p == "bench-access-1p" {
			src = "bench-access"
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, p), "./test/cmd/bench/plugins/"+src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", p, err, out)
		}
	}
	return nil
}

// startKongNode starts one real Kong node with mcp-relay and the minimal
// plugins, each its own plugin server (pluginserver_* entries of kong.conf).
func startKongNode(ctx context.Context, c config, e *env) (*kongNode, error) {
	build, err := realkong.Prepare()
	if err != nil {
		return nil, err
	}
	n := &kongNode{build: build, sessions: map[string]string{}}
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()
	if n.prefix, err = os.MkdirTemp("", "rkb"); err != nil {
		return nil, err
	}
	bin := filepath.Join(n.prefix, "bin")
	if err := buildBenchPlugins(bin); err != nil {
		return nil, err
	}
	if n.probe, err = startProbeUpstreams(ctx); err != nil {
		return nil, err
	}
	deck, err := kongDeck(c.deck, map[string][]string{
		"legacy": {e.legacyA}, "init": {e.legacyB}, "modern": {e.modern},
		"probe-ip": n.probe.ipTargets(), "probe-name": n.probe.nameTargets(), "probe-retry": n.probe.retryTargets(),
	}, map[string]bool{"probe-retry": true}, kongRoutes(e.legacyA, c.kongBaseline != ""))
	if err != nil {
		return nil, err
	}
	bundled, err := bundledPlugins()
	if err != nil {
		return nil, err
	}
	relayName := filepath.Base(c.plugin)
	servers := benchPlugins
	if c.kongBaseline != "" {
		// The baseline build under its own name: its own plugin server.
		raw, err := os.ReadFile(c.kongBaseline)
		if err != nil {
			return nil, fmt.Errorf("-kong-baseline: %w", err)
		}
		if err := os.WriteFile(filepath.Join(bin, baselineName), raw, 0o755); err != nil {
			return nil, err
		}
		servers = append(slices.Clone(benchPlugins), baselineName)
	}
	conf := []string{
		"plugins = " + bundled + "," + relayName + "," + strings.Join(servers, ","),
		"pluginserver_names = " + relayName + "," + strings.Join(servers, ","),
	}
	for _, p := range servers {
		k := "pluginserver_" + strings.ReplaceAll(p, "-", "_")
		exe := filepath.Join(bin, p)
		args := ""
		if p == baselineName && c.kongBaselineArgs != "" {
			args = " " + c.kongBaselineArgs
		}
		conf = append(conf, k+"_socket = "+filepath.Join(n.prefix, p+".socket"),
			k+"_start_cmd = "+envPrefix(pluginEnv[p])+exe+" -kong-prefix "+n.prefix+args, k+"_query_cmd = "+exe+" -dump"+args)
	}
	o := realkong.Options{Plugin: c.plugin, DeckYAML: deck, Prefix: n.prefix, Conf: conf}
	if _, err := os.Stat(c.errTemplate); err == nil {
		o.ErrorTemplateJSON, _ = filepath.Abs(c.errTemplate)
	}
	if n.node, err = realkong.Start(ctx, o); err != nil {
		return nil, err
	}
	// The harness waits for mcp-relay's socket; Kong starts the others alongside.
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range servers {
		for {
			if _, err := os.Stat(filepath.Join(n.prefix, p+".socket")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("plugin %s: no socket after 20 s\n%s", p, tailString(string(n.node.ErrorLog()), 30))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Sessions: one through each mcp-relay route that pins (its store learns
	// it); the replica knows it, so the routes without mcp-relay use it too.
	// The SSE kind has its own: mcp-go hands a notification left on a
	// session's channel to the session's next POST, which then answers SSE.
	pinning := []string{"relay", "relay-rules", "relay#sse"}
	if c.kongBaseline != "" {
		pinning = append(pinning, "base", "base-rules", "base#sse")
	}
	for _, r := range pinning {
		s, err := openSession(e.client, n.url(strings.TrimSuffix(r, "#sse")))
		if err != nil {
			return nil, fmt.Errorf("opening a session through route %s: %w\n%s", r, err, n.errors())
		}
		n.sessions[r] = s
	}
	ok = true
	return n, nil
}

// envPrefix is the start command's prefix that sets env ("" for none).
func envPrefix(env string) string {
	if env == "" {
		return ""
	}
	return "env " + env + " "
}

func (n *kongNode) session(v kongVariant) string {
	if v.kind == kindSSE {
		if strings.HasPrefix(v.route, "base") {
			return n.sessions["base#sse"]
		}
		return n.sessions["relay#sse"]
	}
	if s, ok := n.sessions[v.route]; ok {
		return s
	}
	return n.sessions["relay"]
}

// errors are the last error lines of Kong's log.
func (n *kongNode) errors() string {
	var lines []string
	for _, l := range strings.Split(string(n.node.ErrorLog()), "\n") {
		if strings.Contains(l, "[error]") || strings.Contains(l, "[crit]") || strings.Contains(l, "[alert]") {
			lines = append(lines, l)
		}
	}
	return tailString(strings.Join(lines, "\n"), 5)
}

// bundledPlugins is the harness's list of Kong's bundled plugins that load.
func bundledPlugins() (string, error) {
	script, err := realkong.Script()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(script, "env").Output()
	if err != nil {
		return "", fmt.Errorf("realkong env: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "bundled_plugins="); ok {
			return v, nil
		}
	}
	return "", errors.New("realkong env printed no bundled_plugins")
}

func tailString(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func (r wrkRequest) httpRequest(base string) *http.Request {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	if err != nil {
		panic(err) // the URL is ours
	}
	for i := 0; i+1 < len(r.header); i += 2 {
		req.Header.Set(r.header[i], r.header[i+1])
	}
	return req
}

// warm checks one answer of the variant, then sends it 400 more times from
// 8 connections (instance start, JIT, connection pools), counting answers
// that fail the check.
func (n *kongNode) warm(client *http.Client, v kongVariant, requests int) error {
	req := v.kind.req(n.session(v))
	relay := strings.HasPrefix(v.route, "relay") || strings.HasPrefix(v.route, "base")
	r, err := do(client, req.httpRequest(n.url(v.route)))
	if err != nil {
		return err
	}
	if err := v.kind.check(r, relay); err != nil {
		if r.Status >= 500 {
			err = fmt.Errorf("%w\nKong's error log:\n%s", err, n.errors())
		}
		return err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad error
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < requests/8; i++ {
				r, err := do(client, req.httpRequest(n.url(v.route)))
				if err == nil {
					err = v.kind.check(r, relay)
				}
				if err != nil {
					mu.Lock()
					bad = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return bad
}

// kongRuns are the timed runs: runs[variant][round].
type kongRuns struct {
	variants []kongVariant
	runs     [][]wrkResult
	timed    []bool
	rounds   int
	errs     map[string]error
}

func (k *kongRuns) index(id string) int {
	for i, v := range k.variants {
		if v.id == id {
			return i
		}
	}
	return -1
}

// kongSection is the real-Kong benchmark: see kongReport for what it prints.
func kongSection(ctx context.Context, b *strings.Builder, c config, e *env) {
	fmt.Fprintf(b, "## 6. Real Kong %s: what a request costs\n\n", realkong.Version)
	if _, err := realkong.Script(); err != nil {
		log.Print("WARNING: real Kong is not available on this machine: the real-Kong section is NOT measured")
		fmt.Fprintf(b, "**Not measured: real Kong is not available on this machine.**\n\n")
		if first, _, _ := strings.Cut(err.Error(), "\n"); !strings.HasPrefix(realkong.HowToGet, first) {
			fmt.Fprintf(b, "`%s`\n\n", first)
		}
		fmt.Fprintf(b, "This section needs the realkong harness, which runs Kong %s's own Lua code (runloop, PDK, Go "+
			"plugin-server client) on Debian 12's nginx: the script `realkong` at `../shared/realkong/realkong` next to "+
			"the checkout, or named by `%s=/path/to/realkong`. Run `realkong setup` once as root (it installs Debian "+
			"packages and builds into /tmp/realkong-build), install `wrk` (`apt-get install -y wrk`), then `make bench` "+
			"again (`go run ./test/cmd/bench -plugin bin/mcp-relay -kong-only` for this section alone).\n\n",
			realkong.Version, realkong.EnvScript)
		return
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		fail(errors.New("wrk is not on PATH (apt-get install -y wrk): the real-Kong section is not measured"))
		fmt.Fprintf(b, "**Not measured: `wrk` is not on PATH** (install: `apt-get install -y wrk`).\n\n")
		return
	}
	started := time.Now()
	load0 := loadAverageAll()
	n, err := startKongNode(ctx, c, e)
	if err != nil {
		fail(fmt.Errorf("real Kong: %w", err))
		fmt.Fprintf(b, "**Not measured: the node did not start.**\n\n```\n%s\n```\n\n", tailString(err.Error(), 30))
		return
	}
	defer n.close()

	var probes []probeResult
	var refused int
	dropped := "not tried (-kong-variants)"
	if c.kongVariants == nil {
		probes, refused = runProbes(e.client, n)
		dropped = dropPluginsProbe(e.client, n)
	}

	k := &kongRuns{variants: kongVariants(c.kongBaseline != ""), rounds: c.kongRounds, errs: map[string]error{}}
	k.runs = make([][]wrkResult, len(k.variants))
	k.timed = selectVariants(k.variants, c)
	client := newClient(8)
	defer client.CloseIdleConnections()
	for i, v := range k.variants {
		if !k.timed[i] {
			continue
		}
		warmup := 400
		if c.short {
			warmup = 40
		}
		if err := n.warm(client, v, warmup); err != nil {
			k.errs[v.id] = err
			k.timed[i] = false
			fail(fmt.Errorf("real Kong, %s: %w", v.id, err))
		}
	}
	scripts, err := os.MkdirTemp("", "wrk")
	if err != nil {
		fail(err)
		return
	}
	defer os.RemoveAll(scripts)
	paths := make([]string, len(k.variants))
	for i, v := range k.variants {
		req := v.kind.req(n.session(v))
		req.path = "/r/" + v.route + req.path
		if paths[i], err = wrkScript(scripts, strconv.Itoa(i), req); err != nil {
			fail(err)
			return
		}
	}
	worker := n.workerPID()
	if worker == 0 {
		fail(errors.New("real Kong: no nginx worker found: the CPU columns are 0"))
	}
	for round := 0; round < k.rounds; round++ {
		log.Printf("real Kong: round %d of %d (load average %.2f)", round+1, k.rounds, loadAverage())
		order := make([]int, len(k.variants))
		for i := range order {
			order[i] = i
		}
		if round%2 == 1 { // alternate the order: a drift weighs on both ends alike
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, i := range order {
			if !k.timed[i] {
				continue
			}
			r, err := wrkRun(ctx, n.node.URL(), paths[i], c.kongConns, c.kongDuration, worker, n.pluginPIDs())
			if err != nil {
				k.errs[k.variants[i].id] = err
				k.timed[i] = false
				fail(fmt.Errorf("real Kong, %s: %w", k.variants[i].id, err))
				continue
			}
			if r.errors > 0 {
				k.errs[k.variants[i].id] = fmt.Errorf("%d of %d answers were errors or not 2xx/3xx", r.errors, r.requests)
			}
			k.runs[i] = append(k.runs[i], r)
		}
	}
	kongReport(b, c, n, k, probes, refused, dropped, load0, loadAverageAll(), time.Since(started))
}

// selectVariants says which variants are timed: in a -short run the short
// ones; with -kong-variants those matching it, the runs without a plugin
// of their request kinds, and the Access and pinning plugins (the
// multiples divide by them).
func selectVariants(vs []kongVariant, c config) []bool {
	timed := make([]bool, len(vs))
	kinds := map[*kongKind]bool{}
	for i, v := range vs {
		timed[i] = !c.short || v.short
		if c.kongVariants != nil {
			timed[i] = c.kongVariants.MatchString(v.id)
		}
		if timed[i] {
			kinds[v.kind] = true
		}
	}
	if c.kongVariants != nil {
		for i, v := range vs {
			switch {
			case strings.HasPrefix(v.route, "none") && kinds[v.kind]:
				timed[i] = true
			case v.id == "none/json" || v.id == "access/json" || v.id == "pinning/json":
				timed[i] = true
			}
		}
	}
	return timed
}

// loadAverageAll is /proc/loadavg's three figures.
func loadAverageAll() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// kongBuild describes the harness build the node ran on.
func kongBuild(build string) string {
	var parts []string
	if out, err := exec.Command("/usr/sbin/nginx", "-v").CombinedOutput(); err == nil {
		parts = append(parts, strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
	}
	if raw, err := os.ReadFile(filepath.Join(build, "debs.txt")); err == nil {
		re := regexp.MustCompile(`^(libnginx-mod-http-lua|libluajit2-5\.1-2|lua-resty-core)_([^_]+)_`)
		for _, line := range strings.Split(string(raw), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				v := strings.ReplaceAll(m[2], "%3a", ":")
				parts = append(parts, m[1]+" "+v)
			}
		}
	}
	return fmt.Sprintf("Kong %s Lua (realkong harness, build %s): %s", realkong.Version, filepath.Base(build), strings.Join(parts, ", "))
}

// medianOf is the median of f over the variant's rounds.
func (k *kongRuns) medianOf(i int, f func(wrkResult) float64) (float64, bool) {
	var v []float64
	for _, r := range k.runs[i] {
		v = append(v, f(r))
	}
	return median(v)
}

// perRound evaluates fn on each round (variant id → figure), returning the
// values of the rounds where every variant fn reads was timed.
func (k *kongRuns) perRound(metric func(wrkResult) float64, fn func(get func(id string) float64) float64) []float64 {
	var out []float64
	for round := 0; round < k.rounds; round++ {
		missing := false
		get := func(id string) float64 {
			i := k.index(id)
			if i < 0 || round >= len(k.runs[i]) {
				missing = true
				return 0
			}
			return metric(k.runs[i][round])
		}
		v := fn(get)
		if !missing {
			out = append(out, v)
		}
	}
	return out
}

func minMax(v []float64) (float64, float64) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[0], s[len(s)-1]
}

func usPerReq(r wrkResult) float64 { return r.usPerRequest() }
func workerUS(r wrkResult) float64 { return r.workerUS() }
func pluginUS(r wrkResult) float64 { return r.pluginsUS() }
func kongCPU(r wrkResult) float64  { return r.workerUS() + r.pluginsUS() }
