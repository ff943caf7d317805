package standin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/standin"
)

var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "standin-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// pluginBinary builds testdata/echoplugin once and returns a copy named
// name (the file name is the plugin's name, as with Kong).
func pluginBinary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, "echo-plugin"), "./testdata/echoplugin")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building echoplugin: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	src := filepath.Join(binDir, "echo-plugin")
	if name == "echo-plugin" {
		return src
	}
	dst := filepath.Join(t.TempDir(), name)
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// echoUpstream answers with what it received, as JSON.
type echoUpstream struct {
	*httptest.Server
	name string
	hits atomic.Int64
}

type echoed struct {
	Upstream string              `json:"upstream"`
	Method   string              `json:"method"`
	URI      string              `json:"uri"`
	Host     string              `json:"host"`
	Headers  map[string][]string `json:"headers"`
	Body     string              `json:"body"`
}

func newEchoUpstream(t *testing.T, name string) *echoUpstream {
	u := &echoUpstream{name: name}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		out, _ := json.Marshal(echoed{Upstream: name, Method: r.Method, URI: r.RequestURI, Host: r.Host,
			Headers: r.Header, Body: string(b)})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", name)
		_, _ = w.Write(out)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *echoUpstream) hostPort() string { return strings.TrimPrefix(u.URL, "http://") }

// sseUpstream sends n events gap apart and tells when each was sent.
type sseUpstream struct {
	*httptest.Server
	sent chan int
	done chan struct{}
}

func newSSEUpstream(t *testing.T, n int, gap time.Duration) *sseUpstream {
	u := &sseUpstream{sent: make(chan int, n), done: make(chan struct{})}
	var once sync.Once
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fl := w.(http.Flusher)
		for i := 1; i <= n; i++ {
			if i > 1 {
				time.Sleep(gap)
			}
			fmt.Fprintf(w, "event: message\ndata: %d\n\n", i)
			fl.Flush()
			u.sent <- i
		}
		once.Do(func() { close(u.done) })
	}))
	t.Cleanup(u.Close)
	return u
}

// silentUpstream accepts connections and never answers.
func silentUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// closedPort returns an address nobody listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// fixture is a node with the test deck and its upstreams.
type fixture struct {
	node    *standin.Node
	a, b    *echoUpstream
	sse     *sseUpstream
	out     string // ECHO_OUT: the plugin's Log reports
	plugOut *standin.LogBuffer
	mu      sync.Mutex
	seen    map[string]standin.RequestRecord
}

const testDeck = `_format_version: "3.0"
upstreams:
  - name: pair
    targets:
      - target: %[1]s
      - target: %[2]s
  - name: single
    targets:
      - target: %[1]s
services:
  - name: echo
    host: single
    port: 80
    routes:
      - name: echo
        paths: [/echo]
        plugins:
          - name: %[6]s
  - name: rr
    host: pair
    routes:
      - name: rr
        paths: [/rr]
        plugins:
          - name: %[6]s
      - name: bare
        paths: [/bare]
  - name: sse
    url: %[3]s
    routes:
      - name: sse
        paths: [/sse]
        strip_path: true
        plugins:
          - name: %[6]s
  - name: closed
    url: http://%[4]s
    retries: 2
    connect_timeout: 500
    routes:
      - name: closed
        paths: [/closed]
        plugins:
          - name: %[6]s
  - name: silent
    url: http://%[5]s
    retries: 0
    read_timeout: 300
    routes:
      - name: silent
        paths: [/silent]
        plugins:
          - name: %[6]s
  - name: auth
    host: single
    routes:
      - name: auth
        paths: [/auth]
        plugins:
          - name: key-auth
          - name: %[6]s
      - name: anon
        paths: [/anon]
        plugins:
          - name: key-auth
            config:
              hide_credentials: true
              anonymous: anonymous
          - name: %[6]s
consumers:
  - username: anonymous
  - username: demo
    custom_id: demo-custom
    keyauth_credentials:
      - key: demo-key
`

func newFixture(t *testing.T, mutate ...func(*standin.Options)) *fixture {
	t.Helper()
	f := &fixture{a: newEchoUpstream(t, "a"), b: newEchoUpstream(t, "b"), out: t.TempDir(),
		plugOut: &standin.LogBuffer{}, seen: map[string]standin.RequestRecord{}}
	f.sse = newSSEUpstream(t, 3, 100*time.Millisecond)
	deck := fmt.Sprintf(testDeck, f.a.hostPort(), f.b.hostPort(), f.sse.URL, closedPort(t), silentUpstream(t), "echo-plugin")
	opts := standin.Options{
		Plugin:       pluginBinary(t, "echo-plugin"),
		DeckYAML:     []byte(deck),
		Env:          []string{"ECHO_OUT=" + f.out},
		PluginOutput: f.plugOut,
	}
	for _, m := range mutate {
		m(&opts)
	}
	f.node = standin.StartT(t, opts)
	return f
}

func (f *fixture) do(t *testing.T, method, path string, hdr map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.node.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, b
}

// record waits for the record of a request (by X-Kong-Request-Id).
func (f *fixture) record(t *testing.T, id string) standin.RequestRecord {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		r, ok := f.seen[id]
		f.mu.Unlock()
		if ok {
			return r
		}
		select {
		case rec := <-f.node.Records():
			f.mu.Lock()
			f.seen[rec.ID] = rec
			f.mu.Unlock()
		case <-deadline:
			t.Fatalf("no record for request %s", id)
		}
	}
}

// logReport reads what the plugin's Log handler wrote for a request.
func (f *fixture) logReport(t *testing.T, id string) map[string]any {
	t.Helper()
	// the plugin may write it after Kong ended the log timer
	var b []byte
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err = os.ReadFile(filepath.Join(f.out, id+".json")); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("no Log report for %s: %v", id, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func decodeEcho(t *testing.T, b []byte) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("not an echo: %v: %s", err, b)
	}
	return e
}

func header(e echoed, name string) string {
	v := e.Headers[http.CanonicalHeaderKey(name)]
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func newEchoUpstreamB(b *testing.B) *echoUpstream {
	u := &echoUpstream{name: "a"}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	b.Cleanup(u.Close)
	return u
}

func startBenchNode(b *testing.B, up *echoUpstream) *standin.Node {
	deck := fmt.Sprintf(`_format_version: "3.0"
services:
  - name: echo
    url: %s
    routes:
      - name: echo
        paths: [/echo]
        plugins:
          - name: echo-plugin
`, up.URL)
	return standin.StartT(b, standin.Options{Plugin: pluginBinary(b, "echo-plugin"), DeckYAML: []byte(deck),
		Log: io.Discard, RecordBuffer: 1})
}
