package standin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Options configure one stand-in node.
type Options struct {
	// Plugin is the plugin executable. As with Kong, its file name is the
	// plugin's name and `-dump` describes it.
	Plugin string
	// Deck is the deck file (`_format_version: "3.0"`); DeckYAML, when set,
	// is used instead.
	Deck     string
	DeckYAML []byte
	// Listen is the proxy listener, "127.0.0.1:0" by default.
	Listen string
	// Prefix is the Kong prefix (the plugin's socket lives there). Empty: a
	// fresh temporary directory, removed by Close.
	Prefix string
	// Env is the plugin server's environment besides TZ, as kong.conf's
	// nginx_main_env passes variables through: nginx clears every other
	// one, so the plugin does not see the environment Kong was started
	// in. -dump gets the caller's environment with Env added.
	Env []string
	// StartCmd is kong.conf's pluginserver_<name>_start_cmd, run as Kong
	// runs it: `exec <StartCmd>` through /bin/sh, with nothing added. Empty:
	// `<Plugin> -kong-prefix <Prefix>`, what a Kong prefix other than
	// /usr/local/kong needs (go-pdk's default, where the plugin otherwise
	// puts its socket).
	StartCmd string
	// Log receives the node's error log (Kong's error.log); LogLevel filters
	// it ("notice", Kong's default, when empty). PluginOutput receives the
	// plugin process's stdout and stderr (Log when nil): Kong logs those
	// lines at info level, which its default level hides, but the stand-in
	// always writes them.
	Log          io.Writer
	LogLevel     string
	PluginOutput io.Writer
	// Targets replaces the targets of upstreams named in the deck file
	// ("host:port" each, weight 100), so that one file can point at test
	// replicas on random ports.
	Targets map[string][]string
	// TrustedIPs are kong.conf's trusted_ips (CIDRs or IPs); none by default.
	TrustedIPs []string
	// NodeID is kong.node.get_id(); random by default.
	NodeID string
	// OnRecord is called with each request's record once its Log event has
	// finished (or at once when no Log event runs). It must not block long.
	OnRecord func(RequestRecord)
	// RecordBuffer is the capacity of Records(); 1024 by default. Records are
	// dropped (and counted in Totals) when the channel is full.
	RecordBuffer int
	// StartTimeout bounds the wait for the plugin's socket; 15 s by default.
	StartTimeout time.Duration
	// SocketTimeout is the plugin socket's connect/send/read timeout
	// (lua_socket_*_timeout, 60 s by default).
	SocketTimeout time.Duration
	// ErrorTemplateJSON is kong.conf's error_template_json: a file whose
	// text, with two %s (message, request id), is the body of Kong's own
	// JSON error answers (502, 504, 500 ...). Empty: Kong's default.
	ErrorTemplateJSON string
	// Seed makes the round-robin wheel's shuffle reproducible (0: random).
	Seed int64
}

// Node is one stand-in Kong node with its own plugin process.
type Node struct {
	opts      Options
	id        string
	prefix    string
	ownPrefix bool
	log       *nodeLog
	info      *PluginInfo
	deck      *Deck
	router    *router
	plugins   []*pluginHandler
	balancers map[string]*rrBalancer // guarded by balMu once serving (SetTargets)
	balMu     sync.RWMutex
	trusted   []*net.IPNet

	procMu    sync.Mutex // guards proc, worker and retiring, which ReloadPlugin changes
	proc      *pluginProcess
	worker    *worker
	retiring  []*pluginProcess // old plugin processes waiting for their worker's requests
	rpc       *rpcClient
	instances *instances
	upPool    *connPool

	ln  net.Listener
	srv *http.Server

	errorTemplateJSON string

	records chan RequestRecord
	bodySeq atomic.Int64
	// pending counts requests and Log timers not finished yet. A counter,
	// not a WaitGroup: requests keep arriving while WaitIdle waits, and a
	// WaitGroup forbids Add from zero concurrently with Wait.
	pending  atomic.Int64
	closing  atomic.Bool
	closeErr error
	closed   chan struct{}
	once     sync.Once

	totalsMu sync.Mutex
	totals   Totals
}

// pluginHandler is a plugin the node runs: the external plugin, or an
// emulated bundled one (key-auth).
type pluginHandler struct {
	name     string
	priority int
	phases   map[string]bool
	external bool
	// combos by compound key "route:service:consumer" (plugins_iterator.lua)
	combos map[string]*Plugin
	conf   map[*Plugin][]byte // cjson of the config sent to StartInstance
}

// collectedPlugin is a plugin collected for a request, with its config.
type collectedPlugin struct {
	handler *pluginHandler
	plugin  *Plugin
}

// Start starts a node: it runs `<plugin> -dump`, loads the deck file with
// the dumped schema, starts the plugin server (Options.StartCmd) and waits
// for its socket, then listens.
func Start(ctx context.Context, opts Options) (*Node, error) {
	if opts.Plugin == "" {
		return nil, errors.New("standin: Options.Plugin is required")
	}
	abs, err := filepath.Abs(opts.Plugin)
	if err != nil {
		return nil, err
	}
	opts.Plugin = abs
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 15 * time.Second
	}
	if opts.SocketTimeout == 0 {
		opts.SocketTimeout = 60 * time.Second
	}
	if opts.RecordBuffer == 0 {
		opts.RecordBuffer = 1024
	}
	level, err := parseLevel(opts.LogLevel)
	if err != nil {
		return nil, err
	}
	n := &Node{opts: opts, id: opts.NodeID, balancers: map[string]*rrBalancer{},
		instances: &instances{byKey: map[string]*instance{}}, upPool: &connPool{idle: map[string][]*upstreamConn{}},
		records: make(chan RequestRecord, opts.RecordBuffer), closed: make(chan struct{})}
	n.totals.Events = map[string]int{}
	n.totals.Calls = map[string]int{}
	if n.id == "" {
		n.id = randomUUID()
	}
	n.log = &nodeLog{w: opts.Log, level: level}
	if opts.ErrorTemplateJSON != "" {
		t, err := os.ReadFile(opts.ErrorTemplateJSON)
		if err != nil {
			return nil, fmt.Errorf("error_template_json: %w", err)
		}
		n.errorTemplateJSON = string(t)
	}
	for _, t := range opts.TrustedIPs {
		if !strings.Contains(t, "/") {
			if strings.Contains(t, ":") {
				t += "/128"
			} else {
				t += "/32"
			}
		}
		_, ipn, err := net.ParseCIDR(t)
		if err != nil {
			return nil, fmt.Errorf("standin: TrustedIPs: %v", err)
		}
		n.trusted = append(n.trusted, ipn)
	}

	// kong/runloop/plugin_servers/process.lua: query_cmd
	n.log.logf(lvlNotice, "[kong] [pluginserver] loading external plugins info")
	info, err := Dump(ctx, opts.Plugin, opts.Env)
	if err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	n.info = info
	n.log.logf(lvlNotice, "[kong] [pluginserver] loaded #1 external plugins info")

	schemas := map[string]map[string]any{info.Name: info.Schema, "key-auth": keyAuthSchema}
	if opts.DeckYAML != nil {
		n.deck, err = LoadDeck(opts.DeckYAML, schemas, opts.Targets)
	} else if opts.Deck != "" {
		n.deck, err = LoadDeckFile(opts.Deck, schemas, opts.Targets)
	} else {
		err = errors.New("Options.Deck or Options.DeckYAML is required")
	}
	if err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	for _, p := range n.deck.Plugins {
		if p.Name == "key-auth" {
			if b, _ := p.Config["key_in_body"].(bool); b {
				return nil, errors.New("standin: key-auth key_in_body is not emulated")
			}
		}
	}
	if n.router, err = newRouter(n.deck.Routes); err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	rng := rand.New(rand.NewSource(seed))
	for _, u := range n.deck.Upstreams {
		b := newRRBalancer(u, rng)
		b.health = newHealthChecker(u, n.log, b.wheel)
		n.balancers[u.Name] = b
	}
	n.buildPlugins()

	if opts.Prefix == "" {
		// unix socket paths are limited to ~107 bytes: keep the prefix short
		dir, err := os.MkdirTemp("", "kong-")
		if err != nil {
			return nil, err
		}
		n.prefix, n.ownPrefix = dir, true
	} else {
		if err := os.MkdirAll(opts.Prefix, 0o755); err != nil {
			return nil, err
		}
		n.prefix = opts.Prefix
	}
	socket := filepath.Join(n.prefix, info.Name+".socket")
	n.rpc = newRPCClient(socket, opts.SocketTimeout)
	n.worker = &worker{rpc: n.rpc, instances: n.instances}

	out := opts.PluginOutput
	if out == nil {
		out = opts.Log
	}
	_ = os.Remove(socket) // a stale socket of an earlier run
	startCmd := opts.StartCmd
	if startCmd == "" {
		startCmd = defaultStartCmd(opts.Plugin, n.prefix)
	}
	n.proc = newPluginProcess(startCmd, info.Name, n.prefix, opts.Env, out, n.log)
	go n.proc.run()
	if err := n.waitSocket(ctx, opts.StartTimeout); err != nil {
		n.proc.shutdown(5 * time.Second)
		n.cleanupPrefix()
		return nil, fmt.Errorf("standin: plugin %s: %w", info.Name, err)
	}

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		n.proc.shutdown(5 * time.Second)
		n.cleanupPrefix()
		return nil, err
	}
	n.ln = ln
	n.srv = &http.Server{Handler: n, ReadHeaderTimeout: 60 * time.Second,
		ErrorLog: nil, MaxHeaderBytes: 1 << 20}
	go func() {
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.logf(lvlErr, "[kong] proxy listener: %v", err)
		}
	}()
	n.log.logf(lvlNotice, "[kong] stand-in for Kong %s listening on %s (plugin %s, priority %d, phases %v)",
		KongVersion, ln.Addr(), info.Name, info.Priority, info.Phases)
	return n, nil
}

// StartT starts a node for a test: the log goes to t.Log unless
// opts.Log is set, and Close runs at the test's cleanup.
func StartT(t testing.TB, opts Options) *Node {
	t.Helper()
	if opts.Log == nil {
		opts.Log = &testWriter{t: t}
	}
	n, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if w.done.Load() {
		return len(p), nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { _ = recover() }() // logging after the test ended panics
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (n *Node) waitSocket(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	socket := n.rpc.socket
	for {
		// Kong itself does not wait. The probe connection is kept in the
		// pool (closing it would make go-pdk log an EOF).
		if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
			n.rpc.keepalive(&rpcConn{Conn: c, br: bufio.NewReaderSize(c, 16*1024)})
			return nil
		}
		select {
		case <-n.proc.done:
			return fmt.Errorf("plugin process exited before listening on %s", socket)
		default:
		}
		n.proc.mu.Lock()
		startErr := n.proc.startErr
		n.proc.mu.Unlock()
		if startErr != nil {
			return startErr
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no socket at %s after %v", socket, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// buildPlugins orders the plugins by priority, highest first (LOADED_PLUGINS
// sorted by handler PRIORITY), and indexes their configurations by
// route/service/consumer as plugins_iterator.lua does.
func (n *Node) buildPlugins() {
	ext := &pluginHandler{name: n.info.Name, priority: n.info.Priority, phases: map[string]bool{}, external: true,
		combos: map[string]*Plugin{}, conf: map[*Plugin][]byte{}}
	for _, ph := range n.info.Phases {
		ext.phases[ph] = true
	}
	ka := &pluginHandler{name: "key-auth", priority: keyAuthPriority, phases: map[string]bool{"access": true},
		combos: map[string]*Plugin{}}
	for _, p := range n.deck.Plugins {
		if !p.Enabled || !hasHTTPProtocol(p.Protocols) {
			continue
		}
		h := ka
		if p.Name == n.info.Name {
			h = ext
			h.conf[p] = n.startConfig(p)
		}
		h.combos[comboKey(p.Route, p.Service, p.Consumer)] = p
	}
	n.plugins = []*pluginHandler{ka, ext}
	sort.SliceStable(n.plugins, func(i, j int) bool {
		if n.plugins[i].priority != n.plugins[j].priority {
			return n.plugins[i].priority > n.plugins[j].priority
		}
		return n.plugins[i].name < n.plugins[j].name
	})
}

func hasHTTPProtocol(ps []string) bool {
	for _, p := range ps {
		if p == "http" || p == "https" || p == "grpc" || p == "grpcs" {
			return true
		}
	}
	return false
}

func comboKey(r *Route, s *Service, c *Consumer) string {
	var a, b, d string
	if r != nil {
		a = r.ID
	}
	if s != nil {
		b = s.ID
	}
	if c != nil {
		d = c.ID
	}
	return a + ":" + b + ":" + d
}

// startConfig is the config Kong sends with cmd_start_instance: cjson of the
// plugin's config table, to which get_plugin_config (plugins_iterator.lua)
// added route_id, service_id, consumer_id, plugin_instance_name,
// __plugin_id, __ws_id, __key__ and __seq__.
func (n *Node) startConfig(p *Plugin) []byte {
	cfg := deepCopy(p.Config).(map[string]any)
	if p.Route != nil {
		cfg["route_id"] = p.Route.ID
	}
	if p.Service != nil {
		cfg["service_id"] = p.Service.ID
	}
	if p.Consumer != nil {
		cfg["consumer_id"] = p.Consumer.ID
	}
	if p.InstanceName != "" {
		cfg["plugin_instance_name"] = p.InstanceName
	}
	cfg["__plugin_id"] = p.ID
	cfg["__ws_id"] = defaultWorkspaceID
	cfg["__key__"] = p.Key
	cfg["__seq__"] = int64(p.Seq)
	return encodeCJSON(markArrays(cfg))
}

// markArrays gives every array of a processed config cjson.array_mt (the
// schema library's make_array), so empty arrays encode as [].
func markArrays(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = markArrays(e)
		}
		return v
	case []any:
		out := make(arrayMT, len(v))
		for i, e := range v {
			out[i] = markArrays(e)
		}
		return out
	}
	return v
}

// lookupConfig is lookup_cfg of plugins_iterator.lua.
func (h *pluginHandler) lookupConfig(route, service, consumer string) *Plugin {
	try := func(r, s, c string) *Plugin { return h.combos[r+":"+s+":"+c] }
	if route != "" && service != "" && consumer != "" {
		if p := try(route, service, consumer); p != nil {
			return p
		}
	}
	if route != "" && consumer != "" {
		if p := try(route, "", consumer); p != nil {
			return p
		}
	}
	if service != "" && consumer != "" {
		if p := try("", service, consumer); p != nil {
			return p
		}
	}
	if route != "" && service != "" {
		if p := try(route, service, ""); p != nil {
			return p
		}
	}
	if consumer != "" {
		if p := try("", "", consumer); p != nil {
			return p
		}
	}
	if route != "" {
		if p := try(route, "", ""); p != nil {
			return p
		}
	}
	if service != "" {
		if p := try("", service, ""); p != nil {
			return p
		}
	}
	return try("", "", "")
}

// URL is the node's proxy URL ("http://127.0.0.1:PORT").
func (n *Node) URL() string { return "http://" + n.ln.Addr().String() }

// Addr is the proxy listener's address.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// Prefix is the node's Kong prefix (the plugin socket's directory).
func (n *Node) Prefix() string { return n.prefix }

// ID is kong.node.get_id().
func (n *Node) ID() string { return n.id }

// Plugin describes the plugin as -dump did.
func (n *Node) Plugin() *PluginInfo { return n.info }

// Deck returns the loaded entities.
func (n *Node) Deck() *Deck { return n.deck }

// PluginPID is the running plugin process's pid (0 while none runs).
func (n *Node) PluginPID() int { return n.plugin().PID() }

// PluginStarts counts how many times the plugin process was spawned.
func (n *Node) PluginStarts() int { return n.plugin().Starts() }

// KillPlugin kills the plugin process with SIGKILL, as a crash would; the
// node respawns it (at most once a second) as Kong's worker 0 does.
func (n *Node) KillPlugin() error { return n.plugin().kill() }

// TerminatePlugin sends the plugin process SIGTERM, the signal Kong's
// stop_pluginservers sends (kong stop, and the old worker 0 on kong
// reload); as worker 0 does after any exit, the node respawns it, at most
// once a second.
func (n *Node) TerminatePlugin() error { return n.plugin().terminate() }

// Records delivers each request's record after its Log event finished.
func (n *Node) Records() <-chan RequestRecord { return n.records }

// WaitIdle waits until no request or Log event is pending (bounded by
// timeout), polling every 5 ms.
func (n *Node) WaitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for n.pending.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func (n *Node) listenIP() string {
	if n.ln == nil {
		return ""
	}
	h, _, _ := net.SplitHostPort(n.ln.Addr().String())
	return h
}

func (n *Node) listenPort() int {
	_, p, _ := net.SplitHostPort(n.ln.Addr().String())
	i, _ := strconv.Atoi(p)
	return i
}

func (n *Node) isTrusted(ip string) bool {
	pip := net.ParseIP(ip)
	if pip == nil {
		return false
	}
	for _, t := range n.trusted {
		if t.Contains(pip) {
			return true
		}
	}
	return false
}

// Close stops the node: the listener and its connections, pending Log
// events (bounded), then the plugin process (SIGTERM as
// stop_pluginservers does, SIGKILL after 5 s), and removes a temporary
// prefix.
func (n *Node) Close() error {
	n.once.Do(func() {
		n.closing.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.srv.Shutdown(ctx)
		cancel()
		_ = n.srv.Close()
		n.WaitIdle(5 * time.Second)
		n.procMu.Lock()
		retiring := n.retiring
		n.procMu.Unlock()
		for _, p := range retiring {
			p.shutdown(5 * time.Second)
		}
		n.plugin().shutdown(5 * time.Second)
		for _, b := range n.balancers {
			b.health.close()
		}
		n.rpc.closeIdle()
		n.currentWorker().rpc.closeIdle()
		n.upPool.closeAll()
		n.cleanupPrefix()
		close(n.closed)
	})
	return n.closeErr
}

func (n *Node) cleanupPrefix() {
	if n.ownPrefix && n.prefix != "" {
		_ = os.RemoveAll(n.prefix)
	}
}
