package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// badCase is one malformed or unusual request and the answer it must get.
type badCase struct {
	name    string
	method  string
	key     string   // apikey; "" = anonymous
	headers []string // raw "Name: value" lines, sent byte for byte
	body    string
	// want: "pass" (reaches the MCP server), or the plugin's answer
	want       string
	wantStatus int    // for answers
	wantID     string // raw id in the envelope ("null", "7", `"x"`); "" = no body
	wantCode   int
}

const (
	anyBody  = "any"
	pass     = "pass"
	answered = "answered"
	legacyH  = "Accept: application/json, text/event-stream"
	jsonH    = "Content-Type: application/json"
)

func modernH(method, name string) []string {
	h := []string{legacyH, jsonH, "MCP-Protocol-Version: 2026-07-28", "Mcp-Method: " + method}
	if name != "" {
		h = append(h, "Mcp-Name: "+name)
	}
	return h
}

func badInputCases() []badCase {
	h := []string{legacyH, jsonH}
	sess := func(v string) []string { return append([]string{"Mcp-Session-Id: " + v}, h...) }
	long := strings.Repeat("a", 10<<10)
	huge := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("x", 3<<20) + `"}}}`
	anon := func(name, body string, status int, id string) badCase {
		return badCase{name: "anonymous " + name, method: "POST", headers: h, body: body, want: answered, wantStatus: status, wantID: id, wantCode: -32001}
	}
	return []badCase{
		// Bodies, as the anonymous consumer: the envelope must carry the right id or null.
		anon("invalid JSON", `{"jsonrpc":"2.0","id":1,"method"}`, 401, "null"),
		anon("truncated JSON", `{"jsonrpc":"2.0","id":1,"met`, 401, "null"),
		anon("JSON string", `"hello"`, 401, "null"),
		anon("JSON number", `42`, 401, "null"),
		anon("JSON null", `null`, 401, "null"),
		anon("JSON true", `true`, 401, "null"),
		anon("jsonrpc missing", `{"id":5,"method":"ping"}`, 200, "5"),
		anon("jsonrpc wrong", `{"jsonrpc":"1.0","id":6,"method":"ping"}`, 200, "6"),
		anon("id object", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, 401, "null"),
		anon("id array", `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, 401, "null"),
		anon("id boolean", `{"jsonrpc":"2.0","id":true,"method":"ping"}`, 401, "null"),
		anon("id null", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, 401, "null"),
		anon("id 10 KB string", `{"jsonrpc":"2.0","id":"`+long+`","method":"ping"}`, 200, `"`+long+`"`),
		anon("id huge number", `{"jsonrpc":"2.0","id":1e400,"method":"ping"}`, 200, "1e400"),
		anon("id negative float", `{"jsonrpc":"2.0","id":-1.5e-3,"method":"ping"}`, 200, "-1.5e-3"),
		anon("id with escapes", `{"jsonrpc":"2.0","id":"a\"b\\c\u00e9","method":"ping"}`, 200, `"a\"b\\c\u00e9"`),
		anon("empty batch", `[]`, 401, "null"),
		anon("batch of notifications", `[{"jsonrpc":"2.0","method":"notifications/a"},{"jsonrpc":"2.0","method":"notifications/b"}]`, 401, ""),
		anon("body of 3 MiB", huge, 401, "null"),
		anon("not UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}", 401, "null"),
		{name: "anonymous mixed batch", method: "POST", headers: h, want: answered, wantStatus: 200, wantCode: -32001,
			body: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"},7]`, wantID: "batch"},
		{name: "anonymous text/plain body", method: "POST", headers: []string{legacyH, "Content-Type: text/plain"},
			body: `{"jsonrpc":"2.0","id":8,"method":"ping"}`, want: answered, wantStatus: 200, wantID: "8", wantCode: -32001},
		{name: "anonymous without Content-Type", method: "POST", headers: []string{legacyH},
			body: `{"jsonrpc":"2.0","id":9,"method":"ping"}`, want: answered, wantStatus: 200, wantID: "9", wantCode: -32001},
		// A JSON-RPC body is read whatever the method (the method costs a PDK
		// call the plugin saves): the envelope echoes its id.
		{name: "anonymous PUT", method: "PUT", headers: h, body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			want: answered, wantStatus: 200, wantID: "1", wantCode: -32001},

		// Authenticated requests the plugin passes: the server judges them.
		{name: "invalid JSON passes to the server", method: "POST", key: demoKey, headers: h, body: `{"jsonrpc":`, want: pass},
		{name: "3 MiB body passes", method: "POST", key: demoKey, headers: h, body: huge, want: pass},
		{name: "OPTIONS", method: "OPTIONS", headers: []string{"Origin: https://a.example", "Access-Control-Request-Method: POST"}, want: pass},
		{name: "HEAD", method: "HEAD", key: demoKey, headers: []string{"Accept: text/html"}, want: pass},
		{name: "PUT", method: "PUT", key: demoKey, headers: h, body: `{}`, want: pass},
		{name: "GET stream without session", method: "GET", key: demoKey, headers: []string{"Accept: text/event-stream"}, want: pass},
		{name: "DELETE without session", method: "DELETE", key: demoKey, want: pass},

		// Session ids: checked before any store call.
		{name: "session id with a space", method: "POST", key: demoKey, headers: sess("a b"), body: `{"jsonrpc":"2.0","id":11,"method":"ping"}`,
			want: answered, wantStatus: 400, wantID: "11", wantCode: -32600},
		// The stand-in's HTTP server (Go's) refuses control characters in a
		// header before any phase runs; nginx lets \x01 through to the
		// plugin, whose check is unit-tested in handler (TestUnknownSessions).
		{name: "session id with a control char", method: "POST", key: demoKey, headers: sess("a\x01b"), body: `{"jsonrpc":"2.0","id":12,"method":"ping"}`,
			want: answered, wantStatus: 400, wantID: anyBody},
		{name: "session id non-ASCII", method: "POST", key: demoKey, headers: sess("s\xc3\xa9same"), body: `{"jsonrpc":"2.0","id":13,"method":"ping"}`,
			want: answered, wantStatus: 400, wantID: "13", wantCode: -32600},
		{name: "session id 1 KB", method: "POST", key: demoKey, headers: sess(strings.Repeat("a", 1<<10)), body: `{"jsonrpc":"2.0","id":14,"method":"ping"}`,
			want: answered, wantStatus: 400, wantID: "14", wantCode: -32600},
		// nginx refuses a header line over one of its 8 KB header buffers
		// (Kong keeps large_client_header_buffers 4 8k) before any phase:
		// Kong's own 400, never the plugin or the server.
		{name: "session id 10 KB", method: "POST", key: demoKey, headers: sess(long), body: `{"jsonrpc":"2.0","id":14,"method":"ping"}`,
			want: answered, wantStatus: 400, wantID: anyBody},
		{name: "session id twice", method: "POST", key: demoKey, headers: append(sess("a"), "Mcp-Session-Id: b"), body: `{"jsonrpc":"2.0","id":15,"method":"ping"}`,
			want: answered, wantStatus: 400, wantID: "15", wantCode: -32600},
		{name: "unknown session id", method: "POST", key: demoKey, headers: sess("never-issued"), body: `{"jsonrpc":"2.0","id":16,"method":"ping"}`,
			want: answered, wantStatus: 404, wantID: "16", wantCode: -32001},
		{name: "unknown session id on GET", method: "GET", key: demoKey, headers: []string{"Accept: text/event-stream", "Mcp-Session-Id: never-issued"},
			want: answered, wantStatus: 404, wantID: "null", wantCode: -32001},
		{name: "unknown session id on DELETE", method: "DELETE", key: demoKey, headers: []string{"Mcp-Session-Id: never-issued"},
			want: answered, wantStatus: 404, wantID: "null", wantCode: -32001},

		// 2026-07-28: headers must match the body (routes and ACLs may match on them).
		{name: "Mcp-Method disagrees", method: "POST", key: demoKey, headers: modernH("tools/list", ""),
			body: `{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"echo"}}`, want: answered, wantStatus: 400, wantID: "21", wantCode: -32020},
		{name: "Mcp-Name disagrees", method: "POST", key: demoKey, headers: modernH("tools/call", "safe"),
			body: `{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"rm"}}`, want: answered, wantStatus: 400, wantID: "22", wantCode: -32020},
		{name: "Mcp-Name missing", method: "POST", key: demoKey, headers: modernH("tools/call", ""),
			body: `{"jsonrpc":"2.0","id":23,"method":"tools/call","params":{"name":"echo"}}`, want: answered, wantStatus: 400, wantID: "23", wantCode: -32020},
		{name: "Mcp-Name duplicated in the body", method: "POST", key: demoKey, headers: modernH("tools/call", "safe"),
			body: `{"jsonrpc":"2.0","id":24,"method":"tools/call","params":{"name":"safe","name":"rm"}}`, want: answered, wantStatus: 400, wantID: "24", wantCode: -32020},
		{name: "Mcp-Name malformed base64", method: "POST", key: demoKey, headers: modernH("tools/call", "=?base64?***?="),
			body: `{"jsonrpc":"2.0","id":25,"method":"tools/call","params":{"name":"echo"}}`, want: answered, wantStatus: 400, wantID: "25", wantCode: -32020},
		{name: "Mcp-Name base64 matches", method: "POST", key: demoKey,
			headers: modernH("tools/call", "=?base64?"+base64.StdEncoding.EncodeToString([]byte("échø"))+"?="),
			body:    `{"jsonrpc":"2.0","id":26,"method":"tools/call","params":{"name":"échø"}}`, want: pass},
		{name: "legacy session id on a 2026-07-28 request", method: "POST", key: demoKey,
			headers: append(modernH("tools/list", ""), "Mcp-Session-Id: never-issued"),
			body:    `{"jsonrpc":"2.0","id":27,"method":"tools/list"}`, want: pass},
	}
}

// TestBadInput: every case gets its defined answer within a bound, the
// plugin process never panics or restarts, and no session is stored.
func TestBadInput(t *testing.T) {
	a := peers.StartLegacy(t, "replica-a")
	maddr := freeport.Addr(t)
	node := startNode(t, deck(t, deckOptions{}), addrs(a), withMetrics(maddr))
	cases := badInputCases()
	if len(cases) < 40 {
		t.Fatalf("%d cases; the campaign asks for at least 40", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := a.MustStats(t).RequestsTotal
			start := time.Now()
			resp, body := rawHTTP(t, node.Addr(), tc)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("answered after %v", took)
			}
			reached := a.MustStats(t).RequestsTotal > before
			if tc.want == pass {
				if !reached {
					t.Errorf("did not reach the server: %d %s", resp.StatusCode, clip(body))
				}
				return
			}
			if reached {
				t.Errorf("reached the server; want the plugin's answer")
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, clip(body))
			}
			checkEnvelope(t, tc, body)
		})
	}
	m := metrics(t, maddr)
	if m["mcp_relay_panics_total"] != 0 || m["mcp_relay_sessions_learned_total"] != 0 {
		t.Errorf("panics %v, sessions learned %v; want 0 and 0", m["mcp_relay_panics_total"], m["mcp_relay_sessions_learned_total"])
	}
	if n := node.PluginStarts(); n != 1 {
		t.Errorf("plugin process started %d times", n)
	}
}

func checkEnvelope(t *testing.T, tc badCase, body []byte) {
	t.Helper()
	if tc.wantID == "" {
		if len(body) != 0 {
			t.Errorf("want no body, got %s", clip(body))
		}
		return
	}
	if tc.wantID == anyBody {
		return
	}
	if tc.wantID == "batch" {
		var arr []map[string]json.RawMessage
		if err := json.Unmarshal(body, &arr); err != nil || len(arr) != 2 || string(arr[0]["id"]) != "1" || string(arr[1]["id"]) != "null" {
			t.Errorf("batch envelope: %v %s", err, clip(body))
		}
		return
	}
	var env struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct{ Code int }
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, clip(body))
	}
	if env.JSONRPC != "2.0" || string(env.ID) != tc.wantID || env.Error.Code != tc.wantCode {
		t.Errorf("envelope id %s code %d, want id %s code %d", clip(env.ID), env.Error.Code, clip([]byte(tc.wantID)), tc.wantCode)
	}
}

// rawHTTP writes the request byte for byte (Go's client refuses some of
// these headers) and reads the answer.
func rawHTTP(t *testing.T, addr string, tc badCase) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := 10 * time.Second
	if tc.method == "GET" {
		deadline = 2 * time.Second // a stream may send nothing for a while
	}
	_ = conn.SetDeadline(time.Now().Add(deadline))
	var b strings.Builder
	fmt.Fprintf(&b, "%s /mcp HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", tc.method, addr)
	if tc.key != "" {
		fmt.Fprintf(&b, "apikey: %s\r\n", tc.key)
	}
	for _, h := range tc.headers {
		b.WriteString(h + "\r\n")
	}
	if tc.body != "" || tc.method == "POST" || tc.method == "PUT" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(tc.body))
	}
	b.WriteString("\r\n" + tc.body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(tc.method, "/", nil)
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if ne, ok := err.(net.Error); ok && ne.Timeout() && tc.method == "GET" {
		return &http.Response{StatusCode: 0}, nil // an open stream, silent so far
	}
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	if tc.method == "GET" && resp.StatusCode == http.StatusOK {
		return resp, nil // an open stream: its status is the answer
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
