package handler

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

const rulesConfig = `{"session":{"store":"off"},
 "tools":{"deny":["*_admin"],"rules":[
   {"consumers":["demo"],"deny":["delete_*"]},
   {"groups":["ops"],"allow":["*"]},
   {"consumers":["other"],"allow":["echo"]}]},
 "prompts":{"deny":["secret*"]},
 "resources":{"deny":["file:///etc/*"]}}`

func TestDenyCall(t *testing.T) {
	tests := []struct {
		name       string
		headers    map[string][]string
		body       string
		groups     []string
		wantReason string // "" when the request passes
		wantStatus int
		wantCode   float64
		wantCalls  []string
	}{
		{name: "global deny, legacy: 200 and the legacy auth code",
			headers:    hdr("x-consumer-username", "demo"),
			body:       `{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"user_admin"}}`,
			wantReason: "tool_forbidden", wantStatus: 200, wantCode: -32001,
			wantCalls: []string{"request.get_headers", "request.get_raw_body", "response.exit"}},
		{name: "consumer deny, 2026-07-28: 403 and the modern code",
			headers:    hdr("x-consumer-username", "demo", "mcp-protocol-version", "2026-07-28", "mcp-method", "tools/call", "mcp-name", "delete_repo"),
			body:       `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"delete_repo"}}`,
			wantReason: "tool_forbidden", wantStatus: 403, wantCode: -31001},
		{name: "consumer allowed",
			headers:   hdr("x-consumer-username", "demo"),
			body:      `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`,
			wantCalls: []string{"request.get_headers", "request.get_raw_body", "nginx.set_ctx"}},
		{name: "allow list of another consumer",
			headers:    hdr("x-consumer-username", "other"),
			body:       `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}`,
			wantReason: "tool_forbidden", wantStatus: 200, wantCode: -32001},
		{name: "group rule asks Kong for the groups once",
			headers: hdr("x-consumer-username", "someone"), groups: []string{"ops"},
			body:      `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}`,
			wantCalls: []string{"request.get_headers", "request.get_raw_body", "ctx.shared.get", "nginx.set_ctx"}},
		{name: "prompt", headers: hdr(),
			body:       `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"secret_plan"}}`,
			wantReason: "prompt_forbidden", wantStatus: 200, wantCode: -32001},
		{name: "resource by uri", headers: hdr(),
			body:       `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`,
			wantReason: "resource_forbidden", wantStatus: 200, wantCode: -32001},
		{name: "a duplicate name: the server would run the last one",
			headers:    hdr("x-consumer-username", "demo"),
			body:       `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","name":"delete_repo"}}`,
			wantReason: "unverifiable_request", wantStatus: 400, wantCode: -32600},
		{name: "a duplicate method", headers: hdr("x-consumer-username", "demo"),
			body:       `{"jsonrpc":"2.0","id":9,"method":"ping","method":"tools/call","params":{"name":"delete_repo"}}`,
			wantReason: "unverifiable_request", wantStatus: 400, wantCode: -32600},
		{name: "invalid UTF-8 Go servers still decode", headers: hdr("x-consumer-username", "demo"),
			body:       "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_repo\",\"arguments\":{\"x\":\"\xff\"}}}",
			wantReason: "unverifiable_request", wantStatus: 400, wantCode: -32600},
		{name: "no MCP markers, no jsonrpc member: still judged", headers: map[string][]string{"content-type": {"application/json"}, "x-consumer-username": {"demo"}},
			body:       `{"id":9,"method":"tools/call","params":{"name":"delete_repo"}}`,
			wantReason: "tool_forbidden", wantStatus: 200, wantCode: -32001},
		{name: "2026-07-28 without the header check still judges the body",
			headers:    hdr("mcp-protocol-version", "2026-07-28", "mcp-method", "tools/call", "mcp-name", "echo"),
			body:       `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x_admin"}}`,
			wantReason: "tool_forbidden", wantStatus: 403, wantCode: -31001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, rulesConfig)
			if strings.Contains(tt.name, "without the header check") {
				p.cfg.Upstream.CheckMethodHeaders = false
			}
			f := &fakeKong{method: "POST", headers: tt.headers, body: []byte(tt.body)}
			f.optional.groups = tt.groups
			p.access(f)
			if tt.wantCalls != nil && !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("calls %v, want %v", f.calls, tt.wantCalls)
			}
			if tt.wantReason == "" {
				if f.exited {
					t.Fatalf("answered %d %s", f.exitStatus, f.exitBody)
				}
				return
			}
			env := f.exitJSON(t)
			e := env["error"].(map[string]any)
			if f.exitStatus != tt.wantStatus || e["code"] != tt.wantCode || e["data"].(map[string]any)["reason"] != tt.wantReason {
				t.Errorf("got %d %s", f.exitStatus, f.exitBody)
			}
			var req map[string]any
			_ = json.Unmarshal([]byte(tt.body), &req)
			if strings.HasPrefix(tt.name, "invalid") {
				req["id"] = nil // an unreadable body: id null
			}
			if env["id"] != req["id"] {
				t.Errorf("id %v not echoed: %s", req["id"], f.exitBody)
			}
		})
	}
}

func TestDenyCallBatch(t *testing.T) {
	p := newPlugin(t, rulesConfig)
	f := &fakeKong{method: "POST", headers: hdr("x-consumer-username", "demo"), body: []byte(`[
		{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},
		{"jsonrpc":"2.0","method":"notifications/progress","params":{}},
		{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo"}}]`)}
	p.access(f)
	var got []map[string]any
	if err := json.Unmarshal(f.exitBody, &got); err != nil || len(got) != 2 {
		t.Fatalf("want two envelopes: %v %s", err, f.exitBody)
	}
	reasons := []string{}
	for _, e := range got {
		reasons = append(reasons, e["error"].(map[string]any)["data"].(map[string]any)["reason"].(string))
	}
	if got[0]["id"] != 1.0 || got[1]["id"] != 2.0 || !slices.Equal(reasons, []string{"batch_refused", "tool_forbidden"}) {
		t.Fatalf("got %s", f.exitBody)
	}
	if f.exitStatus != 200 {
		t.Errorf("status %d", f.exitStatus)
	}
}

func TestNoRulesNoCalls(t *testing.T) {
	p := newPlugin(t, `{"session":{"store":"off"}}`)
	f := &fakeKong{method: "POST", headers: hdr("x-consumer-username", "demo"),
		body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"user_admin"}}`)}
	p.access(f)
	if f.exited || !slices.Equal(f.calls, []string{"request.get_headers", "request.get_raw_body", "nginx.set_ctx"}) {
		t.Fatalf("calls %v exited %v", f.calls, f.exited)
	}
	r := &fakeKong{status: 200, headers: hdr()}
	p.response(r)
	if !slices.Equal(r.calls, []string{"response.get_status"}) {
		t.Fatalf("response calls %v", r.calls)
	}
}

func TestAccessRulesBufferListMethods(t *testing.T) {
	p := newPlugin(t, `{"session":{"store":"off"},"upstream":{"buffer_methods":[]},"tools":{"deny":["x"]}}`)
	if !p.buffers("tools/list") || p.buffers("prompts/list") {
		t.Fatalf("buffer methods %v", p.bufferMethods)
	}
}

func TestFilterList(t *testing.T) {
	const list = `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo","inputSchema":{}},{"name":"user_admin"},{"name":"delete_repo","description":"x"}],"nextCursor":"c2"}}`
	tests := []struct {
		name      string
		consumer  string
		body      string
		wantNames []string // nil: passed as sent
		wantCalls []string
		sse       bool
	}{
		{name: "demo", consumer: "demo", body: list, wantNames: []string{"echo"},
			wantCalls: []string{"response.get_status", "nginx.get_ctx", "service.response.get_raw_body", "response.exit"}},
		{name: "other sees only its allow list", consumer: "other", body: list, wantNames: []string{"echo"}},
		{name: "someone else: the global deny only", consumer: "x", body: list, wantNames: []string{"echo", "delete_repo"}},
		{name: "nothing hidden for this caller", consumer: "demo",
			body:      `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"},{"name":"whoami"}]}}`,
			wantCalls: []string{"response.get_status", "nginx.get_ctx", "service.response.get_raw_body"}},
		{name: "nothing to hide: no exit", consumer: "demo",
			body:      `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"}]}}`,
			wantCalls: []string{"response.get_status", "nginx.get_ctx", "service.response.get_raw_body"}},
		{name: "not a list", consumer: "demo", body: `{"jsonrpc":"2.0","id":7,"result":{}}`},
		{name: "SSE", consumer: "demo", sse: true, wantNames: []string{"echo"},
			body: "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n" +
				"event: message\ndata: " + list + "\n\n"},
		{name: "batch", consumer: "demo", body: `[` + list + `,{"jsonrpc":"2.0","id":8,"result":{}}]`, wantNames: []string{"echo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, rulesConfig)
			f := &fakeKong{status: 200, headers: hdr("x-consumer-username", tt.consumer), notes: listNote("", tt.consumer)}
			f.optional.serviceBody = []byte(tt.body)
			p.response(f)
			if tt.wantCalls != nil && !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("calls %v, want %v", f.calls, tt.wantCalls)
			}
			if tt.wantNames == nil {
				if f.exited {
					t.Fatalf("rewrote %s", f.exitBody)
				}
				return
			}
			if !f.exited || f.exitStatus != 200 || f.exitHeaders != nil {
				t.Fatalf("exited %v %d %v", f.exited, f.exitStatus, f.exitHeaders)
			}
			payload := f.exitBody
			if tt.sse {
				if !strings.HasPrefix(string(payload), "event: message\nid: 1\ndata: {\"jsonrpc\"") {
					t.Errorf("first event changed: %q", payload)
				}
				events := strings.Split(strings.TrimSpace(string(payload)), "\n\n")
				payload = []byte(strings.TrimPrefix(strings.Split(events[1], "\n")[1], "data: "))
			}
			var msg map[string]any
			if strings.HasPrefix(tt.name, "batch") {
				var batch []map[string]any
				if err := json.Unmarshal(payload, &batch); err != nil || len(batch) != 2 {
					t.Fatalf("batch: %v %s", err, payload)
				}
				msg = batch[0]
			} else if err := json.Unmarshal(payload, &msg); err != nil {
				t.Fatalf("not JSON: %v %q", err, payload)
			}
			res := msg["result"].(map[string]any)
			var names []string
			for _, e := range res["tools"].([]any) {
				names = append(names, e.(map[string]any)["name"].(string))
			}
			if !slices.Equal(names, tt.wantNames) || res["nextCursor"] != "c2" || msg["id"] != 7.0 {
				t.Errorf("got %s, want tools %v", payload, tt.wantNames)
			}
		})
	}
}

func TestBatchWithFilteredListIsBuffered(t *testing.T) {
	p := newPlugin(t, rulesConfig)
	f := &fakeKong{method: "POST", headers: hdr("x-consumer-username", "demo"), body: []byte(`[
		{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},
		{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`)}
	p.access(f)
	if f.exited || f.cleared {
		t.Fatalf("want the batch buffered: exited %v cleared %v", f.exited, f.cleared)
	}
	g := &fakeKong{method: "POST", headers: hdr(), body: f.body}
	newPlugin(t, storeOff).access(g)
	if !g.cleared {
		t.Fatal("without rules such a batch streams")
	}
}

// A list request's note names the caller: its Response reads neither the
// request headers nor, for other buffered answers, the answer body.
func TestFilterListReadsTheNote(t *testing.T) {
	p := newPlugin(t, strings.Replace(rulesConfig, `"store":"off"`, `"store":"memory"`, 1))
	a := &fakeKong{method: "POST", headers: hdr("x-consumer-username", "demo", "x-consumer-id", "id-demo"),
		body: []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`)}
	p.access(a)
	if n := decodeNote(a.notes[noteKey]); n.kind != noteList || n.username != "demo" || n.consumer != "id-demo" {
		t.Fatalf("Access left note %+v (%q)", n, a.notes[noteKey])
	}
	f := &fakeKong{status: 200, headers: hdr("x-consumer-username", "demo", "mcp-session-id", "s-1"), notes: a.notes}
	f.optional.serviceBody = []byte(`{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"},{"name":"whoami"}]}}`)
	p.response(f)
	if want := []string{"response.get_status", "nginx.get_ctx", "service.response.get_raw_body"}; !slices.Equal(f.calls, want) || f.exited {
		t.Fatalf("calls %v, want %v (exited %v)", f.calls, want, f.exited)
	}
	// Other buffered answers (a ping, a DELETE) are no list: their body is
	// not read.
	for _, body := range []string{`{"jsonrpc":"2.0","id":8,"method":"ping"}`, ""} {
		a := &fakeKong{method: "POST", headers: hdr("x-consumer-username", "demo", "mcp-session-id", "s-unknown"), body: []byte(body)}
		if body == "" {
			a.method = "DELETE"
		}
		p.access(a)
		d := &fakeKong{status: 200, method: a.method, headers: a.headers, notes: a.notes}
		p.response(d)
		if slices.Contains(d.calls, "service.response.get_raw_body") || d.exited {
			t.Fatalf("%s answer: calls %v (exited %v)", a.method, d.calls, d.exited)
		}
	}
}
