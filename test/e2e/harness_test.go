// Package e2e drives the real mcp-relay binary through Kong, real Kong 3.9.1
// (MCP_RELAY_GATEWAY=kong, through test/realkong) or the stand-in
// (test/standin, the default), against real MCP peers (test/peers) and real
// Redis (session/redistest), all on loopback, started and stopped by the
// tests. gateway_test.go is the switch.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/peers"
)

// pluginBin is the mcp-relay executable built once for the whole package.
var pluginBin string

func TestMain(m *testing.M) {
	if err := chooseGateway(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "mcp-relay-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginBin = filepath.Join(dir, "mcp-relay") // the file name is the plugin name
	build := exec.Command("go", "build", "-o", pluginBin, "github.com/mcp-relay/mcp-relay/plugin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the plugin:", err)
		os.Exit(1)
	}
	code := m.Run()
	reportNotOnKong()
	peers.RemoveBinaries()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// repoFile is a path in the repository, wherever the test runs from.
func repoFile(name string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", name)
}

const (
	demoKey  = "demo-key"
	otherKey = "other-key" // a second consumer, added by deck()
	upstream = "mcp-replicas"
)

// deckOptions change kong/kong.yaml for one test.
type deckOptions struct {
	relay   map[string]any // merged into the mcp-relay plugin's config
	service map[string]any // merged into the service (timeouts, retries)
}

// deck returns the project's kong/kong.yaml changed by o, with a second
// consumer ("other", key other-key), so every test exercises the real file.
func deck(t testing.TB, o deckOptions) []byte {
	t.Helper()
	raw, err := os.ReadFile(repoFile("kong/kong.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	svc := doc["services"].([]any)[0].(map[string]any)
	merge(svc, o.service)
	route := svc["routes"].([]any)[0].(map[string]any)
	for _, p := range route["plugins"].([]any) {
		p := p.(map[string]any)
		if p["name"] == "mcp-relay" {
			merge(p["config"].(map[string]any), o.relay)
		}
	}
	doc["consumers"] = append(doc["consumers"].([]any), map[string]any{
		"username": "other", "keyauth_credentials": []any{map[string]any{"key": otherKey}},
	})
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sub, ok := v.(map[string]any); ok {
			if d, ok := dst[k].(map[string]any); ok {
				merge(d, sub)
				continue
			}
		}
		dst[k] = v
	}
}

func addrs(rs ...*peers.Replica) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Addr()
	}
	return out
}

// misroutes sums what the replicas themselves counted: requests carrying a
// session id the replica did not mint.
func misroutes(t testing.TB, rs ...*peers.Replica) int {
	t.Helper()
	n := 0
	for _, r := range rs {
		if r.Running() {
			n += int(r.MustStats(t).MisroutedTotal)
		}
	}
	return n
}

// rpcResult is one HTTP exchange of a raw MCP client.
type rpcResult struct {
	Status  int
	Header  http.Header
	Body    []byte
	Message map[string]any // the JSON-RPC message (from JSON or the SSE stream)
}

func (r rpcResult) errorField(name string) any {
	e, _ := r.Message["error"].(map[string]any)
	return e[name]
}

func (r rpcResult) dataField(name string) any {
	e, _ := r.Message["error"].(map[string]any)
	d, _ := e["data"].(map[string]any)
	return d[name]
}

// rawMCP is a minimal legacy MCP client over plain HTTP, so tests control
// exactly which node every request enters through.
type rawMCP struct {
	key     string
	session string
	version string
	client  *http.Client
}

func newRaw(key string) *rawMCP {
	return &rawMCP{key: key, version: "2025-06-18", client: &http.Client{Timeout: 30 * time.Second}}
}

var rpcIDs atomic.Int64

// call POSTs one JSON-RPC message (id added when method is a request) and
// reads the answer, JSON or SSE.
func (c *rawMCP) post(t testing.TB, baseURL, body string, header ...string) rpcResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	c.headers(req, header...)
	return c.do(t, req)
}

func (c *rawMCP) headers(req *http.Request, header ...string) {
	if c.key != "" {
		req.Header.Set("apikey", c.key)
	}
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
		req.Header.Set("MCP-Protocol-Version", c.version)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
}

func (c *rawMCP) do(t testing.TB, req *http.Request) rpcResult {
	t.Helper()
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	r, _ := readResult(resp)
	return r
}

// readResult reads an answer, JSON or SSE, and closes its body.
func readResult(resp *http.Response) (rpcResult, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := rpcResult{Status: resp.StatusCode, Header: resp.Header, Body: body}
	payload := body
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// The last data line carries the response (earlier ones: notifications).
		for _, line := range bytes.Split(body, []byte("\n")) {
			if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				payload = bytes.TrimSpace(d)
			}
		}
	}
	_ = json.Unmarshal(payload, &r.Message)
	return r, err
}

func (c *rawMCP) request(t testing.TB, baseURL, method, params string) rpcResult {
	t.Helper()
	if params == "" {
		params = "{}"
	}
	return c.post(t, baseURL, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, rpcIDs.Add(1), method, params))
}

// initialize runs the legacy handshake through baseURL and keeps the session id.
func (c *rawMCP) initialize(t testing.TB, baseURL string) rpcResult {
	t.Helper()
	c.session = ""
	r := c.request(t, baseURL, "initialize", fmt.Sprintf(
		`{"protocolVersion":%q,"capabilities":{"elicitation":{},"sampling":{}},"clientInfo":{"name":"e2e-raw","version":"1"}}`, c.version))
	c.session = r.Header.Get("Mcp-Session-Id")
	return r
}

func (c *rawMCP) initialized(t testing.TB, baseURL string) rpcResult {
	t.Helper()
	return c.post(t, baseURL, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
}

// whoami calls the legacy replica's whoami tool and returns its name.
func (c *rawMCP) whoami(t testing.TB, baseURL string) (string, rpcResult) {
	t.Helper()
	r := c.request(t, baseURL, "tools/call", `{"name":"whoami","arguments":{}}`)
	res, _ := r.Message["result"].(map[string]any)
	content, _ := res["content"].([]any)
	if len(content) == 0 {
		return "", r
	}
	text, _ := content[0].(map[string]any)["text"].(string)
	return text, r
}

func (c *rawMCP) delete(t testing.TB, baseURL string) rpcResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, baseURL+"/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.headers(req)
	return c.do(t, req)
}

// roundRobin is a load balancer in front of several Kong nodes, alternating
// per request, as a cloud LB in front of a Kong cluster would.
func roundRobin(t testing.TB, nodes ...gateway) string {
	t.Helper()
	bases := make([]string, len(nodes))
	for i, n := range nodes {
		bases[i] = n.URL()
	}
	return roundRobinURLs(t, bases)
}

// frontBalancerError starts the answers the load balancer writes itself
// (its own 502 when a node fails it), so tests can tell them from Kong's.
const frontBalancerError = "front balancer"

// roundRobinURLs is roundRobin over base URLs. It streams: every byte goes
// on as it comes, the response head too (Go's ReverseProxy alone holds a
// head back until the first body bytes, and drops it when the body fails
// first: a stream Kong ended right after its head would reach the client as
// no answer at all).
func roundRobinURLs(t testing.TB, bases []string) string {
	t.Helper()
	var next atomic.Int64
	targets := make([]*url.URL, len(bases))
	for i, b := range bases {
		targets[i], _ = url.Parse(b)
	}
	aborts := &frontAborts{}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[int(next.Add(1))%len(targets)])
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
		// A connection per request: with a pool, a client's cancel that
		// lands as its answer completes can close a connection Go's
		// transport has already handed to another request, which then
		// fails as the balancer's 502 (net/http, see cancel_test.go).
		Transport: &http.Transport{DisableKeepAlives: true},
		ErrorLog:  log.New(aborts, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, frontBalancerError+": "+err.Error(), http.StatusBadGateway)
		},
	}
	flushHead := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer aborts.recordAbort(r, time.Now())
		// Full duplex: otherwise Go's server drains and closes the request
		// body as the response head goes out, and the transport, still
		// reading that body on to its end, fails and cuts the node's
		// stream (TestFrontBalancerStreamsWhileBodyArrives).
		_ = http.NewResponseController(w).EnableFullDuplex()
		proxy.ServeHTTP(headFlusher{w}, r)
	})
	srv := &http.Server{Handler: flushHead, ReadHeaderTimeout: 10 * time.Second}
	ln := listen(t)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = srv.Close()
	})
	t.Cleanup(func() {
		if t.Failed() {
			aborts.report(t)
		}
	})
	return "http://" + ln.Addr().String()
}

// frontAborts records what the front balancer saw go wrong, so that a
// failed test can tell a stream Kong broke off (a read error from the node)
// from one the balancer or the client ended. A client's cancel ("context
// canceled") is everyday traffic with mcp-go and is left out.
type frontAborts struct {
	mu    sync.Mutex
	seen  int      // every error recorded
	lines []string // the first frontAbortsKept of them
}

const frontAbortsKept = 50

func (a *frontAborts) add(line string) {
	if strings.Contains(line, "context canceled") {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen++
	if len(a.lines) < frontAbortsKept {
		a.lines = append(a.lines, time.Now().Format("15:04:05.000 ")+line)
	}
}

// Write takes the ReverseProxy's error log lines.
func (a *frontAborts) Write(p []byte) (int, error) {
	a.add(strings.TrimSpace(string(p)))
	return len(p), nil
}

// recordAbort, deferred in the handler, notes an exchange the proxy
// aborted while its client was still there (it panics with
// http.ErrAbortHandler when a body copy fails, and the client sees its
// stream cut) and lets the panic go on.
func (a *frontAborts) recordAbort(r *http.Request, start time.Time) {
	if p := recover(); p != nil {
		if r.Context().Err() != nil {
			panic(p)
		}
		a.add(fmt.Sprintf("aborted %s (session %q, started %s): %v", r.Method, r.Header.Get("Mcp-Session-Id"),
			start.Format("15:04:05.000"), p))
		panic(p)
	}
}

func (a *frontAborts) report(t testing.TB) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t.Logf("front balancer: %d errors other than a client's cancel (the first %d shown): %q", a.seen, len(a.lines), a.lines)
}

// quietProxyLog keeps the "context canceled" lines of cancel_test.go's
// answer-holding proxy, which clients that abandon requests cause (mcp-go),
// out of the test output.
var quietProxyLog = log.New(io.Discard, "", 0)

// headFlusher sends the response head as soon as it is written.
type headFlusher struct{ http.ResponseWriter }

func (h headFlusher) WriteHeader(code int) {
	h.ResponseWriter.WriteHeader(code)
	if code >= 200 {
		_ = http.NewResponseController(h.ResponseWriter).Flush()
	}
}

func (h headFlusher) Unwrap() http.ResponseWriter { return h.ResponseWriter }
