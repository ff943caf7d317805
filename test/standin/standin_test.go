package standin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/kongfacts"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

func TestDump(t *testing.T) {
	bin := pluginBinary(t, "echo-plugin")
	info, err := standin.Dump(context.Background(), bin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "echo-plugin" || info.Priority != 1000 || info.Protocol != "ProtoBuf:1" {
		t.Fatalf("dump: %+v", info)
	}
	for _, ph := range []string{"access", "response", "log"} {
		if !info.HasPhase(ph) {
			t.Errorf("phase %s missing: %v", ph, info.Phases)
		}
	}
	if _, ok := info.Schema["fields"]; !ok {
		t.Errorf("no schema fields: %v", info.Schema)
	}
	// process.lua defaults the protocol to MsgPack:1, which go-pdk never speaks
	if _, err := standin.ParseDump([]byte(`{"Plugins":[{"Name":"x","Schema":{}}]}`)); err == nil {
		t.Error("a dump without Protocol was accepted")
	}
}

func TestEveryPDKMethodIsServed(t *testing.T) {
	methods := standin.PDKMethods()
	if len(methods) < 70 {
		t.Fatalf("only %d methods: %v", len(methods), methods)
	}
	for _, want := range []string{"kong.client.get_ip", "kong.ctx.shared.set", "kong.nginx.get_tls1_version_str",
		"kong.request.get_http_version", "kong.service.request.set_raw_body", "kong.log.set_serialize_value",
		"kong.node.get_memory_stats", "kong.service.response.get_raw_body", "kong.response.exit"} {
		found := false
		for _, m := range methods {
			found = found || m == want
		}
		if !found {
			t.Errorf("method %s not served (have %v)", want, methods)
		}
	}
}

func TestInstanceConfigDefaults(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, "GET", "/echo/x", nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	var cfg struct {
		Greeting string   `json:"greeting"`
		Tags     []string `json:"tags"`
		Limits   struct {
			Max  int    `json:"max"`
			Mode string `json:"mode"`
		} `json:"limits"`
		Seq      int    `json:"__seq__"`
		Key      string `json:"__key__"`
		PluginID string `json:"__plugin_id"`
		RouteID  string `json:"route_id"`
	}
	if err := json.Unmarshal([]byte(header(e, "X-Echo-Config")), &cfg); err != nil {
		t.Fatal(err)
	}
	route := f.node.Deck().RouteByName("echo")
	var plugin *standin.Plugin
	for _, p := range f.node.Deck().Plugins {
		if p.Route == route && p.Name == "echo-plugin" {
			plugin = p
		}
	}
	if cfg.Greeting != "hello" || cfg.Tags == nil || cfg.Limits.Max != 10 || cfg.Limits.Mode != "soft" {
		t.Errorf("defaults not filled: %+v", cfg)
	}
	if cfg.Seq != plugin.Seq || cfg.PluginID != plugin.ID || cfg.RouteID != route.ID || !strings.HasPrefix(cfg.Key, "plugins:echo-plugin:"+route.ID) {
		t.Errorf("Kong's keys: %+v (plugin %s seq %d)", cfg, plugin.ID, plugin.Seq)
	}
	if _, ok := plugin.Config["optional"]; ok {
		t.Errorf("a field without default stays out of the config (nulls removed on select): %v", plugin.Config)
	}
	// the plugin's answers went upstream: service request headers, get_ctx
	if header(e, "X-Echo-Buffered") != "true" {
		t.Errorf("buffered_proxying should start true for a plugin with a response phase: %q", header(e, "X-Echo-Buffered"))
	}
	if header(e, "X-Echo-Var-Method") != "GET" || header(e, "X-Echo-Upstream-Addr") != "" {
		t.Errorf("get_var in access: method %q upstream_addr %q", header(e, "X-Echo-Var-Method"), header(e, "X-Echo-Upstream-Addr"))
	}
	if e.URI != "/x" {
		t.Errorf("strip_path defaults to true: /echo/x goes upstream as /x, got %q", e.URI)
	}
}

func TestConfigValidation(t *testing.T) {
	bin := pluginBinary(t, "echo-plugin")
	info, err := standin.Dump(context.Background(), bin, nil)
	if err != nil {
		t.Fatal(err)
	}
	schemas := map[string]map[string]any{"echo-plugin": info.Schema}
	base := `_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:1
    routes:
      - name: r
        paths: [/]
        plugins:
          - name: echo-plugin
            config:
`
	cases := map[string]string{
		"limits: {mode: medium}": "config.limits.mode: expected one of: soft, hard",
		"limits: {max: 1000}":    "config.limits.max: value should be between 1 and 100",
		"greeting: 12":           "config.greeting: expected a string",
		"nope: 1":                "config.nope: unknown field",
		`greeting: ""`:           "config.greeting: length must be at least 1",
		"tags: [1]":              "config.tags[1]: expected a string",
	}
	indent := "              "
	for cfg, want := range cases {
		_, err := standin.LoadDeck([]byte(base+indent+cfg+"\n"), schemas, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", cfg, err, want)
		}
	}
	if _, err := standin.LoadDeck([]byte(strings.Replace(base, "echo-plugin", "rate-limiting", 1)+indent+"x: 1\n"), schemas, nil); err == nil ||
		!strings.Contains(err.Error(), "not emulated") {
		t.Errorf("bundled plugin: %v", err)
	}
	// Start refuses the same deck, naming the field
	_, err = standin.Start(context.Background(), standin.Options{Plugin: bin,
		DeckYAML: []byte(base + indent + "limits: {mode: medium}\n")})
	if err == nil || !strings.Contains(err.Error(), "config.limits.mode") {
		t.Errorf("Start: %v", err)
	}
}

func TestAccessExit(t *testing.T) {
	f := newFixture(t)
	hits := f.a.hits.Load()
	resp, body := f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "exit-then-call"}, "")
	if resp.StatusCode != 418 || string(body) != "teapot" || resp.Header.Get("X-Exit") != "1" {
		t.Fatalf("exit: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp.Header.Get("Server") != "kong/3.9.3" || resp.Header.Get("X-Kong-Response-Latency") == "" ||
		resp.Header.Get("Via") != "" || resp.Header.Get("Content-Length") != "6" {
		t.Errorf("Kong's headers on an exit: %v", resp.Header)
	}
	rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	if !rec.Exited || rec.HasEvent("response") || !rec.HasEvent("log") || rec.Status != 418 {
		t.Errorf("record: %+v", rec)
	}
	if rec.Calls["access"]["kong.response.exit"] != 1 {
		t.Errorf("calls: %v", rec.Calls)
	}
	if f.a.hits.Load() != hits {
		t.Error("the upstream was called after an exit")
	}
	// Kong never answers the exit call: the plugin's next call fails once
	// the request is finalized
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.plugOut.String(), "after exit: GetMethod err=") {
		if time.Now().After(deadline) {
			t.Fatalf("plugin output: %s", f.plugOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(f.plugOut.String(), "after exit: GetMethod err=<nil>") {
		t.Error("a PDK call after exit succeeded")
	}
	// a request without exit still works (the instance survived)
	if resp, _ := f.do(t, "GET", "/echo", nil, ""); resp.StatusCode != 200 {
		t.Errorf("after exit: %d", resp.StatusCode)
	}
}

func TestKeyAuth(t *testing.T) {
	f := newFixture(t)
	// without anonymous: key-auth's 401s, before the plugin's access
	resp, body := f.do(t, "GET", "/auth", map[string]string{"Accept": "application/json"}, "")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Key" ||
		!strings.Contains(string(body), `"message":"No API key found in request"`) {
		t.Fatalf("no key: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	if rec.HasEvent("access") || !rec.HasEvent("log") || !rec.Exited {
		t.Errorf("no key record: %+v", rec)
	}
	resp, body = f.do(t, "GET", "/auth?apikey=wrong", nil, "")
	if resp.StatusCode != 401 || !strings.Contains(string(body), `"message":"Unauthorized"`) {
		t.Errorf("wrong key: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, "GET", "/auth", map[string]string{"apikey": "demo-key"}, "")
	if resp.StatusCode != 200 {
		t.Fatalf("good key: %d %s", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	if header(e, "X-Consumer-Username") != "demo" || header(e, "X-Consumer-Custom-Id") != "demo-custom" ||
		header(e, "X-Echo-Consumer") != "demo" || header(e, "Apikey") != "demo-key" || header(e, "X-Credential-Identifier") == "" {
		t.Errorf("authenticated request upstream: %v", e.Headers)
	}
	// with anonymous and hide_credentials
	resp, body = f.do(t, "GET", "/anon?x=1", nil, "")
	e = decodeEcho(t, body)
	if resp.StatusCode != 200 || header(e, "X-Anonymous-Consumer") != "true" || header(e, "X-Echo-Consumer") != "anonymous" {
		t.Errorf("anonymous: %d %v", resp.StatusCode, e.Headers)
	}
	resp, body = f.do(t, "GET", "/anon?apikey=demo-key&x=1", nil, "")
	e = decodeEcho(t, body)
	if resp.StatusCode != 200 || header(e, "X-Echo-Consumer") != "demo" || strings.Contains(e.URI, "apikey") ||
		header(e, "X-Anonymous-Consumer") != "" {
		t.Errorf("hide_credentials: %d %s %v", resp.StatusCode, e.URI, e.Headers)
	}
	rec = f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	if rec.Consumer != "demo" {
		t.Errorf("consumer in record: %q", rec.Consumer)
	}
	resp, body = f.do(t, "GET", "/anon", map[string]string{"apikey": "wrong"}, "")
	e = decodeEcho(t, body)
	if resp.StatusCode != 200 || header(e, "X-Echo-Consumer") != "anonymous" || header(e, "Apikey") != "" {
		t.Errorf("wrong key with anonymous: %d %v", resp.StatusCode, e.Headers)
	}
}

// readEvents reads SSE events, noting for each whether the upstream had
// already finished when it arrived.
func readEvents(t *testing.T, resp *http.Response, done chan struct{}) (events []string, upstreamDoneAtFirst bool) {
	t.Helper()
	sc := bufio.NewScanner(resp.Body)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		if first {
			select {
			case <-done:
				upstreamDoneAtFirst = true
			default:
			}
			first = false
		}
		events = append(events, strings.TrimPrefix(line, "data: "))
	}
	return events, upstreamDoneAtFirst
}

func TestBufferedVersusStreamed(t *testing.T) {
	t.Run("buffered", func(t *testing.T) {
		f := newFixture(t)
		resp, err := http.Get(f.node.URL() + "/sse")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// headers only come once the whole answer was fetched
		select {
		case <-f.sse.done:
		default:
			t.Error("buffered: response headers arrived before the upstream finished")
		}
		events, doneAtFirst := readEvents(t, resp, f.sse.done)
		if len(events) != 3 || !doneAtFirst {
			t.Errorf("buffered: events %v, upstream done at first event: %v", events, doneAtFirst)
		}
		if resp.Header.Get("X-Response-Phase") == "" || resp.Header.Get("Content-Length") == "" {
			t.Errorf("buffered: the Response phase should have run: %v", resp.Header)
		}
		rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
		if !rec.Buffered || !rec.HasEvent("response") {
			t.Errorf("buffered record: %+v", rec)
		}
	})
	t.Run("streamed", func(t *testing.T) {
		f := newFixture(t)
		req, _ := http.NewRequest("GET", f.node.URL()+"/sse", nil)
		req.Header.Set("X-Test-Mode", "stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		events, doneAtFirst := readEvents(t, resp, f.sse.done)
		if len(events) != 3 || doneAtFirst {
			t.Errorf("streamed: events %v; the first must arrive before the upstream finished (done at first: %v)", events, doneAtFirst)
		}
		if resp.Header.Get("X-Response-Phase") != "" {
			t.Error("streamed: the Response phase ran")
		}
		rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
		if rec.Buffered || rec.HasEvent("response") || rec.Calls["access"]["kong.nginx.set_ctx"] != 2 {
			t.Errorf("streamed record: %+v", rec)
		}
	})
	t.Run("client disconnect cancels the upstream", func(t *testing.T) {
		f := newFixture(t)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", f.node.URL()+"/sse", nil)
		req.Header.Set("X-Test-Mode", "stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		cancel()
		_ = resp.Body.Close()
		rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
		if rec.Status != 200 || !rec.HasEvent("log") {
			t.Errorf("record after disconnect: %+v", rec)
		}
	})
}

func TestResponsePhase(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, "GET", "/echo", nil, "")
	if got := resp.Header.Get("X-Response-Phase"); got != "200/"+strconv.Itoa(len(body)) {
		t.Errorf("X-Response-Phase %q, body %d bytes", got, len(body))
	}
	if resp.Header.Get("X-Access-Ran") != "1" || resp.Header.Get("Via") != "1.1 kong/3.9.3" ||
		resp.Header.Get("X-Kong-Upstream-Latency") == "" {
		t.Errorf("headers: %v", resp.Header)
	}
	resp, _ = f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "resp-status"}, "")
	if resp.StatusCode != 201 {
		t.Errorf("set_status in response: %d", resp.StatusCode)
	}
	resp, body = f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "resp-exit"}, "")
	if resp.StatusCode != 200 || string(body) != `{"rewritten":true}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("exit in response: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	if resp.Header.Get("X-Upstream") != "a" {
		t.Errorf("headers set from the upstream before the Response handlers stay on an exit: %v", resp.Header)
	}
	rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	if !rec.Exited || !rec.HasEvent("response") || !rec.HasEvent("log") {
		t.Errorf("exit in response record: %+v", rec)
	}
	resp, _ = f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "resp-headers"}, "")
	if resp.Header.Get("X-Svc-Headers") != "0" || resp.Header.Get("X-Svc-Header") != "a" ||
		resp.Header.Get("X-Resp-Headers-Has-Upstream") != "true" {
		t.Errorf("service response headers in buffered mode: %v", resp.Header)
	}
}

func TestPhaseViolationsAndUnknownMethods(t *testing.T) {
	f := newFixture(t)
	for _, mode := range []string{"violation", "unknown", "resp-violation"} {
		resp, body := f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": mode, "Accept": "application/json"}, "")
		if resp.StatusCode != 500 || !strings.Contains(string(body), "An unexpected error occurred") {
			t.Errorf("%s: %d %s", mode, resp.StatusCode, body)
			continue
		}
		rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
		if len(rec.Errors) == 0 || !rec.HasEvent("log") {
			t.Errorf("%s: record %+v", mode, rec)
		}
		switch mode {
		case "violation":
			if !strings.Contains(rec.Errors[0], "function cannot be called in access phase (only in: response, header_filter, body_filter, log)") {
				t.Errorf("violation error: %v", rec.Errors)
			}
		case "unknown":
			if !strings.Contains(rec.Errors[0], `method "kong.does.not_exist" not found`) {
				t.Errorf("unknown error: %v", rec.Errors)
			}
		case "resp-violation":
			if !strings.Contains(rec.Errors[0], "function cannot be called in response phase") {
				t.Errorf("resp-violation error: %v", rec.Errors)
			}
		}
	}
	// the plugin server still serves
	if resp, _ := f.do(t, "GET", "/echo", nil, ""); resp.StatusCode != 200 {
		t.Errorf("after errors: %d", resp.StatusCode)
	}
}

func TestLogAfterResponseWithSavedData(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.do(t, "GET", "/anon?q=1", map[string]string{"X-Test-Mode": "slow-log", "apikey": "demo-key",
		"Authorization": "Bearer secret"}, "")
	id := resp.Header.Get("X-Kong-Request-Id")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// the client has its answer; the Log event is still running
	if _, err := os.Stat(filepath.Join(f.out, id+".json")); err == nil {
		t.Error("the Log handler finished before the client had the response")
	}
	rec := f.record(t, id)
	if !rec.HasEvent("log") || rec.Calls["log"]["kong.log.serialize"] != 1 {
		t.Fatalf("record: %+v", rec)
	}
	rep := f.logReport(t, id)
	ser, _ := rep["serialize"].(map[string]any)
	if ser == nil {
		t.Fatalf("no serialize: %v", rep)
	}
	tries, _ := ser["tries"].([]any)
	if len(tries) != 1 {
		t.Fatalf("tries: %v", ser["tries"])
	}
	try0 := tries[0].(map[string]any)
	if try0["ip"] != "127.0.0.1" || strconv.Itoa(int(try0["port"].(float64))) != strings.Split(f.a.hostPort(), ":")[1] {
		t.Errorf("try: %v", try0)
	}
	response := ser["response"].(map[string]any)
	request := ser["request"].(map[string]any)
	consumer, _ := ser["consumer"].(map[string]any)
	if response["status"].(float64) != 200 || consumer["username"] != "demo" || request["id"] != id ||
		request["method"] != "GET" || !strings.HasPrefix(request["uri"].(string), "/anon?q=1") {
		t.Errorf("serialize: response %v consumer %v request %v", response, consumer, request)
	}
	if h := request["headers"].(map[string]any); h["authorization"] != "REDACTED" || h["x-consumer-username"] != "demo" || h["apikey"] != nil {
		t.Errorf("serialized request headers: %v", h)
	}
	if ser["route"].(map[string]any)["name"] != "anon" || ser["service"].(map[string]any)["name"] != "auth" ||
		ser["source"] != "upstream" || ser["workspace"] == "" {
		t.Errorf("route/service/source: %v %v %v", ser["route"], ser["service"], ser["source"])
	}
	ae, _ := ser["authenticated_entity"].(map[string]any)
	if ae == nil || ae["id"] == nil || ae["consumer_id"] != nil {
		t.Errorf("authenticated_entity (key-auth credentials carry no consumer_id): %v", ae)
	}
	if rep["status"].(float64) != 200 || rep["shared"] != "shared-value" || rep["ctx"] != "ctx-value" ||
		rep["resp_header"] != "1" || rep["consumer"] != "demo" || rep["start"].(float64) <= 0 {
		t.Errorf("saved data: %v", rep)
	}
	if rh, _ := rep["request_headers"].(map[string]any); rh["x-test-mode"] == nil {
		t.Errorf("saved request headers: %v", rep["request_headers"])
	}
	if rep["getvar_err"] == "<nil>" {
		t.Error("kong.nginx.get_var worked in the log timer")
	}
	if !strings.Contains(strings.Join(rec.Errors, ";"), "API disabled in the current context") {
		t.Errorf("log errors: %v", rec.Errors)
	}
}

// TestHostThroughSetHeaders follows Kong 3.9.1 (test/realkong pins the same
// on real Kong): set_header sends a string Host upstream, but set_headers
// stores go-pdk's array value in ngx.var.upstream_host, which tostring()s
// it, so the upstream gets "table: 0x..." and Go's server answers 400.
func TestHostThroughSetHeaders(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "host-header"}, "")
	if e := decodeEcho(t, body); resp.StatusCode != 200 || e.Host != "example.test:9" {
		t.Errorf("set_header Host: %d Host %q", resp.StatusCode, e.Host)
	}
	resp, body = f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "host-headers"}, "")
	if resp.StatusCode != 400 || !strings.Contains(string(body), "malformed Host header") {
		t.Errorf("set_headers Host: %d %q, want the upstream's 400 malformed Host header", resp.StatusCode, body)
	}
}

// TestPluginLogLines follows Kong 3.9.1 (test/realkong pins the same on
// real Kong): a plugin's kong.log.<level> goes through Kong's global
// logger, which pb_rpc.lua bound when it loaded its service, so the line
// names pb_rpc.lua:233 as its source and no plugin namespace, in Access and
// in the Log timer alike.
func TestPluginLogLines(t *testing.T) {
	var log standin.LogBuffer
	f := newFixture(t, func(o *standin.Options) { o.Log = &log })
	resp, _ := f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "log-warn"}, "")
	f.record(t, resp.Header.Get("X-Kong-Request-Id")) // the Log event is over
	for _, phase := range []string{"Access", "Log"} {
		var lines []string
		for _, l := range strings.Split(log.String(), "\n") {
			if strings.Contains(l, "echoplugin: a warning from "+phase) {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "[warn]") ||
			!strings.Contains(lines[0], "[kong] pb_rpc.lua:233 echoplugin: a warning from "+phase) ||
			strings.Contains(lines[0], "[echo-plugin]") {
			t.Errorf("%s: want one [warn] line from [kong] pb_rpc.lua:233 without a plugin namespace, got %q", phase, lines)
		}
	}
}

// TestHeaderLineTooLong follows Kong 3.9.1 (test/realkong pins the same on
// real Kong): nginx's default large_client_header_buffers (4 8k) refuses a
// header line over 8 KB before any phase runs, with Kong's own 400; a line
// of 7 KB reaches the plugin and the upstream.
func TestHeaderLineTooLong(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.do(t, "GET", "/echo", map[string]string{"X-Long": strings.Repeat("a", 7<<10)}, "")
	if resp.StatusCode != 200 || resp.Header.Get("X-Access-Ran") != "1" {
		t.Errorf("7 KB header: %d (access ran %q)", resp.StatusCode, resp.Header.Get("X-Access-Ran"))
	}
	hits := f.a.hits.Load()
	resp, body := f.do(t, "GET", "/echo", map[string]string{"X-Long": strings.Repeat("a", 10<<10), "Accept": "application/json"}, "")
	if resp.StatusCode != 400 || !strings.HasPrefix(string(body), "Request header or cookie too large") ||
		resp.Header.Get("X-Access-Ran") != "" || f.a.hits.Load() != hits {
		t.Errorf("10 KB header: %d %q (access ran %q), want Kong's own 400 before any phase", resp.StatusCode, body, resp.Header.Get("X-Access-Ran"))
	}
	rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	if rec.HasEvent("access") {
		t.Errorf("the plugin's Access ran for a refused head: %s", rec)
	}
}

// TestStreamedHeadWaitsForBody follows Kong 3.9.1 (test/realkong pins the
// same on real Kong, kongfacts.StreamedHeadCases): a streamed answer's
// head waits for its first body bytes unless the upstream or the route
// turns nginx's buffering off.
func TestStreamedHeadWaitsForBody(t *testing.T) {
	kongfacts.CheckStreamedHead(t, func(t *testing.T, upstream string, unbuffered bool) string {
		deck := fmt.Sprintf("_format_version: \"3.0\"\nservices:\n  - name: s\n    url: %s\n    routes:\n      - name: r\n        paths: [/s]\n        response_buffering: %v\n        plugins:\n          - name: echo-plugin\n", upstream, !unbuffered)
		return standin.StartT(t, standin.Options{Plugin: pluginBinary(t, "echo-plugin"), DeckYAML: []byte(deck)}).URL() + "/s"
	})
	kongfacts.CheckHeadThenUpstreamGone(t, func(t *testing.T, upstream string) (string, string) {
		deck := fmt.Sprintf("_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://%s\n    routes:\n      - name: r\n        paths: [/s]\n        plugins:\n          - name: echo-plugin\n", upstream)
		return standin.StartT(t, standin.Options{Plugin: pluginBinary(t, "echo-plugin"), DeckYAML: []byte(deck)}).Addr(), "/s"
	})
}

// TestPluginEnvironment follows Kong 3.9.1 (test/realkong pins the same on
// real Kong): nginx clears the environment of the processes its workers
// start, so the plugin server sees none of the variables Kong was started
// with; Options.Env stands for those kong.conf's nginx_main_env keeps.
func TestPluginEnvironment(t *testing.T) {
	t.Setenv("ECHO_TEST_ENV", "leaked")
	f := newFixture(t) // Env: ECHO_OUT
	resp, _ := f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "env"}, "")
	if got := resp.Header.Get("X-Echo-Env"); got != "|"+f.out {
		t.Errorf("the plugin's environment: %q, want only Options.Env (%q)", got, "|"+f.out)
	}
}

// TestReloadWaitsForStreams follows Kong 3.9.1 (test/realkong pins the
// same on real Kong): after a reload the old plugin process lives until the
// requests its worker was serving are over, an open stream included.
func TestReloadWaitsForStreams(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 20 { // 2 s
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer up.Close()
	deck := fmt.Sprintf("_format_version: \"3.0\"\nservices:\n  - name: s\n    url: %s\n    routes:\n      - name: r\n        paths: [/s]\n        plugins:\n          - name: echo-plugin\n", up.URL)
	node := standin.StartT(t, standin.Options{Plugin: pluginBinary(t, "echo-plugin"), DeckYAML: []byte(deck)})
	req, _ := http.NewRequest("GET", node.URL()+"/s", nil)
	req.Header.Set("X-Test-Mode", "stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	old := node.PluginPID()
	if err := node.ReloadPlugin(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if pid := node.PluginPID(); pid == old || pid == 0 {
		t.Fatalf("plugin pid %d after the reload, old %d", pid, old)
	}
	alive := func(pid int) bool { return syscall.Kill(pid, 0) == nil }
	if !alive(old) {
		t.Fatal("the old plugin process ended with the stream still open")
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for alive(old) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(old) {
		t.Fatal("the old plugin process outlived its worker's last stream by 10 s")
	}
	if !strings.Contains(string(body), "data: 19") {
		t.Errorf("the stream was cut by the reload: %q", body)
	}
}

func TestSetTargetAndRoundRobin(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "target", "X-Test-Target": f.b.hostPort()}, "")
	e := decodeEcho(t, body)
	if resp.StatusCode != 200 || e.Upstream != "b" || e.Host != "127.0.0.1" {
		t.Errorf("set_target: %d upstream %s Host %q", resp.StatusCode, e.Upstream, e.Host)
	}
	rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	if rec.Target != f.b.hostPort() || len(rec.Tries) != 1 {
		t.Errorf("record target %q tries %v", rec.Target, rec.Tries)
	}
	// round-robin over the two targets, Host is the target with its port
	var names []string
	for i := 0; i < 4; i++ {
		_, body := f.do(t, "GET", "/bare", nil, "")
		e := decodeEcho(t, body)
		names = append(names, e.Upstream)
		if e.Host != map[string]string{"a": f.a.hostPort(), "b": f.b.hostPort()}[e.Upstream] {
			t.Errorf("Host %q for %s", e.Host, e.Upstream)
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i] == names[i-1] {
			t.Errorf("not round-robin: %v", names)
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	f := newFixture(t)
	// connection refused: 502 after retries (service retries: 2)
	resp, body := f.do(t, "GET", "/closed", map[string]string{"Accept": "application/json"}, "")
	if resp.StatusCode != 502 || !strings.Contains(string(body), "An invalid response was received from the upstream server") {
		t.Fatalf("closed: %d %s", resp.StatusCode, body)
	}
	rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	if len(rec.Tries) != 3 || rec.Tries[2].State != "failed" || rec.Tries[2].Code != 502 {
		t.Errorf("tries: %+v", rec.Tries)
	}
	// buffered proxying: the subrequest comes back truncated, Kong's error
	// handler answers and no Response handler runs
	if rec.HasEvent("response") || !rec.HasEvent("log") {
		t.Errorf("events: %v", rec.Events)
	}
	// no Accept, no Content-Type: error_default_type text/plain
	resp, body = f.do(t, "GET", "/closed", map[string]string{"X-Test-Mode": "stream"}, "")
	if resp.StatusCode != 502 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		!strings.HasPrefix(string(body), "An invalid response was received from the upstream server\nrequest_id: ") {
		t.Errorf("closed, streamed, text: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	// read timeout: 504
	start := time.Now()
	resp, body = f.do(t, "POST", "/silent", map[string]string{"Accept": "application/json", "X-Test-Mode": "stream"}, "{}")
	if resp.StatusCode != 504 || !strings.Contains(string(body), "The upstream server is timing out") {
		t.Errorf("silent: %d %s", resp.StatusCode, body)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("read_timeout not applied: %v", time.Since(start))
	}
	rec = f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	if len(rec.Tries) != 1 || rec.Tries[0].Code != 504 {
		t.Errorf("silent tries: %+v", rec.Tries)
	}
	resp, _ = f.do(t, "GET", "/silent", map[string]string{"Accept": "application/json"}, "")
	if resp.StatusCode != 504 {
		t.Errorf("silent buffered: %d", resp.StatusCode)
	}
}

func TestServiceRequestEditsAndBody(t *testing.T) {
	f := newFixture(t)
	_, body := f.do(t, "POST", "/echo/orig?a=b", map[string]string{"X-Test-Mode": "edit", "X-Remove-Me": "1"}, "old")
	e := decodeEcho(t, body)
	if e.Method != "PUT" || e.URI != "/edited?x=1&y=2" || e.Body != "new body" || header(e, "X-Edited") != "yes" ||
		header(e, "X-Remove-Me") != "" {
		t.Errorf("edits: %+v", e)
	}
	big := strings.Repeat("x", 20000) // more than client_body_buffer_size: spooled to a file
	_, body = f.do(t, "POST", "/echo", map[string]string{"X-Test-Mode": "body"}, big)
	e = decodeEcho(t, body)
	if header(e, "X-Echo-Body-Len") != "20000" || e.Body != big {
		t.Errorf("large body: len %s err %s, upstream got %d bytes", header(e, "X-Echo-Body-Len"), header(e, "X-Echo-Body-Err"), len(e.Body))
	}
	_, body = f.do(t, "POST", "/echo", map[string]string{"X-Test-Mode": "body"}, "small")
	if e = decodeEcho(t, body); header(e, "X-Echo-Body-Len") != "5" {
		t.Errorf("small body: %v", e.Headers)
	}
}

func TestPluginKilledIsRestarted(t *testing.T) {
	f := newFixture(t)
	if resp, _ := f.do(t, "GET", "/echo", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	pid := f.node.PluginPID()
	if err := f.node.KillPlugin(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var last int
	for {
		resp, _ := f.do(t, "GET", "/echo", nil, "")
		last = resp.StatusCode
		if last == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 200 after the plugin was killed (last %d)", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if f.node.PluginPID() == pid || f.node.PluginStarts() != 2 {
		t.Errorf("pid %d -> %d, starts %d", pid, f.node.PluginPID(), f.node.PluginStarts())
	}
	// a handler panic kills the process too (go-pdk has no recover)
	resp, _ := f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "panic"}, "")
	if resp.StatusCode != 500 {
		t.Errorf("panic: %d", resp.StatusCode)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp, _ := f.do(t, "GET", "/echo", nil, "")
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 200 after the panic (last %d)", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTwoNodes(t *testing.T) {
	f1 := newFixture(t)
	f2 := newFixture(t)
	if f1.node.PluginPID() == f2.node.PluginPID() || f1.node.Prefix() == f2.node.Prefix() || f1.node.ID() == f2.node.ID() {
		t.Fatal("nodes share a plugin process, prefix or id")
	}
	for _, f := range []*fixture{f1, f2} {
		resp, _ := f.do(t, "GET", "/echo", nil, "")
		if resp.StatusCode != 200 {
			t.Errorf("node %s: %d", f.node.URL(), resp.StatusCode)
		}
		// The totals count a request once its record is complete, after
		// its Log event, which runs after the client has the answer.
		f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	}
	// DB-less IDs are deterministic: both nodes know the same route id
	if f1.node.Deck().RouteByName("echo").ID != f2.node.Deck().RouteByName("echo").ID {
		t.Error("route ids differ between nodes")
	}
	tot := f1.node.Totals()
	if tot.Requests < 1 || tot.Events["access"] < 1 || tot.RoundTrips <= tot.Requests {
		t.Errorf("totals: %+v", tot)
	}
}
