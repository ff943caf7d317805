package peers_test

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
)

// checkFull checks the steps of client.mjs's full scenario.
func checkFull(t *testing.T, res peers.NodeResult) {
	t.Helper()
	if !res.OK {
		t.Errorf("not ok: %s", res.Raw)
	}
	if res.SessionID == "" || res.ProtocolVersion != mcp.ProtocolVersion20251125 {
		t.Errorf("session %q protocol %q", res.SessionID, res.ProtocolVersion)
	}
	want := []string{"initialize", "tools-list", "progress", "elicitation", "sampling"}
	var got []string
	for _, s := range res.Steps {
		got = append(got, s.Scenario)
		if !s.OK {
			t.Errorf("step %s failed: %+v", s.Scenario, s)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	if p := res.Step("progress"); p != nil {
		if len(p.Progress) != 3 || !p.InOrder || len(p.Late) != 0 {
			t.Errorf("progress: %d notifications, in order %v, late %d", len(p.Progress), p.InOrder, len(p.Late))
		}
		for i, ev := range p.Progress {
			if ev.Seq >= p.ResultSeq || int(ev.Progress) != i+1 {
				t.Errorf("progress %d: %+v (result seq %d)", i, ev, p.ResultSeq)
			}
		}
	}
	for _, name := range []string{"elicitation", "sampling"} {
		s := res.Step(name)
		if s == nil || !s.AnswerSeen || len(s.ServerReqs) != 1 {
			t.Errorf("%s: %+v", name, s)
		}
	}
	if res.Terminate == nil || !res.Terminate.OK {
		t.Errorf("DELETE of the session: %+v", res.Terminate)
	}
	if len(res.AsyncErrors) != 0 {
		t.Errorf("async errors: %+v", res.AsyncErrors)
	}
}

// TestEverythingFull: the TypeScript SDK client against the reference server:
// trigger-long-running-operation (progress), trigger-elicitation-request and
// trigger-sampling-request, the last two on the tools/call POST stream.
func TestEverythingFull(t *testing.T) {
	t.Parallel()
	e := peers.StartEverything(t)
	res, err := peers.RunNodeClient(t, e.URL(), nil, "full")
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, res.Raw, e.Logs())
	}
	checkFull(t, res)
	if res.ServerInfo == nil || res.ServerInfo.Name != "mcp-servers/everything" {
		t.Errorf("server info %+v", res.ServerInfo)
	}
	for _, tool := range []string{"trigger-long-running-operation", "trigger-elicitation-request", "trigger-sampling-request", "echo"} {
		if !slices.Contains(res.ToolNames(), tool) {
			t.Errorf("no tool %s in %v", tool, res.ToolNames())
		}
	}
	if got := res.Step("progress").Tool; got != "trigger-long-running-operation" {
		t.Errorf("progress tool %q", got)
	}

	// The everything server answers initialize over SSE, and wants the
	// session id on every later request.
	if len(res.HTTP) == 0 || res.HTTP[0].RPC != "initialize" || !strings.HasPrefix(res.HTTP[0].ContentType, "text/event-stream") {
		t.Errorf("initialize exchange: %+v", res.HTTP)
	}

	// A single call, with the session restarted.
	res, err = peers.RunNodeClient(t, e.URL(), map[string]string{"apikey": "ignored"}, "call", "echo", `{"message":"hi"}`)
	if err != nil || res.Step("call").Text != "Echo: hi" {
		t.Errorf("call echo: %v %s", err, res.Raw)
	}
}

// TestEverythingUnknownSession documents how the everything server answers a
// session it does not know (a request misrouted to another replica): its own
// router answers 400 with -32000 and no id at all, for POST, GET and DELETE,
// and even for an initialize that carries a stale session id. Not 404.
func TestEverythingUnknownSession(t *testing.T) {
	t.Parallel()
	e := peers.StartEverything(t)
	const stale = "5e818610-c3d8-4297-8f9e-ae5772ea5f68"
	for _, tc := range []struct{ method, body string }{
		{http.MethodPost, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`},
		{http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`},
		{http.MethodDelete, ""},
	} {
		resp, body := mcptest.RawRequest(t, tc.method, e.URL(), stale, tc.body)
		if resp.StatusCode != http.StatusBadRequest || body != `{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}` {
			t.Errorf("%s %s: %d %s", tc.method, tc.body, resp.StatusCode, body)
		}
	}
	if resp, _ := mcptest.RawRequest(t, http.MethodGet, e.URL(), stale, ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

// TestLegacyNodeClient: the TypeScript SDK client against an mcp-go replica.
func TestLegacyNodeClient(t *testing.T) {
	t.Parallel()
	a := peers.StartLegacy(t, "replica-n")
	res, err := peers.RunNodeClient(t, a.URL(), map[string]string{"apikey": "secret"}, "full", "call", "whoami", "{}")
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Raw)
	}
	call := res.Steps[len(res.Steps)-1]
	res.Steps = res.Steps[:len(res.Steps)-1]
	checkFull(t, res)
	if call.Scenario != "call" || call.Text != "replica-n" {
		t.Errorf("whoami: %+v", call)
	}
	if s := res.Step("elicitation"); s.Tool != "ask" || s.Text != "relay-elicit-answer" {
		t.Errorf("ask: %+v", s)
	}
	if s := res.Step("sampling"); s.Tool != "sample" || s.Text != "relay-sample-answer" {
		t.Errorf("sample: %+v", s)
	}
	st := a.MustStats(t)
	if st.MisroutedTotal != 0 || st.SessionsCreated != 1 || st.Sessions[0] != res.SessionID {
		t.Errorf("stats: %+v", st)
	}
	// initialize, initialized, tools/list, 4 calls, 2 answers, GET, DELETE.
	if st.RequestsByRPC["response"] != 2 || st.RequestsByMethod[http.MethodDelete] != 1 || st.RequestsByMethod[http.MethodGet] < 1 {
		t.Errorf("stats: %+v", st)
	}
}

// TestNodeClientErrors: what the TypeScript SDK client reports for a bare
// 401 and for an unknown session.
func TestNodeClientErrors(t *testing.T) {
	t.Parallel()
	u := peers.StartBad(t, peers.ModeBare401)
	res, err := peers.RunNodeClient(t, u.URL(), nil, "initialize")
	if err == nil || res.OK || res.ExitCode != 1 || len(res.Errors) != 1 {
		t.Fatalf("bare 401: err %v, result %s", err, res.Raw)
	}
	e := res.Errors[0]
	var body map[string]string
	_ = json.Unmarshal(e.Body, &body)
	if e.Scenario != "initialize" || e.Kind != "http" || e.HTTPStatus != http.StatusUnauthorized || body["error"] != "Invalid or missing access key" || e.Code != nil {
		t.Errorf("bare 401 error: %+v", e)
	}

	// A silent upstream: the SDK's own timeout, reported as kind "timeout"
	// (the SDK says -32001 "Request timed out").
	silent := peers.StartBad(t, peers.ModeSilent)
	res, err = peers.RunNodeClientWith(t, peers.NodeClientOptions{URL: silent.URL(), Timeout: time.Second}, "initialize")
	if err == nil || len(res.Errors) != 1 || res.Errors[0].Kind != "timeout" || res.Errors[0].Code == nil || *res.Errors[0].Code != -32001 {
		t.Errorf("silent: %v %s", err, res.Raw)
	}

	// Usage errors exit 2.
	res, err = peers.RunNodeClient(t, u.URL(), nil, "no-such-scenario")
	if err == nil || res.ExitCode != 2 || res.UsageError == "" {
		t.Errorf("usage error: %v %s", err, res.Raw)
	}
}

// TestNodeClientHelp: --help prints the usage (the comment that opens the
// script) and exits 0.
func TestNodeClientHelp(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("node", filepath.Join("..", "node", "client.mjs"), "--help").Output()
	if err != nil {
		t.Fatalf("client.mjs --help: %v\n%s", err, out)
	}
	for _, want := range []string{"Usage:", "node client.mjs [options] <scenario>...", "--url URL", "wait-file <path>"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "//") || strings.Contains(string(out), "import ") {
		t.Errorf("--help prints more than the usage:\n%s", out)
	}
}
