package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

// idleRecords waits (at most 5 s) until the stand-in node has no request
// or Log event pending (an open GET stream keeps it busy: then all 5 s) and
// returns the records l collected.
func idleRecords(t testing.TB, n gateway, l *recordLog) []standin.RequestRecord {
	t.Helper()
	if sn := n.standinNode(); sn != nil {
		sn.WaitIdle(5 * time.Second)
	}
	return l.all(t)
}

// TestLegacyClientThroughKong: the mcp-go client, pinned to the legacy
// protocol, through one node and two stateful replicas: the whole story,
// from initialize to DELETE, with every request reaching its replica.
func TestLegacyClientThroughKong(t *testing.T) {
	a, b := peers.StartLegacy(t, "replica-a"), peers.StartLegacy(t, "replica-b")
	var recs recordLog
	node := startNode(t, deck(t, deckOptions{}), addrs(a, b), withRecords(&recs))

	c, init, err := mcptest.NewClient(t, node.URL()+"/mcp", mcptest.Config{
		Version: mcp.ProtocolVersion20251125, Listen: true, Headers: map[string]string{"apikey": demoKey}})
	if err != nil {
		t.Fatalf("initialize through Kong: %v", err)
	}
	if init.ProtocolVersion != mcp.ProtocolVersion20251125 || c.GetSessionId() == "" {
		t.Fatalf("protocol %q session %q", init.ProtocolVersion, c.GetSessionId())
	}
	owner := mcptest.Text(mcptest.CallTool(t, c, "whoami", nil, nil))
	list, err := c.ListTools(t.Context(), mcp.ListToolsRequest{})
	if err != nil || len(list.Tools) == 0 {
		t.Fatalf("tools/list: %v", err)
	}
	if got := mcptest.Text(mcptest.CallTool(t, c, "echo", map[string]any{"text": "héllo"}, nil)); got != "héllo" {
		t.Errorf("echo %q", got)
	}

	// Streaming, not buffering: the first progress notification reaches the
	// client while the tool still runs (5 steps 250 ms apart). A buffered
	// answer would deliver it together with the result.
	start := time.Now()
	firstProgress := make(chan time.Duration, 1)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationProgress) {
			select {
			case firstProgress <- time.Since(start):
			default:
			}
		}
	})
	mcptest.CallTool(t, c, "progress", map[string]any{"steps": 5, "delay_ms": 250}, &mcp.Meta{ProgressToken: "p1"})
	done := time.Since(start)
	select {
	case first := <-firstProgress:
		if done-first < 500*time.Millisecond {
			t.Errorf("first progress at %v, result at %v: the answer was not streamed", first, done)
		}
		t.Logf("first progress notification after %v, result after %v", first, done)
	default:
		t.Error("no progress notification reached the client")
	}

	// Server-to-client requests: elicitation on the POST stream, sampling on
	// the GET stream. Both need the answer to reach the asking replica.
	if got := mcptest.Text(mcptest.CallTool(t, c, "ask", map[string]any{"message": "name?"}, nil)); got != mcptest.ElicitAnswer {
		t.Errorf("elicitation round trip: %q", got)
	}
	if got := mcptest.Text(mcptest.CallTool(t, c, "sample", map[string]any{"prompt": "hi"}, nil)); got != mcptest.SampleAnswer {
		t.Errorf("sampling round trip: %q", got)
	}
	if got := mcptest.Text(mcptest.CallTool(t, c, "whoami", nil, nil)); got != owner {
		t.Errorf("session moved from %s to %s", owner, got)
	}
	if n := misroutes(t, a, b); n != 0 {
		t.Errorf("%d requests reached a replica that does not own their session", n)
	}

	// DELETE (mcp-go's Close sends it without our headers, so send it raw).
	raw := newRaw(demoKey)
	raw.session, raw.version = c.GetSessionId(), mcp.ProtocolVersion20251125
	if r := raw.delete(t, node.URL()); r.Status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.Status, r.Body)
	}
	waitFor(t, func() bool { return raw.request(t, node.URL(), "ping", "").Status == http.StatusNotFound })
	r := raw.request(t, node.URL(), "tools/list", "")
	if r.Status != http.StatusNotFound || r.dataField("reason") != "session_not_found" {
		t.Errorf("request after DELETE: %d %s", r.Status, r.Body)
	}

	// What Kong saw: initialize buffered, tools/call streamed. (The GET
	// stream is still open, so its record is not in yet; sampling, which
	// travels on it, could not have worked had it been buffered.)
	if !onStandin(t, "initialize buffered, tools/call streamed, as Kong's records show", "the records are the stand-in's (the progress timing above shows the streaming on both)") {
		return
	}
	var bufferedInit, streamedCall bool
	for _, rec := range idleRecords(t, node, &recs) {
		switch {
		case rec.Method == "POST" && rec.Buffered && rec.Status == 200:
			bufferedInit = true
		case rec.Method == "POST" && !rec.Buffered && rec.Status == 200:
			streamedCall = true
		}
	}
	if !bufferedInit || !streamedCall {
		t.Errorf("buffering: initialize buffered %v, tools/call streamed %v", bufferedInit, streamedCall)
	}
}

// TestTypeScriptClientEverything: the official TypeScript SDK client and two
// replicas of the reference everything server, through one node.
func TestTypeScriptClientEverything(t *testing.T) {
	e1, e2 := peers.StartEverything(t), peers.StartEverything(t)
	node := startNode(t, deck(t, deckOptions{}), addrs(e1, e2))
	for i := range 2 {
		res, err := peers.RunNodeClient(t, node.URL()+"/mcp", map[string]string{"apikey": demoKey}, "full")
		if err != nil || !res.OK {
			t.Fatalf("run %d: %v\n%s", i, err, res.Raw)
		}
		for _, step := range []string{"progress", "elicitation", "sampling"} {
			if s := res.Step(step); s == nil || !s.OK {
				t.Errorf("run %d: step %s: %+v", i, step, s)
			}
		}
		if len(res.ServerRequests) < 2 {
			t.Errorf("run %d: server requests answered: %+v", i, res.ServerRequests)
		}
	}
}

// TestAuthEnvelopes: key-auth with `anonymous` lets a bad key through as the
// anonymous consumer, and mcp-relay answers with an envelope echoing the id.
func TestAuthEnvelopes(t *testing.T) {
	a := peers.StartLegacy(t, "replica-a")
	node := startNode(t, deck(t, deckOptions{}), addrs(a))
	tests := []struct {
		name, key, body string
		wantStatus      int
		wantBody        string // exact envelope
	}{
		{"missing key, numeric id", "", `{"jsonrpc":"2.0","id":7,"method":"initialize","params":{}}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials","data":{"status":401,"reason":"unauthorized"}},"id":7}`},
		{"wrong key, string id", "nope", `{"jsonrpc":"2.0","id":"req-9","method":"tools/list"}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials","data":{"status":401,"reason":"unauthorized"}},"id":"req-9"}`},
		{"wrong key, huge number id", "nope", `{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials","data":{"status":401,"reason":"unauthorized"}},"id":123456789012345678901234567890}`},
		{"notification", "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 401,
			`{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials","data":{"status":401,"reason":"unauthorized"}},"id":null}`},
		{"malformed JSON", "", `{"jsonrpc":"2.0","id":`, 401,
			`{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials","data":{"status":401,"reason":"unauthorized"}},"id":null}`},
		{"batch", "", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":"b","method":"tools/list"}]`, 200,
			`[{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials","data":{"status":401,"reason":"unauthorized"}},"id":1},{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials","data":{"status":401,"reason":"unauthorized"}},"id":"b"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRaw(tt.key).post(t, node.URL(), tt.body)
			if r.Status != tt.wantStatus || string(r.Body) != tt.wantBody {
				t.Errorf("got %d %s\nwant %d %s", r.Status, r.Body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	if st := a.MustStats(t); st.RequestsTotal != 0 {
		t.Errorf("anonymous requests reached the replica: %+v", st)
	}

	// Real clients: mcp-go reports a JSON-RPC error it can show, not a
	// transport failure; so does the TypeScript SDK.
	_, _, err := mcptest.NewClient(t, node.URL()+"/mcp", mcptest.Config{
		Version: mcp.ProtocolVersion20251125, Headers: map[string]string{"apikey": "wrong"}})
	if err == nil || !strings.Contains(err.Error(), "Authentication failed") {
		t.Errorf("mcp-go client with a wrong key: %v", err)
	}
	res, _ := peers.RunNodeClient(t, node.URL()+"/mcp", map[string]string{"apikey": "wrong"}, "initialize")
	if len(res.Errors) == 0 || res.Errors[0].Code == nil || *res.Errors[0].Code != -32001 || !strings.Contains(res.Errors[0].Message, "Authentication failed") {
		t.Errorf("TypeScript client with a wrong key: %s", res.Raw)
	}
}

// TestOAuthChallengeKeeps401: with a resource_metadata challenge the auth
// envelope keeps 401 and WWW-Authenticate, so OAuth clients can discover
// the authorization server and still read a JSON-RPC body.
func TestOAuthChallengeKeeps401(t *testing.T) {
	a := peers.StartLegacy(t, "replica-a")
	const challenge = `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{"auth": map[string]any{"www_authenticate": challenge}}}), addrs(a))
	r := newRaw("").request(t, node.URL(), "initialize", "")
	if r.Status != 401 || r.Header.Get("WWW-Authenticate") != challenge || r.dataField("www_authenticate") != challenge {
		t.Fatalf("got %d %v %s", r.Status, r.Header, r.Body)
	}
	_, _, err := mcptest.NewClient(t, node.URL()+"/mcp", mcptest.Config{Version: mcp.ProtocolVersion20251125})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authoriz") {
		t.Errorf("mcp-go should see an authorization-required error: %v", err)
	}
}

// TestUpstreamBare401: an MCP server that rejects with a bare 401 body.
func TestUpstreamBare401(t *testing.T) {
	bad := peers.StartBad(t, peers.ModeBare401)
	node := startNode(t, deck(t, deckOptions{}), addrs(bad))
	r := newRaw(demoKey).post(t, node.URL(), `{"jsonrpc":"2.0","id":"init-1","method":"initialize","params":{}}`)
	want := `{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials (MCP server: Invalid or missing access key)","data":{"status":401,"reason":"unauthorized"}},"id":"init-1"}`
	if r.Status != 200 || string(r.Body) != want {
		t.Errorf("initialize: %d %s", r.Status, r.Body)
	}
	// A streamed method cannot be rewritten (see README): the bare 401 passes.
	r = newRaw(demoKey).post(t, node.URL(), `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}`)
	if r.Status != 401 {
		t.Errorf("streamed tools/call: %d %s", r.Status, r.Body)
	}
}

// TestUpstreamSilent: a server that accepts and never answers. Kong cuts it
// off after the service's read_timeout; with kong/error_template.json the
// client reads a JSON-RPC error, in bounded time. With kong/kong.yaml's
// health checks the silent replica is taken out once two timeouts are
// counted (Kong counts active probes' and proxied requests' timeouts
// together, so the first request may already tip it), and from then on the
// client reads Kong's 503, a JSON-RPC error too.
func TestUpstreamSilent(t *testing.T) {
	silent := peers.StartBad(t, peers.ModeSilent)
	slow := deckOptions{service: map[string]any{"read_timeout": 1000}}
	for _, tc := range []struct {
		name  string
		deck  []byte
		calls []string
		last  int // the last call's status
	}{
		{"without health checks", withoutHealthchecks(t, slow), []string{"initialize", "tools/call"}, http.StatusGatewayTimeout},
		{"kong.yaml's health checks", deck(t, slow), []string{"initialize", "tools/call", "tools/call"}, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := startNode(t, tc.deck, addrs(silent))
			for i, method := range tc.calls {
				start := time.Now()
				r := newRaw(demoKey).post(t, node.URL(), fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":%q,"params":{}}`, method))
				took := time.Since(start)
				want := r.Status == http.StatusGatewayTimeout || r.Status == http.StatusServiceUnavailable
				if i == len(tc.calls)-1 {
					want = r.Status == tc.last
				}
				if !want || r.Message["jsonrpc"] != "2.0" || r.errorField("code") != float64(-31002) {
					t.Errorf("%s: %d %s", method, r.Status, r.Body)
				}
				if took > 10*time.Second {
					t.Errorf("%s: answered after %v; read_timeout is 1 s", method, took)
				}
				t.Logf("%s answered %d after %v", method, r.Status, took)
			}
		})
	}
}

// TestCORSPreflight: OPTIONS passes untouched, even without a key.
func TestCORSPreflight(t *testing.T) {
	a := peers.StartLegacy(t, "replica-a")
	node := startNode(t, deck(t, deckOptions{}), addrs(a))
	send := func(base string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodOptions, base+"/mcp", nil)
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type, mcp-session-id")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, resp.Header.Get("Content-Type"))
		return resp, b.String()
	}
	direct, _ := send(a.BaseURL())
	viaKong, _ := send(node.URL())
	if viaKong.StatusCode != direct.StatusCode || viaKong.Header.Get("Allow") != direct.Header.Get("Allow") {
		t.Errorf("preflight through Kong %d %v, direct %d %v", viaKong.StatusCode, viaKong.Header, direct.StatusCode, direct.Header)
	}
	if st := a.MustStats(t); st.RequestsByMethod["OPTIONS"] != 2 {
		t.Errorf("preflight did not reach the server: %+v", st.RequestsByMethod)
	}
}

// TestModernClientUntouched: mcp-go's default client speaks 2026-07-28 to a
// server that serves it; the plugin neither answers, pins nor delays it.
func TestModernClientUntouched(t *testing.T) {
	modern := startModernServer(t)

	var recs recordLog
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{"session": map[string]any{"learn_wait_ms": 3000}}}),
		[]string{modern}, withRecords(&recs))
	c, init, err := mcptest.NewClient(t, node.URL()+"/mcp", mcptest.Config{Headers: map[string]string{"apikey": demoKey}})
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if init.ProtocolVersion != "2026-07-28" {
		t.Fatalf("negotiated %q, want 2026-07-28", init.ProtocolVersion)
	}
	var got string
	if took := timed(func() { got = mcptest.Text(mcptest.CallTool(t, c, "echo", map[string]any{"text": "modern"}, nil)) }); took > 2*time.Second {
		t.Errorf("echo took %v: it paid the learn wait", took)
	}
	if got != "modern" {
		t.Errorf("echo %q", got)
	}
	if !onStandin(t, "no modern request was answered by the plugin or pinned (set_target)", "PDK call records are the stand-in's") {
		return
	}
	for _, rec := range idleRecords(t, node, &recs) {
		if rec.Exited || rec.Calls["access"]["kong.service.set_target"] > 0 || rec.Duration > 2*time.Second {
			t.Errorf("modern request touched: %s", rec)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 50; i++ {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("condition not reached within 5 s")
}

// startModernServer runs an mcp-go server with its defaults (both protocol
// eras, 2026-07-28 stateless) and an echo tool; it returns its address.
func startModernServer(t testing.TB) string {
	t.Helper()
	s := server.NewMCPServer("modern", "1.0.0")
	s.AddTool(mcp.NewTool("echo", mcp.WithString("text")), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(req.GetString("text", "")), nil
	})
	ln := listen(t)
	srv := &http.Server{Handler: server.NewStreamableHTTPServer(s, server.WithDisableLocalhostProtection(true)), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}
