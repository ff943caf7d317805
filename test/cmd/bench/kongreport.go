package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// routeLabels describe each route's plugin for the tables.
var routeLabels = map[string]string{
	"none":         "no plugin",
	"none-init":    "no plugin",
	"none-modern":  "no plugin",
	"access":       "Go plugin: Access does nothing",
	"access-log":   "Go plugin: Access and Log do nothing",
	"pinning":      "Go plugin: Access makes pinning's calls (get_headers, set_target, set_header Host)",
	"relay":        "**mcp-relay**",
	"relay-init":   "**mcp-relay**",
	"relay-modern": "**mcp-relay**",
	"relay-rules":  "**mcp-relay** with access rules",
	"base":         "mcp-relay, baseline build",
	"base-init":    "mcp-relay, baseline build",
	"base-modern":  "mcp-relay, baseline build",
	"base-rules":   "mcp-relay, baseline build, with access rules",
}

// costRow is one line of "where the time goes": a figure derived, per
// round, from the variants' figures.
type costRow struct {
	what, from string
	fn         func(get func(id string) float64) float64
}

func perCall(route, base string, n float64) func(get func(string) float64) float64 {
	return func(get func(string) float64) float64 { return (get(route) - get(base)) / n }
}

func diff(a, b string) func(get func(string) float64) float64 {
	return func(get func(string) float64) float64 { return get(a) - get(b) }
}

var costRows = []costRow{
	{"Access event (Go plugin, Access does nothing)", "access − none", diff("access/json", "none/json")},
	{"Log event (Kong's log timer: serialize, ngx.ctx clone, header tables, then the event)", "access-log − access", diff("access-log/json", "access/json")},
	{"one PDK call: `kong.request.get_method`", "slope over 0, 1, 3, 5 calls in Access", func(get func(string) float64) float64 {
		xs := []float64{0, 1, 3, 5}
		ys := []float64{get("access/json"), get("get_method-1/json"), get("get_method-3/json"), get("get_method-5/json")}
		var sx, sy float64
		for i := range xs {
			sx, sy = sx+xs[i], sy+ys[i]
		}
		mx, my := sx/4, sy/4
		var num, den float64
		for i := range xs {
			num += (xs[i] - mx) * (ys[i] - my)
			den += (xs[i] - mx) * (xs[i] - mx)
		}
		return num / den
	}},
	{"one PDK call: `kong.request.get_headers`", "(5 calls − access) / 5", perCall("get_headers-5/json", "access/json", 5)},
	{"one PDK call: `kong.request.get_raw_body` (111-byte body)", "(5 calls − access) / 5", perCall("get_raw_body-5/json", "access/json", 5)},
	{"one PDK call: `kong.nginx.set_ctx`", "(5 calls − access) / 5", perCall("set_ctx-5/json", "access/json", 5)},
	{"one PDK call: `kong.router.get_route`", "(5 calls − access) / 5", perCall("get_route-5/json", "access/json", 5)},
	{"one PDK call: `kong.router.get_service`", "(5 calls − access) / 5", perCall("get_service-5/json", "access/json", 5)},
	{"buffered proxying alone (Access sets `buffered_proxying`, no Response phase)", "buffered − access − set_ctx", func(get func(string) float64) float64 {
		return get("buffered/json") - get("access/json") - (get("set_ctx-5/json")-get("access/json"))/5
	}},
	{"Response event of a buffered request", "response − buffered + set_ctx", func(get func(string) float64) float64 {
		return get("response/json") - get("buffered/json") + (get("set_ctx-5/json")-get("access/json"))/5
	}},
	{"a Response phase doing nothing, all (buffering + Response event)", "response − access", diff("response/json", "access/json")},
	{"`kong.nginx.get_var(\"upstream_host\")` in Response", "response-get_var − response", diff("response-get_var/json", "response/json")},
	{"`kong.request.get_headers` in Response", "response-get_headers − response", diff("response-get_headers/json", "response/json")},
	{"`kong.nginx.get_ctx` of a key Access did not set, in Response", "response-get_ctx − response", diff("response-get_ctx/json", "response/json")},
	{"`kong.log.serialize()` in Log (Response: not allowed, see 6c)", "log-serialize − access-log", diff("log-serialize/json", "access-log/json")},
	{"pinning's calls (get_headers, set_target, set_header Host)", "pinning − access", diff("pinning/json", "access/json")},
	{"the pinning plugin run with GOMAXPROCS=1 instead of the default (the machine's cores)", "pinning-1p − pinning", diff("pinning-1p/json", "pinning/json")},
	{"Access event, request with 4 KiB more headers", "access − none, both with the headers", diff("access/json-big", "none/json-big")},
	{"one `get_headers` call, request with 4 KiB more headers", "(5 calls − access) / 5, with the headers", perCall("get_headers-5/json-big", "access/json-big", 5)},
	{"Access event, plugin configuration 100 KiB bigger", "access-bigconfig − none", diff("access-bigconfig/json", "none/json")},
	{"`kong.request.get_raw_body` on the pinning path (111-byte body)", "pinning-body − pinning", diff("pinning-body/json", "pinning/json")},
	{"mcp-relay's calls on a pinned tools/call (get_headers, get_raw_body, set_target, set_header Host, set_ctx; Response phase declared)",
		"relay-calls − access", diff("relay-calls/json", "access/json")},
	{"mcp-relay's own work on a pinned tools/call beyond its calls (Go code, store lookup)", "relay − relay-calls", diff("relay/json", "relay-calls/json")},
	{"coalescing plugin server: Access event", "access-co − none", diff("access-co/json", "none/json")},
	{"coalescing plugin server: one `kong.request.get_method`", "(get_method-5-co − access-co) / 5", perCall("get_method-5-co/json", "access-co/json", 5)},
	{"go-pdk's server: one `kong.request.get_method`, same rounds", "(get_method-5 − access) / 5", perCall("get_method-5/json", "access/json", 5)},
	{"coalescing plugin server: pinning's calls", "pinning-co − access-co", diff("pinning-co/json", "access-co/json")},
	{"coalescing plugin server: pinning plugin, all (event and calls)", "pinning-co − pinning", diff("pinning-co/json", "pinning/json")},
}

func kongReport(b *strings.Builder, c config, n *kongNode, k *kongRuns, probes []probeResult, refused int, dropped, load0, load1 string, took time.Duration) {
	loads := []float64{}
	for i := range k.runs {
		for _, r := range k.runs[i] {
			loads = append(loads, r.load1)
		}
	}
	loadRange := "-"
	if len(loads) > 0 {
		lo, hi := minMax(loads)
		loadRange = fmt.Sprintf("%.2f to %.2f", lo, hi)
	}
	mode := fmt.Sprintf("%d interleaved round(s), each timing every variant once, order reversed every other round", k.rounds)
	if c.short {
		mode += "; short run: only the first rows were timed"
	}
	if c.kongVariants != nil {
		mode += fmt.Sprintf("; only the runs matching `%s` were timed (with the runs they are compared to), no probes", c.kongVariants)
	}
	if c.kongBaseline != "" {
		mode += fmt.Sprintf("; every mcp-relay run also through a baseline build (%s, plugin %s, arguments `%s`)", c.kongBaseline, baselineName, c.kongBaselineArgs)
	}
	fmt.Fprintf(b, "One real Kong node (%s; one worker; DB-less, from a deck built out of %s: its upstream, service, "+
		"key-auth (`anonymous`) and mcp-relay entries, one service per replica), with mcp-relay and three minimal go-pdk "+
		"plugins (test/cmd/bench/plugins, each its own plugin server) on separate routes, so that every variant shares the same worker. "+
		"Load: `wrk -t1 -c%d -d%v` per run, %s. Every figure is the median over the rounds. "+
		"Before timing, each variant's answer was checked and sent 400 times (instance start, warm-up). "+
		"Replicas: the project's legacy MCP replica (test/peers/legacy; a second one takes the sessions `initialize` creates) "+
		"and an mcp-go 2026-07-28 server, in the bench process.\n\n",
		kongBuild(n.build), c.deck, c.kongConns, c.kongDuration, mode)
	fmt.Fprintf(b, "| run | |\n|---|---|\n| Kong | %s |\n| ended | %s |\n| load average (1, 5, 15 min) before / after | %s / %s |\n"+
		"| 1-min load average at the start of the runs | %s |\n| wrk | `wrk -t1 -c%d -d%v` |\n| took | %v |\n\n",
		kongBuild(n.build), time.Now().UTC().Format(time.RFC3339), load0, load1, loadRange, c.kongConns, c.kongDuration, took.Round(time.Second))
	fmt.Fprintf(b, "Two measures of what a plugin adds to a request, both against the same request on the route without "+
		"a plugin, per round, then the median over the rounds:\n\n"+
		"- _Kong CPU added_: the CPU time the nginx worker and the plugin processes spent per request (/proc/PID/task/*/schedstat "+
		"around each run), minus the same on the route without a plugin. Other load on the machine disturbs it little.\n"+
		"- _added 1/rps_: 1/rps minus 1/rps without a plugin, in µs. It is the worker's time per request only while the worker "+
		"is the bottleneck; the plugin process, wrk and the replicas share the 2 cores with it, and other load moves it a lot "+
		"(the worker's busy share per run is in 6e).\n\n"+
		"The multiples divide each by the same measure of the Go plugin whose Access does nothing (_Access_) and of the "+
		"plugin that makes only pinning's calls (_pinning_).\n\n")

	cpuAccess := k.medianAdded("access/json", "none/json", kongCPU)
	cpuPinning := k.medianAdded("pinning/json", "none/json", kongCPU)
	rpsAccess := k.medianAdded("access/json", "none/json", usPerReq)
	rpsPinning := k.medianAdded("pinning/json", "none/json", usPerReq)
	ratio := func(a, of maybe) string {
		if !a.ok || !of.ok || of.v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", a.v/of.v)
	}

	fmt.Fprintf(b, "### 6a. Per request\n\n")
	fmt.Fprintf(b, "| request | route's plugins (key-auth with `anonymous` on every route) | req/s | p50 ms | p99 ms | worker CPU µs/req | plugin CPU µs/req | **Kong CPU added µs** | × Access | × pinning | added 1/rps µs | × Access | × pinning |\n")
	fmt.Fprintf(b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(id, base string) {
		i := k.index(id)
		v := k.variants[i]
		rps, ok := k.medianOf(i, wrkResult.rps)
		if !ok && c.kongVariants != nil {
			return // not selected
		}
		if !ok {
			fmt.Fprintf(b, "| %s | %s | %s |%s\n", v.kind.name, routeLabels[v.route], k.notTimed(i), strings.Repeat(" |", 10))
			return
		}
		p50, _ := k.medianOf(i, func(r wrkResult) float64 { return r.p50.Seconds() * 1000 })
		p99, _ := k.medianOf(i, func(r wrkResult) float64 { return r.p99.Seconds() * 1000 })
		wcpu, _ := k.medianOf(i, workerUS)
		pcpu, _ := k.medianOf(i, pluginUS)
		cells := []string{"-", "-", "-", "-", "-", "-"}
		if base != "" {
			if a := k.medianAdded(id, base, kongCPU); a.ok {
				cells[0], cells[1], cells[2] = fmt.Sprintf("**%+.0f**", a.v), ratio(a, cpuAccess), ratio(a, cpuPinning)
			}
			if a := k.medianAdded(id, base, usPerReq); a.ok {
				cells[3], cells[4], cells[5] = fmt.Sprintf("%+.0f", a.v), ratio(a, rpsAccess), ratio(a, rpsPinning)
			}
		}
		fmt.Fprintf(b, "| %s | %s | %.0f | %.2f | %.2f | %.0f | %.0f | %s |\n",
			v.kind.name, routeLabels[v.route], rps, p50, p99, wcpu, pcpu, strings.Join(cells, " | "))
	}
	for _, id := range []string{"none/json", "access/json", "access-log/json", "pinning/json", "relay/json", "base/json"} {
		if k.index(id) < 0 {
			continue
		}
		base := "none/json"
		if id == base {
			base = ""
		}
		row(id, base)
	}
	none := ""
	for _, v := range k.variants[k.index("relay/json")+1:] {
		switch {
		case v.id == "base/json":
		case strings.HasPrefix(v.route, "none"):
			none = v.id
			row(v.id, "")
		case strings.HasPrefix(v.route, "relay") || strings.HasPrefix(v.route, "base"):
			row(v.id, none)
		default:
			none = "stop"
		}
		if none == "stop" {
			break
		}
	}
	b.WriteString("\n")

	fmt.Fprintf(b, "### 6b. Where the time goes\n\n")
	fmt.Fprintf(b, "Each figure is derived per round from the runs of that round (a pinned `tools/call` with a JSON answer "+
		"on routes whose Go plugin makes only the named calls), then the median over the rounds; the range is the "+
		"lowest and highest round. All in µs per request.\n\n")
	fmt.Fprintf(b, "| what | derived from | worker CPU | plugin CPU | **Kong CPU** (worker + plugin) | its range | 1/rps | its range |\n|---|---|---|---|---|---|---|---|\n")
	span := func(v []float64) string {
		lo, hi := minMax(v)
		return fmt.Sprintf("%.0f to %.0f", lo, hi)
	}
	for _, cr := range costRows {
		v := k.perRound(usPerReq, cr.fn)
		if len(v) == 0 && c.kongVariants != nil {
			continue
		}
		if len(v) == 0 {
			fmt.Fprintf(b, "| %s | %s | not timed | | | | | |\n", cr.what, cr.from)
			continue
		}
		m, _ := median(v)
		cpu := k.perRound(kongCPU, cr.fn)
		cm, _ := median(cpu)
		wm, _ := median(k.perRound(workerUS, cr.fn))
		pm, _ := median(k.perRound(pluginUS, cr.fn))
		fmt.Fprintf(b, "| %s | %s | %.0f | %.0f | **%.0f** | %s | %.0f | %s |\n", cr.what, cr.from, wm, pm, cm, span(cpu), m, span(v))
	}
	b.WriteString("\n")

	if len(probes) > 0 {
		probeReport(b, n, probes, refused)
		logEventReport(b, n.build, dropped)
	}

	fmt.Fprintf(b, "### 6e. Every run\n\n| variant (route/request) | req/s per round | Kong CPU µs/req per round | p99 ms (median) | worker CPU µs/req (median) | plugin CPU µs/req (median) | worker busy (median) | errors |\n|---|---|---|---|---|---|---|---|\n")
	for i, v := range k.variants {
		var rates, cpus []string
		for _, r := range k.runs[i] {
			rates = append(rates, fmt.Sprintf("%.0f", r.rps()))
			cpus = append(cpus, fmt.Sprintf("%.0f", kongCPU(r)))
		}
		p99, _ := k.medianOf(i, func(r wrkResult) float64 { return r.p99.Seconds() * 1000 })
		wcpu, _ := k.medianOf(i, workerUS)
		pcpu, _ := k.medianOf(i, pluginUS)
		busy, _ := k.medianOf(i, wrkResult.workerBusy)
		errs := "0"
		if err, ok := k.errs[v.id]; ok {
			errs = strings.ReplaceAll(tailString(err.Error(), 3), "\n", " ")
		}
		if len(rates) == 0 && c.kongVariants != nil && errs == "0" {
			continue
		}
		if len(rates) == 0 {
			fmt.Fprintf(b, "| %s | %s | | | | | | %s |\n", v.id, k.notTimed(i), errs)
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %.2f | %.0f | %.0f | %.0f%% | %s |\n", v.id, strings.Join(rates, ", "), strings.Join(cpus, ", "), p99, wcpu, pcpu, 100*busy, errs)
	}
	b.WriteString("\n")
}

type maybe struct {
	v  float64
	ok bool
}

// medianAdded is the median over rounds of metric(id) − metric(base).
func (k *kongRuns) medianAdded(id, base string, metric func(wrkResult) float64) maybe {
	v := k.perRound(metric, diff(id, base))
	m, ok := median(v)
	return maybe{m, ok}
}

func (k *kongRuns) notTimed(i int) string {
	if err, ok := k.errs[k.variants[i].id]; ok && len(k.runs[i]) == 0 {
		return "failed: " + strings.ReplaceAll(tailString(err.Error(), 2), "\n", " ")
	}
	return "not timed (short run)"
}

func probeReport(b *strings.Builder, n *kongNode, probes []probeResult, refused int) {
	fmt.Fprintf(b, "### 6c. What a buffered Response phase can learn about the balanced target\n\n")
	fmt.Fprintf(b, "A probe (bench-access-response with `report`) on four routes of an upstream with two targets "+
		"(A and B, by IP `127.0.0.1:port` or by name `localhost:port`; with and without `preserve_host`) answers an "+
		"`initialize`, after Kong balanced and proxied it, with what one Response-phase call returned (one request "+
		"per call, so that a call that makes Kong abort the request hides no other). After each value: the target that "+
		"served that request and the Host it came with. The client's Host is the node's `127.0.0.1:port`. Costs of these calls: 6b.\n\n")
	var routes []string
	cells := map[string]map[string]string{}
	var retry []probeResult
	for _, p := range probes {
		if p.route == "probe-retry" {
			retry = append(retry, p)
			continue
		}
		if cells[p.call] == nil {
			cells[p.call] = map[string]string{}
		}
		if _, ok := cells[probeCalls[0]][p.route]; !ok && p.call == probeCalls[0] {
			routes = append(routes, p.route)
		}
		v := ""
		if p.err != nil {
			v = "**fails**: " + p.err.Error()
		} else {
			v = p.outcome.summary(n.probe)
		}
		if p.saw != "" && strings.HasPrefix(p.call, "get_var") {
			v += "; served by " + p.saw
		}
		cells[p.call][p.route] = strings.ReplaceAll(strings.ReplaceAll(v, "|", "\\|"), "\n", " ")
	}
	fmt.Fprintf(b, "| call in Response |")
	for _, r := range routes {
		fmt.Fprintf(b, " route %s |", r)
	}
	fmt.Fprintf(b, "\n|---|%s\n", strings.Repeat("---|", len(routes)))
	for _, call := range probeCalls {
		fmt.Fprintf(b, "| `%s` |", call)
		for _, r := range routes {
			fmt.Fprintf(b, " %s |", cells[call][r])
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	if len(retry) == 0 {
		return
	}
	same := 0
	var seen []string
	for _, p := range retry {
		if p.err != nil {
			seen = append(seen, "failed: "+p.err.Error())
			continue
		}
		var host string
		_ = json.Unmarshal(p.outcome.Value, &host)
		t := n.probe.targetName(host)
		if t != "?" && strings.HasPrefix(p.saw, t+" ") {
			same++
		}
		seen = append(seen, fmt.Sprintf("`%s` (%s), served by %s", host, t, p.saw))
	}
	fmt.Fprintf(b, "Retries: route probe-retry balances over A and a target that refuses connections (no health checks, "+
		"service retries as in the deck file), so Kong first sends about every other request to the dead target and retries it on A. "+
		"In %d of %d requests `get_var(\"upstream_host\")` in Response named the target that served it; Kong logged %d refused "+
		"connection(s) to the dead target during the probes. Per request: %s.\n\n",
		same, len(retry), refused, strings.Join(seen, "; "))
}

// logEventReport quotes the lines of the harness's Kong source that decide
// when a Go plugin's Log event runs.
func logEventReport(b *strings.Builder, build, dropped string) {
	fmt.Fprintf(b, "### 6d. Can a Go plugin skip the Log event for one request?\n\n")
	refs := []struct{ file, needle, says string }{
		{"kong/runloop/plugin_servers/plugin.lua", `if phase == "log" then`,
			"`build_phases`: a plugin whose `-dump` lists `log` gets a `log` handler that, on every request, calls `kong.log.serialize()`, clones `ngx.ctx`, reads both header tables and starts a timer that sends the Log event"},
		{"kong/runloop/plugins_iterator.lua", "if handler[phase] then",
			"`get_next_and_collect`: while Access runs, each plugin configured on the route is collected for every later phase its handler has; nothing per request decides it"},
		{"kong/runloop/plugin_servers/plugin.lua", `["kong.nginx.set_ctx"] = function(k, v)`,
			"the only lever a Go plugin has on that state: `set_ctx` writes a top-level key of `ngx.ctx`; the collected lists live in `ngx.ctx.plugins`, whose `ws` the access iterator reads again after each plugin, so replacing it breaks the request"},
	}
	fmt.Fprintf(b, "No. The Log phase is fixed per plugin when Kong reads its `-dump`, and Kong collects it for every request "+
		"of every route the plugin is on. In the harness's Kong source (%s):\n\n", filepath.Join(build, "kong"))
	for _, r := range refs {
		line := findLine(filepath.Join(build, "kong", r.file), r.needle)
		fmt.Fprintf(b, "- `%s:%s`: %s.\n", r.file, line, r.says)
	}
	fmt.Fprintf(b, "\nTried: a Go plugin with Access and Log whose Access calls `set_ctx(\"plugins\", false)` (Kong stores nil): %s.\n", dropped)
	fmt.Fprintf(b, "\nA plugin that must not pay the Log event on some requests must have no Log phase at all, "+
		"and do that work elsewhere (Access, or a buffered Response phase).\n\n")
}

func findLine(path, needle string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	for i, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, needle) {
			return fmt.Sprint(i + 1)
		}
	}
	return "? (not found)"
}
