package e2e

// MCP keys for Kong's own plugins (config.upstream.set_method_headers): a
// legacy request gets the Mcp-Method and Mcp-Name headers of a 2026-07-28
// request from its body, in place of any the client sent, and the plugins
// that run after mcp-relay read them with kong.request.get_header.

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/peers"
)

// headerRecorder is an upstream that records the MCP headers of each
// POST and answers it with an empty JSON-RPC result (202 to a
// notification). The deck's active health probes (GETs) are answered and
// not counted.
type headerRecorder struct {
	mu   sync.Mutex
	last http.Header
	n    int
}

func (h *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.last, h.n = r.Header.Clone(), h.n+1
	h.mu.Unlock()
	var msg struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &msg) != nil || msg.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":{"content":[]}}`)
}

func (h *headerRecorder) seen() (http.Header, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last, h.n
}

// laterPlugin is Kong's post-function plugin (priority -1000, after
// mcp-relay's 1000): it copies what kong.request.get_header returns for
// the MCP headers into headers the upstream records.
var laterPlugin = map[string]any{"name": "post-function", "config": map[string]any{"access": []any{
	`local h = kong.request.get_header
	 kong.service.request.set_header("X-Seen-Mcp-Method", h("Mcp-Method") or "-")
	 kong.service.request.set_header("X-Seen-Mcp-Name", h("Mcp-Name") or "-")`,
}}}

// withRoutePlugin adds a plugin to the first route of a deck.
func withRoutePlugin(t *testing.T, deckYAML []byte, plugin map[string]any) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(deckYAML, &doc); err != nil {
		t.Fatal(err)
	}
	route := doc["services"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)
	route["plugins"] = append(route["plugins"].([]any), plugin)
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMCPKeysReachLaterPlugins: what a legacy request's body says, the
// upstream sees as Mcp-Method and Mcp-Name, and on real Kong so does a
// plugin running after mcp-relay (post-function: the stand-in emulates no
// bundled plugin but key-auth, so there the upstream's view is checked); a
// client's own values never win, and a body that could be read two ways
// is refused.
func TestMCPKeysReachLaterPlugins(t *testing.T) {
	rec := &headerRecorder{}
	addr := serveLoopback(t, rec)
	deckYAML := deck(t, deckOptions{relay: map[string]any{
		"session":  map[string]any{"store": "off"},
		"upstream": map[string]any{"set_method_headers": true},
	}})
	var conf []string
	if onKong() {
		deckYAML = withRoutePlugin(t, deckYAML, laterPlugin)
		conf = []string{"untrusted_lua = on"}
	}
	n := startGW(t, deckYAML, []string{strings.TrimPrefix(addr, "http://")}, conf...)

	tests := []struct {
		name       string
		body       string
		header     []string
		method     string // "" : absent
		toolHeader string
	}{
		{"a tool call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, nil, "tools/call", "echo"},
		{"a client's Mcp-Name is replaced", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}`,
			[]string{"Mcp-Name", "cheap_tool", "Mcp-Method", "ping"}, "tools/call", "echo"},
		{"a list: a client's Mcp-Name is removed", `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`,
			[]string{"Mcp-Name", "echo"}, "tools/list", ""},
		{"a notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil, "notifications/initialized", ""},
		{"a resource", `{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:///a.txt"}}`, nil, "resources/read", "file:///a.txt"},
		{"a name that is not ASCII", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"héllo"}}`, nil, "tools/call", "=?base64?aMOpbGxv?="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRaw(demoKey).post(t, n.URL(), tt.body, tt.header...)
			if r.Status/100 != 2 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			h, _ := rec.seen()
			if got := h.Values("Mcp-Method"); !(tt.method == "" && len(got) == 0 || len(got) == 1 && got[0] == tt.method) {
				t.Errorf("upstream Mcp-Method %q, want %q", got, tt.method)
			}
			if got := h.Values("Mcp-Name"); !(tt.toolHeader == "" && len(got) == 0 || len(got) == 1 && got[0] == tt.toolHeader) {
				t.Errorf("upstream Mcp-Name %q, want %q", got, tt.toolHeader)
			}
			if !onKong() {
				return
			}
			for name, want := range map[string]string{"X-Seen-Mcp-Method": tt.method, "X-Seen-Mcp-Name": tt.toolHeader} {
				if want == "" {
					want = "-"
				}
				if got := h.Get(name); got != want {
					t.Errorf("post-function read %s %q, want %q", strings.TrimPrefix(name, "X-Seen-"), got, want)
				}
			}
		})
	}
	t.Run("a name spelled twice is refused", func(t *testing.T) {
		_, before := rec.seen()
		r := newRaw(demoKey).post(t, n.URL(), `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"cheap_tool","name":"echo"}}`)
		if r.Status != http.StatusBadRequest || reasonOf(r) != "unverifiable_request" || r.Message["id"] != 6.0 {
			t.Errorf("%d %s", r.Status, r.Body)
		}
		if _, after := rec.seen(); after != before {
			t.Error("the refused request reached the upstream")
		}
	})
}

// TestRealKongRateLimitPerTool runs kong/examples/rate-limit-per-tool.yaml
// on real Kong only: the stand-in emulates no rate-limiting plugin (it
// refuses a deck holding one), and a copy of Kong's counters there would
// test the copy. Kong's rate-limiting (limit_by header, header_name
// Mcp-Name, scoped to alice) limits alice's calls of one tool and leaves her
// other tools, and bob, alone; a client-sent Mcp-Name cannot change what
// is counted.
func TestRealKongRateLimitPerTool(t *testing.T) {
	needKong(t, "the stand-in emulates no rate-limiting plugin")
	replica := peers.StartLegacy(t, "rl-replica")
	raw, err := os.ReadFile(repoFile("kong/examples/rate-limit-per-tool.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := startGW(t, raw, addrs(replica))
	const limit = 20 // the example's minute

	alice := newPinRaw("change-me-alice-key", 15*time.Second)
	if r := alice.initialize(t, n.URL()); r.Status != http.StatusOK || alice.session == "" {
		t.Fatalf("initialize: %d %s", r.Status, r.Body)
	}
	alice.initialized(t, n.URL())
	// Kong's rate-limiting counts a request in a zero-delay timer after its
	// access phase (kong/plugins/rate-limiting/handler.lua), so calls sent
	// back to back can read a count that has not caught up: pace them.
	const pace = 20 * time.Millisecond
	echo := func(c *rawMCP, header ...string) rpcResult {
		time.Sleep(pace)
		return c.post(t, n.URL(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`, header...)
	}
	awayFromMinuteEnd()
	start := time.Now()
	for i := range limit {
		if r := echo(alice); r.Status != http.StatusOK || r.Message["result"] == nil {
			t.Fatalf("echo call %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	r := echo(alice)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("echo call %d: %d %s, want 429", limit+1, r.Status, r.Body)
	}
	// The client names another tool in Mcp-Name: still echo's count.
	if r := echo(alice, "Mcp-Name", "whoami"); r.Status != http.StatusTooManyRequests {
		t.Errorf("echo with Mcp-Name whoami: %d %s, want 429", r.Status, r.Body)
	}
	// Her other tools have counts of their own, whatever Mcp-Name she sends.
	for i, h := range [][]string{nil, {"Mcp-Name", "echo"}} {
		r := alice.post(t, n.URL(), `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`, h...)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), replica.Name()) || r.Header.Get("RateLimit-Remaining") != itoa(limit-1-i) {
			t.Errorf("whoami %d (client headers %q): %d remaining %q: %s", i, h, r.Status, r.Header.Get("RateLimit-Remaining"), r.Body)
		}
	}
	// bob is not limited.
	bob := newPinRaw("change-me-bob-key", 15*time.Second)
	bob.initialize(t, n.URL())
	bob.initialized(t, n.URL())
	for i := range limit + 2 {
		if r := echo(bob); r.Status != http.StatusOK {
			t.Fatalf("bob's echo call %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	if time.Since(start) > 45*time.Second {
		t.Errorf("the calls took %v: the minute's counters may have rolled over", time.Since(start))
	}

	// Without set_method_headers, a legacy request names no tool in its
	// headers: rate-limiting counts every call of alice by her IP, one
	// count for all her tools.
	var doc map[string]any
	_ = yaml.Unmarshal(raw, &doc)
	route := doc["services"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)
	for _, p := range route["plugins"].([]any) {
		if p := p.(map[string]any); p["name"] == "mcp-relay" {
			p["config"].(map[string]any)["upstream"] = map[string]any{"set_method_headers": false}
		}
	}
	off, _ := yaml.Marshal(doc)
	n.SetDeck(off)
	alice = newPinRaw("change-me-alice-key", 15*time.Second)
	awayFromMinuteEnd()
	limited := false
	for i := 0; i <= limit+4 && !limited; i++ {
		time.Sleep(pace)
		body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`
		if i%2 == 0 {
			body = strings.Replace(body, "whoami", "echo", 1)
		}
		limited = alice.post(t, n.URL(), body).Status == http.StatusTooManyRequests
	}
	if !limited {
		t.Errorf("without the headers, %d calls of two tools were not limited", limit+5)
	}
}

// awayFromMinuteEnd waits for the next minute when the current one ends
// within 15 s: rate-limiting counts per calendar minute, and a count that
// rolls over in the middle of a check would make it flaky.
func awayFromMinuteEnd() {
	now := time.Now()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < 15*time.Second {
		time.Sleep(left + 100*time.Millisecond)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
