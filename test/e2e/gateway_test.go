package e2e

// One suite, two gateways: every test starts its Kong nodes through
// startNode, which runs the stand-in (test/standin, the default) or real
// Kong 3.9.1 through the realkong harness (test/realkong), as
// MCP_RELAY_GATEWAY says. Both are driven the same way: the plugin gets its
// settings as command-line flags in Kong's start command (real Kong clears
// the environment of the processes it starts), logs are read back as text,
// served requests from the access log (real Kong) or the request records
// (stand-in).
//
// What only the stand-in can do (PDK call records and counts, Admin-API
// target changes without a reload, the plugin's exit status) is asked for
// by name: needStandin skips a whole test on real Kong with a reason, and
// onStandin runs one part of a test on the stand-in only; both are listed
// at the end of a real-Kong run, never dropped silently.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/realkong"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

// gatewayEnv chooses the gateway of the end-to-end suite: "standin" (the
// default) or "kong".
const gatewayEnv = "MCP_RELAY_GATEWAY"

const (
	standinGateway = "standin"
	kongGateway    = "kong"
)

// gatewayKind is the gateway this run uses, set by TestMain.
var gatewayKind = standinGateway

// onKong tells whether this run goes through real Kong.
func onKong() bool { return gatewayKind == kongGateway }

// chooseGateway reads MCP_RELAY_GATEWAY; with "kong" it also builds the
// realkong harness, and fails saying how to get real Kong when it is absent.
func chooseGateway() error {
	switch v := os.Getenv(gatewayEnv); v {
	case "", standinGateway:
		gatewayKind = standinGateway
		return nil
	case kongGateway:
		gatewayKind = kongGateway
		if _, err := realkong.Prepare(); err != nil {
			return fmt.Errorf("%s=kong: %w", gatewayEnv, err)
		}
		return nil
	default:
		return fmt.Errorf("%s=%q: want %q or %q", gatewayEnv, v, standinGateway, kongGateway)
	}
}

// gateway is one Kong node as the tests drive it.
type gateway interface {
	URL() string  // the proxy, "http://127.0.0.1:PORT"
	Addr() string // the proxy's host:port
	Prefix() string
	// PluginPID is the live plugin process (0: none), PluginStarts how
	// many Kong started so far.
	PluginPID() int
	PluginStarts() int
	// KillPlugin sends the plugin process SIGKILL, TerminatePlugin SIGTERM
	// (what `kong stop` sends); Kong starts a new one either way.
	KillPlugin() error
	TerminatePlugin() error
	// SetTargets replaces an upstream's targets. The stand-in does it as
	// the Admin API does (the plugin process stays); the real-Kong harness
	// has no Admin API: it rewrites the deck file and reloads the node,
	// so a new plugin process takes over.
	SetTargets(upstream string, targets []string) error
	// reload is `kong reload` as the plugin sees it: a new plugin process
	// starts (and takes the socket over) before the old one gets SIGTERM.
	reload() error
	// setDeck loads another deck file (the node's target overrides kept):
	// real Kong reloads (a new worker and plugin process); the stand-in,
	// which cannot reload its deck, stops and starts again on the same
	// address and prefix (a new plugin process too).
	setDeck(deckYAML []byte) error
	// kongLog is Kong's error log so far, at the node's log level (the
	// plugin's stdout and stderr are not in it: Kong logs them at info).
	kongLog() string
	// pluginOutput is everything the node's plugin processes wrote.
	pluginOutput() string
	// served lists the requests the node finished, in order.
	served() []servedRequest
	// standinNode is the stand-in node (nil on real Kong).
	standinNode() *standin.Node
}

// servedRequest is one finished request as the node logged it.
type servedRequest struct {
	Method, Path string
	Status       int
	ID           string // X-Kong-Request-Id
}

// nodeOptions are what a test may change about a node.
type nodeOptions struct {
	plugin     string   // the plugin executable (its file name is the plugin name)
	listen     string   // the proxy address; empty: a free port
	pluginArgs []string // flags added to the plugin's start command
	logLevel   string   // kong.conf log_level; empty: notice (Kong's default)
	kongConf   []string // more kong.conf lines, for real Kong only
	logPhase   bool     // -dump declares the Log phase (withLogPhase)
	recs       *recordLog
}

// nodeOption changes a node's options.
type nodeOption func(*nodeOptions)

// startNode starts one Kong node (stand-in or real, as MCP_RELAY_GATEWAY
// says) with deckYAML, the upstream's targets replaced by targets.
func startNode(t testing.TB, deckYAML []byte, targets []string, opts ...nodeOption) gateway {
	t.Helper()
	o := nodeOptions{plugin: pluginBin}
	for _, f := range opts {
		f(&o)
	}
	if onKong() {
		return startKong(t, deckYAML, targets, o)
	}
	return startStandin(t, deckYAML, targets, o)
}

// withPlugin runs the node with another plugin executable.
func withPlugin(path string) nodeOption {
	return func(o *nodeOptions) { o.plugin = path }
}

// withListen makes the node's proxy listen on addr.
func withListen(addr string) nodeOption {
	return func(o *nodeOptions) { o.listen = addr }
}

// withPluginArgs adds flags to the plugin's start command (Kong's
// pluginserver_<name>_start_cmd), e.g. "-sessions-write-interval", "1s".
func withPluginArgs(args ...string) nodeOption {
	return func(o *nodeOptions) { o.pluginArgs = append(o.pluginArgs, args...) }
}

// withMetrics makes the node's plugin process serve Prometheus metrics on addr.
func withMetrics(addr string) nodeOption { return withPluginArgs("-metrics-addr", addr) }

// withKongConf adds kong.conf lines ("key = value") on real Kong, for what
// only real Kong runs (untrusted_lua for a pre-function plugin, ...).
func withKongConf(lines ...string) nodeOption {
	return func(o *nodeOptions) { o.kongConf = append(o.kongConf, lines...) }
}

// withLogLevel sets Kong's log_level (notice when not set).
func withLogLevel(level string) nodeOption {
	return func(o *nodeOptions) { o.logLevel = level }
}

// ---- the stand-in

type standinGW struct {
	*standin.Node
	t            testing.TB
	opts         standin.Options // to start again with another deck
	kong, plugin standin.LogBuffer
	mu           sync.Mutex
	done         []servedRequest
}

func startStandin(t testing.TB, deckYAML []byte, targets []string, o nodeOptions) *standinGW {
	t.Helper()
	// The prefix is made here so that the start command can carry the
	// plugin's flags, as kong.conf's pluginserver_<name>_start_cmd does.
	prefix, err := os.MkdirTemp("", "kong-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(prefix) })
	g := &standinGW{t: t}
	start := shellQuote(o.plugin) + " -kong-prefix " + shellQuote(prefix)
	for _, a := range o.pluginArgs {
		start += " " + shellQuote(a)
	}
	var env []string
	if o.logPhase { // the stand-in runs -dump with Options.Env, not the start command's flags
		env = append(env, "MCP_RELAY_LOG_PHASE=on")
	}
	so := standin.Options{Plugin: o.plugin, DeckYAML: deckYAML, Listen: o.listen, Prefix: prefix, StartCmd: start, Env: env,
		Targets:           map[string][]string{upstream: targets},
		ErrorTemplateJSON: repoFile("kong/error_template.json"),
		Log:               &g.kong, PluginOutput: &g.plugin, LogLevel: o.logLevel,
		OnRecord: func(r standin.RequestRecord) {
			g.mu.Lock()
			g.done = append(g.done, servedRequest{Method: r.Method, Path: r.Path, Status: r.Status, ID: r.ID})
			g.mu.Unlock()
			if o.recs != nil {
				o.recs.add(r)
			}
		}}
	n, err := standin.Start(t.Context(), so)
	if err != nil {
		t.Fatal(err)
	}
	g.Node, g.opts = n, so
	g.opts.Listen = n.Addr()
	t.Cleanup(func() {
		_ = g.Close()
		if t.Failed() {
			t.Logf("---- tail of the stand-in's error log\n%s", tail(g.kong.String(), 60))
			t.Logf("---- tail of the plugin's output\n%s", tail(g.plugin.String(), 40))
		}
	})
	return g
}

func (g *standinGW) reload() error { return g.ReloadPlugin(15 * time.Second) }

func (g *standinGW) setDeck(deckYAML []byte) error {
	_ = g.Close()
	o := g.opts
	o.DeckYAML = deckYAML
	n, err := standin.Start(context.Background(), o)
	if err != nil {
		return err
	}
	g.Node = n
	return nil
}
func (g *standinGW) kongLog() string            { return g.kong.String() }
func (g *standinGW) pluginOutput() string       { return g.plugin.String() }
func (g *standinGW) standinNode() *standin.Node { return g.Node }

// served: the stand-in delivers a request's record once its Log event
// finished, so a served request's Log phase is over.
func (g *standinGW) served() []servedRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]servedRequest(nil), g.done...)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ---- real Kong

type kongGW struct {
	*realkong.Node
}

func startKong(t testing.TB, deckYAML []byte, targets []string, o nodeOptions) *kongGW {
	t.Helper()
	if o.logPhase {
		name := strings.ReplaceAll(filepath.Base(o.plugin), "-", "_")
		o.kongConf = append(o.kongConf, "pluginserver_"+name+"_query_cmd = "+o.plugin+" -dump -log-phase")
	}
	n := realkong.StartT(t, realkong.Options{Plugin: o.plugin, DeckYAML: deckYAML, Listen: o.listen,
		Targets:           map[string][]string{upstream: targets},
		PluginArgs:        o.pluginArgs,
		LogLevel:          o.logLevel,
		Conf:              o.kongConf,
		ErrorTemplateJSON: repoFile("kong/error_template.json")})
	if o.recs != nil {
		o.recs.kong = true
	}
	return &kongGW{Node: n}
}

// reload is realkong reload: it returns once the new worker has loaded the
// deck and its plugin process runs.
func (g *kongGW) reload() error                 { return g.Reload() }
func (g *kongGW) setDeck(deckYAML []byte) error { return g.SetDeck(deckYAML) }
func (g *kongGW) kongLog() string               { return string(g.ErrorLog()) }
func (g *kongGW) pluginOutput() string          { return string(g.PluginOutput()) }
func (g *kongGW) standinNode() *standin.Node    { return nil }

// accessLine is Kong's kong_log_format: `$remote_addr - $remote_user
// [$time_local] "$request" $status $body_bytes_sent "$http_referer"
// "$http_user_agent" kong_request_id: "$kong_request_id"`.
var accessLine = regexp.MustCompile(`^\S+ - \S+ \[[^\]]*\] "(\S+) (\S+)[^"]*" (\d{3}) .* kong_request_id: "([^"]*)"`)

// served reads Kong's access log. Nginx writes a request's line when the
// request ends; Kong runs an external plugin's Log event after that, in a
// timer (kong/runloop/plugin_servers/plugin.lua), so a served request's
// Log event may still be running.
func (g *kongGW) served() []servedRequest {
	var out []servedRequest
	sc := bufio.NewScanner(strings.NewReader(string(g.AccessLog())))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := accessLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var status int
		fmt.Sscan(m[3], &status)
		out = append(out, servedRequest{Method: m[1], Path: m[2], Status: status, ID: m[4]})
	}
	return out
}

// kongLogPhaseGrace is how long the tests give Kong's Log timers after a
// request's access-log line: nothing in Kong tells when an external
// plugin's Log event ends (the stand-in's records do).
const kongLogPhaseGrace = 300 * time.Millisecond

// waitServed waits (bounded) until the node has finished at least n
// requests, their Log phases included, and returns them.
func waitServed(t testing.TB, g gateway, n int, timeout time.Duration) []servedRequest {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := g.served()
		if len(s) >= n {
			if g.standinNode() == nil {
				time.Sleep(kongLogPhaseGrace)
			}
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests served within %v, want %d", len(s), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAnswered waits (bounded) until the node has finished the requests
// that got these answers (found by X-Kong-Request-Id), their Log phases
// included.
func waitAnswered(t testing.TB, g gateway, timeout time.Duration, answers ...rpcResult) {
	t.Helper()
	want := map[string]bool{}
	for _, r := range answers {
		id := r.Header.Get("X-Kong-Request-Id")
		if id == "" {
			t.Fatalf("an answer without X-Kong-Request-Id: %d %s", r.Status, r.Body)
		}
		want[id] = true
	}
	deadline := time.Now().Add(timeout)
	for {
		left := len(want)
		for _, s := range g.served() {
			if want[s.ID] {
				left--
			}
		}
		if left == 0 {
			if g.standinNode() == nil {
				time.Sleep(kongLogPhaseGrace)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests not finished at the node within %v", left, len(want), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLogLines waits (bounded) until log() has a line with every word, and
// returns those lines.
func waitLogLines(t testing.TB, log func() string, timeout time.Duration, words ...string) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := linesWith(log(), words...); len(got) > 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v", words, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// linesWith returns the lines of text that contain every word.
func linesWith(text string, words ...string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		ok := line != ""
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// ---- what real Kong does not run

var notOnKong struct {
	mu       sync.Mutex
	tests    map[string]string   // test -> why it did not run on real Kong
	parts    map[string][]string // test -> parts that did not run on real Kong, with why
	kongOnly map[string]string   // test -> why it did not run on the stand-in
}

// needStandin ends the test on real Kong (skipped, with why), listed at
// the end of the run: for tests whose point is something only the
// stand-in shows (PDK call records, its own internals).
func needStandin(t testing.TB, why string) {
	t.Helper()
	if !onKong() {
		return
	}
	notOnKong.mu.Lock()
	if notOnKong.tests == nil {
		notOnKong.tests = map[string]string{}
	}
	notOnKong.tests[t.Name()] = why
	notOnKong.mu.Unlock()
	t.Skipf("stand-in only: %s", why)
}

// needKong ends the test on the stand-in (skipped, with why), listed at
// the end of the run: for tests of what only real Kong runs (its bundled
// plugins but key-auth, for one).
func needKong(t testing.TB, why string) {
	t.Helper()
	if onKong() {
		return
	}
	notOnKong.mu.Lock()
	if notOnKong.kongOnly == nil {
		notOnKong.kongOnly = map[string]string{}
	}
	notOnKong.kongOnly[t.Name()] = why
	notOnKong.mu.Unlock()
	t.Skipf("real Kong only (%s=kong): %s", gatewayEnv, why)
}

// onStandin tells whether to run one part of a test (what: what it checks)
// that only the stand-in can do; on real Kong it notes the part, with why,
// for the end-of-run list, and returns false.
func onStandin(t testing.TB, what, why string) bool {
	t.Helper()
	if !onKong() {
		return true
	}
	notOnKong.mu.Lock()
	if notOnKong.parts == nil {
		notOnKong.parts = map[string][]string{}
	}
	line := what + ": " + why
	found := false
	for _, p := range notOnKong.parts[t.Name()] {
		found = found || p == line
	}
	if !found {
		notOnKong.parts[t.Name()] = append(notOnKong.parts[t.Name()], line)
	}
	notOnKong.mu.Unlock()
	t.Logf("not on real Kong: %s (%s)", what, why)
	return false
}

// reportNotOnKong prints, at the end of a real-Kong run, what did not run
// through real Kong and why; at the end of a stand-in run, what runs on
// real Kong only.
func reportNotOnKong() {
	notOnKong.mu.Lock()
	defer notOnKong.mu.Unlock()
	if !onKong() {
		if len(notOnKong.kongOnly) > 0 {
			var b strings.Builder
			fmt.Fprintf(&b, "\n==== run through the Kong stand-in: tests that run on real Kong only (%s=kong):\n", gatewayEnv)
			for _, n := range sortedKeys(notOnKong.kongOnly) {
				fmt.Fprintf(&b, "  %s: %s\n", n, notOnKong.kongOnly[n])
			}
			fmt.Fprint(os.Stderr, b.String())
		}
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n==== run through real Kong %s (%s=kong)\n", realkong.Version, gatewayEnv)
	names := sortedKeys
	if len(notOnKong.tests) == 0 {
		fmt.Fprintf(&b, "tests not run on real Kong: none\n")
	} else {
		fmt.Fprintf(&b, "tests not run on real Kong (stand-in only), %d:\n", len(notOnKong.tests))
		for _, n := range names(notOnKong.tests) {
			fmt.Fprintf(&b, "  %s: %s\n", n, notOnKong.tests[n])
		}
	}
	if len(notOnKong.parts) > 0 {
		var tests []string
		for k := range notOnKong.parts {
			tests = append(tests, k)
		}
		sort.Strings(tests)
		fmt.Fprintf(&b, "checks run on the stand-in only, inside tests that ran on real Kong:\n")
		for _, n := range tests {
			for _, p := range notOnKong.parts[n] {
				fmt.Fprintf(&b, "  %s: %s\n", n, p)
			}
		}
	}
	fmt.Fprint(os.Stderr, b.String())
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
