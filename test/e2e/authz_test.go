package e2e

// Access rules, protected-resource metadata and log fields, end to end:
// real MCP servers and clients of both eras through the stand-in and the
// real plugin binary.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
)

// toolRules: sleep is denied to everyone, demo may not use ask or sample,
// other may use only echo and whoami.
var toolRules = map[string]any{
	"deny": []any{"sleep"},
	"rules": []any{
		map[string]any{"consumers": []any{"demo"}, "deny": []any{"ask", "sam*"}},
		map[string]any{"consumers": []any{"other"}, "allow": []any{"echo", "whoami"}},
	},
}

func listNames(t *testing.T, c *mcptest.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// TestAuthzLegacyToolRules: two consumers with mcp-go legacy clients
// against stateful mcp-go replicas: each sees and calls only its tools; a
// denied call is answered with its id and never reaches a replica.
func TestAuthzLegacyToolRules(t *testing.T) {
	a := peers.StartLegacy(t, "authz-a")
	metricsAddr := freeport.Addr(t)
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{"tools": toolRules}}), addrs(a),
		withMetrics(metricsAddr))

	clients := map[string]*mcptest.Client{}
	for _, key := range []string{demoKey, otherKey} {
		c, _, err := mcptest.NewClient(t, node.URL()+"/mcp", mcptest.Config{
			Version: mcp.ProtocolVersion20251125, Headers: map[string]string{"apikey": key}})
		if err != nil {
			t.Fatalf("initialize (%s): %v", key, err)
		}
		clients[key] = c
	}

	if got, want := listNames(t, clients[demoKey]), []string{"echo", "progress", "whoami"}; !slices.Equal(got, want) {
		t.Errorf("demo's tools/list: %v, want %v", got, want)
	}
	if got, want := listNames(t, clients[otherKey]), []string{"echo", "whoami"}; !slices.Equal(got, want) {
		t.Errorf("other's tools/list: %v, want %v", got, want)
	}
	if got := mcptest.Text(mcptest.CallTool(t, clients[demoKey], "echo", map[string]any{"text": "hi"}, nil)); got != "hi" {
		t.Errorf("demo echo: %q", got)
	}
	if got := mcptest.Text(mcptest.CallTool(t, clients[otherKey], "whoami", nil, nil)); got != a.Name() {
		t.Errorf("other whoami: %q", got)
	}
	for _, c := range []struct {
		key, tool string
	}{{demoKey, "ask"}, {demoKey, "sample"}, {demoKey, "sleep"}, {otherKey, "progress"}, {otherKey, "sleep"}} {
		_, err := mcptest.CallToolErr(clients[c.key], c.tool, map[string]any{}, nil, 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), "Tool not allowed") {
			t.Errorf("%s calling %s: %v, want Tool not allowed", c.key, c.tool, err)
		}
	}
	// demo's rule does not deny progress: other's allow list does.
	mcptest.CallTool(t, clients[demoKey], "progress", map[string]any{"steps": 1, "delay_ms": 1}, nil)

	// The raw answer: the id echoed, the reason, 200 for a legacy client,
	// answered by the plugin (no upstream try).
	raw := newRaw(otherKey)
	raw.version = mcp.ProtocolVersion20251125
	raw.initialize(t, node.URL())
	before := a.MustStats(t).RequestsTotal
	r := raw.post(t, node.URL(), `{"jsonrpc":"2.0","id":"deny-1","method":"tools/call","params":{"name":"ask","arguments":{}}}`)
	if r.Status != 200 || r.Message["id"] != "deny-1" || reasonOf(r) != "tool_forbidden" || r.errorField("code") != -32001.0 {
		t.Errorf("denied call: %d %s", r.Status, r.Body)
	}
	// A batch is judged per element and refused whole.
	r = raw.post(t, node.URL(), `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}},`+
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"progress","arguments":{}}}]`)
	var batch []map[string]any
	if err := json.Unmarshal(r.Body, &batch); err != nil || len(batch) != 2 || !strings.Contains(string(r.Body), `"reason":"tool_forbidden"`) ||
		!strings.Contains(string(r.Body), `"reason":"batch_refused"`) {
		t.Errorf("denied batch: %d %s", r.Status, r.Body)
	}
	if after := a.MustStats(t).RequestsTotal; after != before {
		t.Errorf("the denied call and batch reached the replica: %d requests", after-before)
	}

	m := metrics(t, metricsAddr)
	if m[`mcp_relay_requests_total{method="tools/call",tool="ask"}`] < 2 ||
		m[`mcp_relay_envelopes_total{reason="tool_forbidden"}`] < 6 ||
		m[`mcp_relay_list_entries_hidden_total{list="tools"}`] != 7 {
		t.Errorf("metrics: %v", filterKeys(m, "requests_total", "tool_forbidden", "hidden"))
	}
}

func filterKeys(m map[string]float64, subs ...string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		for _, s := range subs {
			if strings.Contains(k, s) {
				out[k] = v
			}
		}
	}
	return out
}

// startToolsServer runs an mcp-go server (both eras, 2026-07-28 first)
// with an allowed and a denied tool.
func startToolsServer(t *testing.T) string {
	t.Helper()
	s := server.NewMCPServer("tools", "1.0.0")
	for _, name := range []string{"echo", "delete_repo"} {
		s.AddTool(mcp.NewTool(name, mcp.WithString("text")), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(req.Params.Name + ":" + req.GetString("text", "")), nil
		})
	}
	ln := listen(t)
	srv := &http.Server{Handler: server.NewStreamableHTTPServer(s, server.WithDisableLocalhostProtection(true)), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestAuthzModernToolRules: the 2026-07-28 client sees and calls only what
// it may; a denied call is answered 403 with the 2026-07-28 auth code.
func TestAuthzModernToolRules(t *testing.T) {
	addr := startToolsServer(t)
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{"tools": map[string]any{"deny": []any{"delete_*"}}}}), []string{addr})

	c, init, err := mcptest.NewClient(t, node.URL()+"/mcp", mcptest.Config{Headers: map[string]string{"apikey": demoKey}})
	if err != nil || init.ProtocolVersion != "2026-07-28" {
		t.Fatalf("initialize: %v %+v", err, init)
	}
	if got := listNames(t, c); !slices.Equal(got, []string{"echo"}) {
		t.Errorf("tools/list: %v", got)
	}
	if got := mcptest.Text(mcptest.CallTool(t, c, "echo", map[string]any{"text": "x"}, nil)); got != "echo:x" {
		t.Errorf("echo: %q", got)
	}
	if _, err := mcptest.CallToolErr(c, "delete_repo", nil, nil, 10*time.Second); err == nil || !strings.Contains(err.Error(), "Tool not allowed") {
		t.Errorf("delete_repo: %v", err)
	}

	m := newRaw(demoKey)
	body := `{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"delete_repo","arguments":{},` + modernMeta + `}}`
	r := m.post(t, node.URL(), body, "MCP-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "delete_repo")
	if r.Status != 403 || r.Message["id"] != 77.0 || reasonOf(r) != "tool_forbidden" || r.errorField("code") != -31001.0 {
		t.Errorf("denied 2026-07-28 call: %d %s", r.Status, r.Body)
	}
	// Mcp-Name naming an allowed tool over a denied body: the header check
	// answers it, and it never reaches the server either way.
	r = m.post(t, node.URL(), body, "MCP-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "echo")
	if r.Status/100 != 4 || r.Message["id"] != 77.0 {
		t.Errorf("lying Mcp-Name: %d %s", r.Status, r.Body)
	}
}

// TestAuthzListAsSSE: the reference server answers tools/list as an SSE
// stream; the buffered stream is filtered, and the TypeScript SDK client
// neither sees nor can call the denied tool.
func TestAuthzListAsSSE(t *testing.T) {
	ev := peers.StartEverything(t)
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{"tools": map[string]any{"deny": []any{"echo"}}}}), addrs(ev))
	res, err := peers.RunNodeClient(t, node.URL()+"/mcp", map[string]string{"apikey": demoKey}, "tools-list")
	if err != nil {
		t.Fatalf("client: %v\n%s", err, res.Stderr)
	}
	names := res.ToolNames()
	if len(names) < 2 || slices.Contains(names, "echo") {
		t.Errorf("tools/list through the plugin: %v", names)
	}
	sawSSE := false
	for _, h := range res.HTTP {
		if h.RPC == "tools/list" && strings.HasPrefix(h.ContentType, "text/event-stream") {
			sawSSE = true
		}
	}
	if !sawSSE {
		t.Logf("exchanges: %+v", res.HTTP)
		t.Error("the reference server did not answer tools/list as SSE: this test no longer covers SSE")
	}
	call, _ := peers.RunNodeClient(t, node.URL()+"/mcp", map[string]string{"apikey": demoKey}, "call", "echo", `{"message":"hi"}`)
	if st := call.Step("call"); st == nil || st.OK || st.Error == nil || !strings.Contains(st.Error.Message+st.Error.RPCMessage, "Tool not allowed") {
		t.Errorf("calling the denied tool: %+v", st)
	}
}

// withWellKnownPath adds the protected-resource metadata paths to the MCP
// route, as the README tells operators to.
func withWellKnownPath(t *testing.T, deckYAML []byte) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(deckYAML, &doc); err != nil {
		t.Fatal(err)
	}
	route := doc["services"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)
	route["paths"] = append(route["paths"].([]any), "/.well-known/oauth-protected-resource")
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// authServerStub is a loopback OAuth authorization server that records
// every URL asked of it and serves only its RFC 8414 metadata and dynamic
// client registration.
type authServerStub struct {
	url  string
	mu   sync.Mutex
	seen []string
}

func startAuthServerStub(t *testing.T) *authServerStub {
	t.Helper()
	s := &authServerStub{}
	ln := listen(t)
	s.url = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"issuer":%q,"authorization_endpoint":"%s/authorize","token_endpoint":"%s/token",`+
				`"registration_endpoint":"%s/register","response_types_supported":["code"],`+
				`"grant_types_supported":["authorization_code","refresh_token"],"code_challenge_methods_supported":["S256"]}`,
				s.url, s.url, s.url, s.url)
		case "/register":
			var meta map[string]any
			_ = json.NewDecoder(r.Body).Decode(&meta)
			meta["client_id"] = "stub-client"
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(meta)
		default:
			http.NotFound(w, r)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *authServerStub) requested() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// TestResourceMetadataDiscovery: the plugin serves the RFC 9728 document
// without a credential, names it in the 401 envelope's WWW-Authenticate,
// and a real OAuth client (mcp-remote) follows it to the configured
// authorization server.
func TestResourceMetadataDiscovery(t *testing.T) {
	as := startAuthServerStub(t)
	a := peers.StartLegacy(t, "prm-a")
	node := startNode(t, withWellKnownPath(t, deck(t, deckOptions{relay: map[string]any{
		"auth": map[string]any{"resource_metadata": map[string]any{
			"authorization_servers": []any{as.url}, "scopes_supported": []any{"mcp:tools"}}}}})), addrs(a))
	base := node.URL()

	// The document, path-aware and at the root, without a key.
	for path, resource := range map[string]string{
		"/.well-known/oauth-protected-resource/mcp": base + "/mcp",
		"/.well-known/oauth-protected-resource":     base,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if doc["resource"] != resource || fmt.Sprint(doc["authorization_servers"]) != "["+as.url+"]" ||
			fmt.Sprint(doc["scopes_supported"]) != "[mcp:tools]" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s: %s %v", path, body, resp.Header)
		}
	}

	// The auth envelope points at it and keeps 401 (envelope.status auto).
	r := newRaw("").initialize(t, base)
	wantHeader := `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp"`
	if r.Status != 401 || r.Header.Get("WWW-Authenticate") != wantHeader || r.dataField("www_authenticate") != wantHeader ||
		r.Message["id"] == nil {
		t.Errorf("auth envelope: %d %v %s", r.Status, r.Header, r.Body)
	}
	// With a key, MCP works as before.
	if _, r := newPinRaw(demoKey, 10*time.Second).whoami(t, base); r.Status != 200 && r.Status != 404 {
		t.Errorf("with a key: %d %s", r.Status, r.Body)
	}

	// mcp-remote: it reads WWW-Authenticate, fetches the document, then the
	// authorization server's metadata, registers, and waits for a browser
	// that never comes: bounded, then killed.
	dir, err := peers.NodeDir()
	if err != nil {
		t.Fatal(err)
	}
	proxy := filepath.Join(dir, "node_modules", "mcp-remote", "dist", "proxy.js")
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: %v (then: cd test/node && npm ci)", err)
	}
	if _, err := os.Stat(proxy); err != nil {
		t.Fatalf("mcp-remote is missing (%v): cd test/node && npm ci", err)
	}
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, proxy, base+"/mcp", fmt.Sprint(loopbackPort(t, freeport.Addr(t))), "--allow-http")
	cmd.Env = append(os.Environ(), "HOME="+home, "MCP_REMOTE_CONFIG_DIR="+home, "BROWSER=true")
	stdin, err := cmd.StdinPipe() // held open: mcp-remote serves stdio until killed
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var stderr tailWriter
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() { cancel(); <-done }()

	const asMetadata = "GET /.well-known/oauth-authorization-server"
	for i := 0; i < 300 && !slices.Contains(as.requested(), asMetadata); i++ {
		select {
		case <-done:
			i = 300
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !slices.Contains(as.requested(), asMetadata) {
		t.Fatalf("mcp-remote never asked the authorization server's metadata; it asked %v\nstderr: %s", as.requested(), stderr.String())
	}
	t.Logf("authorization server saw: %v", as.requested())
	sawDoc := false
	for _, s := range node.served() {
		if strings.HasPrefix(s.Path, "/.well-known/oauth-protected-resource") && s.Status == 200 {
			sawDoc = true
		}
	}
	if !sawDoc {
		t.Error("mcp-remote did not fetch the metadata document from the plugin")
	}
}

// tailWriter keeps the last 16 KiB written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > 16<<10 {
		w.buf = w.buf[len(w.buf)-16<<10:]
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// serializedLog reads what Kong's logging plugins receive from
// kong.log.serialize(): on real Kong, the lines of Kong's own file-log
// plugin, added to the route; on the stand-in (which runs no bundled
// logging plugin), the Serialized field of the requests' records.
type serializedLog struct {
	file string // file-log's path (real Kong)
	recs recordLog
}

// option adds what the log needs to a node: file-log on real Kong, the
// records on the stand-in.
func (l *serializedLog) option() nodeOption {
	return withRecords(&l.recs)
}

// deck adds file-log to the deck file's MCP route on real Kong.
func (l *serializedLog) deck(t *testing.T, deckYAML []byte) []byte {
	t.Helper()
	if !onKong() {
		return deckYAML
	}
	l.file = filepath.Join(t.TempDir(), "file-log.json")
	var doc map[string]any
	if err := yaml.Unmarshal(deckYAML, &doc); err != nil {
		t.Fatal(err)
	}
	route := doc["services"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)
	route["plugins"] = append(route["plugins"].([]any), map[string]any{"name": "file-log", "config": map[string]any{"path": l.file}})
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mcp waits (bounded) for the serialized log entry of the answer r (found
// by its X-Kong-Request-Id) and returns its mcp object (nil: none).
func (l *serializedLog) mcp(t *testing.T, r rpcResult) map[string]any {
	t.Helper()
	id := r.Header.Get("X-Kong-Request-Id")
	var raw string
	if !onKong() {
		raw = l.recs.of(t, r).Serialized
	} else {
		for deadline := time.Now().Add(10 * time.Second); raw == ""; time.Sleep(50 * time.Millisecond) {
			b, _ := os.ReadFile(l.file)
			for _, line := range strings.Split(string(b), "\n") {
				var e struct{ Request struct{ ID string } }
				if json.Unmarshal([]byte(line), &e) == nil && e.Request.ID == id {
					raw = line
				}
			}
			if raw == "" && time.Now().After(deadline) {
				t.Fatalf("no file-log entry for request %s within 10 s", id)
			}
		}
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("serialized: %v: %q", err, raw)
	}
	m, _ := doc["mcp"].(map[string]any)
	return m
}

// TestMCPLogFields: with log.serialize on, what Kong's logging plugins send
// (kong.log.serialize() in the Log phase) carries the mcp object; off, it
// does not, and no call is made for it.
func TestMCPLogFields(t *testing.T) {
	a := peers.StartLegacy(t, "log-a")
	var logOn, logOff serializedLog
	on := startNode(t, logOn.deck(t, deck(t, deckOptions{relay: map[string]any{"log": map[string]any{"serialize": true},
		"tools": map[string]any{"deny": []any{"sleep"}}}})), addrs(a), logOn.option())
	off := startNode(t, logOff.deck(t, deck(t, deckOptions{})), addrs(a), logOff.option())

	c := newPinRaw(demoKey, 10*time.Second)
	c.initialize(t, on.URL())
	c.initialized(t, on.URL())
	_, r := c.whoami(t, on.URL())
	got := logOn.mcp(t, r)
	want := map[string]any{"method": "tools/call", "tool": "whoami", "protocol": c.version, "session": sessionFingerprint(c.session)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tools/call: mcp = %v, want %v", got, want)
	}
	if strings.Contains(fmt.Sprint(got), c.session) { // Kong's own request headers still carry it
		t.Error("the mcp object carries the session id itself")
	}
	r = c.request(t, on.URL(), "tools/call", `{"name":"sleep","arguments":{"ms":1}}`)
	if got := logOn.mcp(t, r); got["reason"] != "tool_forbidden" || got["tool"] != "sleep" {
		t.Errorf("denied call: mcp = %v", got)
	}
	r = newRaw("").request(t, on.URL(), "tools/list", "")
	if got := logOn.mcp(t, r); got["reason"] != "unauthorized" || got["method"] != "tools/list" {
		t.Errorf("anonymous: mcp = %v", got)
	}

	o := newPinRaw(demoKey, 10*time.Second)
	o.initialize(t, off.URL())
	_, r = o.whoami(t, off.URL())
	if got := logOff.mcp(t, r); got != nil {
		t.Errorf("log.serialize off: mcp = %v", got)
	}
	if onStandin(t, "no set_serialize_value call with log.serialize off", "PDK call counts are the stand-in's records") {
		if rec := logOff.recs.of(t, r); rec.Calls["access"]["kong.log.set_serialize_value"] != 0 {
			t.Errorf("log.serialize off: %s", rec)
		}
	}
}

// sessionFingerprint is the plugin's fingerprint of a session id (the first
// 4 bytes of its SHA-256, hex).
func sessionFingerprint(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:4])
}

// TestAuthzPDKCost: what access rules, log fields and the metadata cost in
// PDK calls, by request kind (TestPDKCallBudget holds the counts without
// them, which these features leave unchanged). bench/results.md's table
// has the same rows.
func TestAuthzPDKCost(t *testing.T) {
	needStandin(t, "PDK call counts are the stand-in's records")
	a := peers.StartLegacy(t, "cost-a")
	var recs recordLog
	rules := startNode(t, deck(t, deckOptions{relay: map[string]any{"tools": map[string]any{
		"rules": []any{map[string]any{"consumers": []any{"demo"}, "deny": []any{"progress"}}}}}}), addrs(a), withRecords(&recs))
	logged := startNode(t, deck(t, deckOptions{relay: map[string]any{"log": map[string]any{"serialize": true}}}), addrs(a), withRecords(&recs))
	prm := startNode(t, withWellKnownPath(t, deck(t, deckOptions{relay: map[string]any{"auth": map[string]any{
		"resource_metadata": map[string]any{"authorization_servers": []any{"https://auth.example.com"}}}}})), addrs(a), withRecords(&recs))

	check := func(kind string, r rpcResult, wantStatus, want int) {
		t.Helper()
		rec := recs.of(t, r)
		n := pdkCalls(rec)
		if r.Status != wantStatus || n != want {
			t.Errorf("%s: status %d, %d PDK calls; want %d, %d: %s", kind, r.Status, n, wantStatus, want, rec)
		} else {
			t.Logf("%s: %d PDK calls: %v", kind, n, rec.Calls)
		}
	}

	rc := newPinRaw(demoKey, 10*time.Second)
	rc.initialize(t, rules.URL()) // also starts the instance
	rc.initialized(t, rules.URL())
	_, r := rc.whoami(t, rules.URL())
	check("access rules: pinned tools/call allowed", r, 200, 5)
	check("access rules: pinned tools/call denied", rc.request(t, rules.URL(), "tools/call", `{"name":"progress","arguments":{}}`), 200, 3)
	r = rc.request(t, rules.URL(), "tools/list", "")
	if strings.Contains(string(r.Body), `"progress"`) {
		t.Errorf("tools/list shows progress: %s", r.Body)
	}
	check("access rules: pinned tools/list, entries hidden", r, 200, 8)
	oc := newPinRaw(otherKey, 10*time.Second)
	oc.initialize(t, rules.URL())
	oc.initialized(t, rules.URL())
	r = oc.request(t, rules.URL(), "tools/list", "")
	if !strings.Contains(string(r.Body), `"progress"`) {
		t.Errorf("other's tools/list lacks progress: %s", r.Body)
	}
	check("access rules: pinned tools/list, nothing hidden for this consumer", r, 200, 7)

	lc := newPinRaw(demoKey, 10*time.Second)
	lc.initialize(t, logged.URL())
	lc.initialized(t, logged.URL())
	_, r = lc.whoami(t, logged.URL())
	check("log.serialize: pinned tools/call", r, 200, 6)

	newRaw("").request(t, prm.URL(), "ping", "") // starts the instance
	check("resource_metadata: anonymous initialize", newRaw("").initialize(t, prm.URL()), 401, 5)
	req, err := http.NewRequest(http.MethodGet, prm.URL()+"/.well-known/oauth-protected-resource/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	check("resource_metadata: the document", newRaw("").do(t, req), 200, 4)
	req, _ = http.NewRequest(http.MethodDelete, prm.URL()+"/mcp", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("apikey", demoKey)
	plain := newRaw(demoKey).do(t, req)
	check("resource_metadata: a request without MCP markers", plain, plain.Status, 3)
}

// TestAuthzPromptsAndResources: the reference server's prompts and
// resources (answered as SSE) are hidden and refused by their rules; the
// same lists through a node without rules are not empty.
func TestAuthzPromptsAndResources(t *testing.T) {
	ev := peers.StartEverything(t)
	plain := startNode(t, deck(t, deckOptions{}), addrs(ev))
	ruled := startNode(t, deck(t, deckOptions{relay: map[string]any{
		"prompts":   map[string]any{"deny": []any{"*"}},
		"resources": map[string]any{"rules": []any{map[string]any{"consumers": []any{"demo"}, "deny": []any{"*"}}}},
	}}), addrs(ev))

	list := func(node gateway, key, method, member string) (rpcResult, []any) {
		t.Helper()
		c := newPinRaw(key, 15*time.Second)
		if r := c.initialize(t, node.URL()); r.Status != 200 || c.session == "" {
			t.Fatalf("initialize: %d %s", r.Status, r.Body)
		}
		c.initialized(t, node.URL())
		r := c.request(t, node.URL(), method, "")
		res, _ := r.Message["result"].(map[string]any)
		entries, _ := res[member].([]any)
		return r, entries
	}
	for _, l := range []struct{ method, member string }{{"prompts/list", "prompts"}, {"resources/list", "resources"}} {
		r, all := list(plain, demoKey, l.method, l.member)
		if len(all) == 0 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%s without rules: %d entries, %s: %s", l.method, len(all), r.Header.Get("Content-Type"), r.Body)
		}
		r, got := list(ruled, demoKey, l.method, l.member)
		if r.Status != 200 || got == nil || len(got) != 0 {
			t.Errorf("%s for demo with rules: %d %s", l.method, r.Status, r.Body)
		}
		_, others := list(ruled, otherKey, l.method, l.member)
		if l.member == "resources" && len(others) != len(all) {
			t.Errorf("resources/list for other: %d entries, want %d", len(others), len(all))
		}
	}

	c := newPinRaw(demoKey, 15*time.Second)
	c.initialize(t, ruled.URL())
	c.initialized(t, ruled.URL())
	r := c.request(t, ruled.URL(), "prompts/get", `{"name":"simple-prompt"}`)
	if reasonOf(r) != "prompt_forbidden" || r.Message["id"] == nil {
		t.Errorf("prompts/get: %d %s", r.Status, r.Body)
	}
	r = c.request(t, ruled.URL(), "resources/read", `{"uri":"demo://resource/static/document/architecture.md"}`)
	if reasonOf(r) != "resource_forbidden" {
		t.Errorf("resources/read: %d %s", r.Status, r.Body)
	}
}
