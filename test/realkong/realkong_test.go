package realkong_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/kongfacts"
	"github.com/mcp-relay/mcp-relay/test/realkong"
)

// echoPlugin builds the stand-in's small go-pdk test plugin, so that the same
// plugin runs through the stand-in's tests and through real Kong here.
func echoPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "echo-plugin")
	out, err := exec.Command("go", "build", "-o", bin, "../standin/testdata/echoplugin").CombinedOutput()
	if err != nil {
		t.Fatalf("building echoplugin: %v\n%s", err, out)
	}
	return bin
}

// hostRecorder is an upstream that records the Host of each request.
type hostRecorder struct {
	mu    sync.Mutex
	hosts []string
}

func (h *hostRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.hosts = append(h.hosts, r.Host)
	h.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

func (h *hostRecorder) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.hosts) == 0 {
		return ""
	}
	return h.hosts[len(h.hosts)-1]
}

func deck(target string) []byte {
	return []byte(fmt.Sprintf(`_format_version: "3.0"
upstreams:
  - name: up
    targets: [{target: %q}]
services:
  - name: svc
    host: up
    port: 80
    routes:
      - name: r
        paths: [/t]
        plugins:
          - name: echo-plugin
            config: {}
`, target))
}

func requireRealKong(t *testing.T) {
	t.Helper()
	if _, err := realkong.Script(); err != nil {
		t.Fatal(err) // never a silent pass: say how to get real Kong
	}
}

// TestHostHeaderThroughSetHeaders pins a fact of Kong 3.9.1 the stand-in
// follows: kong.service.request.set_headers stores a Host value in
// ngx.var.upstream_host as it is, and go-pdk sends every value as an array,
// so the upstream sees "table: 0x..."; set_header sends a string and is safe.
func TestHostHeaderThroughSetHeaders(t *testing.T) {
	requireRealKong(t)
	up := &hostRecorder{}
	srv := httptest.NewServer(up)
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")
	node := realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: deck(target)})

	for _, c := range []struct {
		mode string
		want *regexp.Regexp
	}{
		{"", regexp.MustCompile(`^` + regexp.QuoteMeta(target) + `$`)}, // Kong balanced: target host:port
		{"host-header", regexp.MustCompile(`^example\.test:9$`)},
		{"host-headers", regexp.MustCompile(`^table: 0x[0-9a-f]+$`)},
	} {
		t.Run("mode="+c.mode, func(t *testing.T) {
			req, _ := http.NewRequest("GET", node.URL()+"/t", nil)
			req.Header.Set("X-Test-Mode", c.mode)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if c.mode == "host-headers" {
				// Go's server refuses such a Host with 400 before the handler.
				if resp.StatusCode != 400 || !strings.Contains(string(body), "malformed Host header") {
					t.Fatalf("set_headers with Host: got %d %q, want Go's 400 malformed Host header", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := up.last(); !c.want.MatchString(got) {
				t.Fatalf("upstream Host %q, want %v", got, c.want)
			}
		})
	}
}

// TestPluginLogLines pins a fact of Kong 3.9.1 the stand-in follows: an
// external plugin's kong.log.<level> goes through Kong's global logger,
// bound once when pb_rpc.lua loaded its service, so its line in Kong's
// error log names pb_rpc.lua:233 and no plugin namespace, in Access and in
// the Log timer alike.
func TestPluginLogLines(t *testing.T) {
	requireRealKong(t)
	srv := httptest.NewServer(&hostRecorder{})
	defer srv.Close()
	node := realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: deck(strings.TrimPrefix(srv.URL, "http://"))})
	req, _ := http.NewRequest("GET", node.URL()+"/t", nil)
	req.Header.Set("X-Test-Mode", "log-warn")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, phase := range []string{"Access", "Log"} {
		var lines []string
		for deadline := time.Now().Add(5 * time.Second); len(lines) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			for _, l := range strings.Split(string(node.ErrorLog()), "\n") {
				if strings.Contains(l, "echoplugin: a warning from "+phase) {
					lines = append(lines, l)
				}
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "[warn]") ||
			!strings.Contains(lines[0], "[kong] pb_rpc.lua:233 echoplugin: a warning from "+phase) ||
			strings.Contains(lines[0], "[echo-plugin]") {
			t.Errorf("%s: want one [warn] line from [kong] pb_rpc.lua:233 without a plugin namespace, got %q", phase, lines)
		}
	}
}

// TestHeaderLineTooLong pins a fact of Kong 3.9.1 the stand-in follows:
// Kong leaves nginx's large_client_header_buffers at 4 8k, so a header
// line over 8 KB gets Kong's own 400 before any plugin phase (as text: the
// Accept header after it was never read); 7 KB passes.
func TestHeaderLineTooLong(t *testing.T) {
	requireRealKong(t)
	up := &hostRecorder{}
	srv := httptest.NewServer(up)
	defer srv.Close()
	node := realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: deck(strings.TrimPrefix(srv.URL, "http://"))})
	get := func(size int) (*http.Response, string) {
		req, _ := http.NewRequest("GET", node.URL()+"/t", nil)
		req.Header.Set("X-Long", strings.Repeat("a", size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if resp, body := get(7 << 10); resp.StatusCode != 200 || up.last() == "" {
		t.Errorf("7 KB header: %d %q", resp.StatusCode, body)
	}
	n := len(up.hosts)
	if resp, body := get(10 << 10); resp.StatusCode != 400 || !strings.HasPrefix(body, "Request header or cookie too large") ||
		resp.Header.Get("X-Access-Ran") != "" || len(up.hosts) != n {
		t.Errorf("10 KB header: %d %q, want Kong's own 400 before any phase", resp.StatusCode, body)
	}
}

// TestStreamedHeadWaitsForBody pins a fact of Kong 3.9.1 the stand-in
// follows (kongfacts.StreamedHeadCases): a streamed answer's head waits
// for its first body bytes unless the upstream or the route turns nginx's
// buffering off.
func TestStreamedHeadWaitsForBody(t *testing.T) {
	requireRealKong(t)
	kongfacts.CheckStreamedHead(t, func(t *testing.T, upstream string, unbuffered bool) string {
		d := deck(strings.TrimPrefix(upstream, "http://"))
		if unbuffered {
			d = bytes.Replace(d, []byte("paths: [/t]\n"), []byte("paths: [/t]\n        response_buffering: false\n"), 1)
		}
		return realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: d}).URL() + "/t"
	})
	kongfacts.CheckHeadThenUpstreamGone(t, func(t *testing.T, upstream string) (string, string) {
		return realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: deck(upstream)}).Addr(), "/t"
	})
}

// TestPluginEnvironment pins a fact of Kong 3.9.1 the stand-in follows:
// nginx clears the environment, so the plugin process Kong starts sees
// none of the variables Kong was started with.
func TestPluginEnvironment(t *testing.T) {
	requireRealKong(t)
	t.Setenv("ECHO_TEST_ENV", "leaked")
	srv := httptest.NewServer(&hostRecorder{})
	defer srv.Close()
	node := realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: deck(strings.TrimPrefix(srv.URL, "http://"))})
	req, _ := http.NewRequest("GET", node.URL()+"/t", nil)
	req.Header.Set("X-Test-Mode", "env")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Echo-Env"); got != "|" {
		t.Errorf("the plugin's environment: %q, want none of Kong's", got)
	}
}

// TestReloadWaitsForStreams pins a fact of Kong 3.9.1 the stand-in
// follows: on `kong reload` the old worker serves its open requests to
// their end (Kong sets no worker_shutdown_timeout), and only then stops
// its plugin process: with a stream open, the old plugin process outlives
// the reload by as long as the stream.
func TestReloadWaitsForStreams(t *testing.T) {
	requireRealKong(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 60 { // 6 s
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer up.Close()
	node := realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: deck(strings.TrimPrefix(up.URL, "http://"))})
	req, _ := http.NewRequest("GET", node.URL()+"/t", nil)
	req.Header.Set("X-Test-Mode", "stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	old := node.PluginPID()
	start := time.Now()
	if err := node.Reload(); err != nil {
		t.Fatal(err)
	}
	if pid := node.PluginPID(); pid == old || pid == 0 {
		t.Fatalf("plugin pid %d after the reload, old %d", pid, old)
	}
	if !alive(old) {
		t.Fatalf("the old plugin process ended %v after the reload began, with the stream still open", time.Since(start))
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	streamed := time.Since(start)
	deadline := time.Now().Add(10 * time.Second)
	for alive(old) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(old) {
		t.Fatal("the old plugin process outlived its worker's last stream by 10 s")
	}
	if !strings.Contains(string(body), "data: 59") {
		t.Errorf("the stream was cut by the reload: %q", body)
	}
	t.Logf("stream ended %v after the reload began; the old plugin process %v later", streamed.Round(time.Millisecond), (time.Since(start) - streamed).Round(time.Millisecond))
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// TestPluginRestartAndReload: the plugin process is Kong's to restart, and
// reload starts a new one.
func TestPluginRestartAndReload(t *testing.T) {
	requireRealKong(t)
	srv := httptest.NewServer(&hostRecorder{})
	defer srv.Close()
	node := realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: deck(strings.TrimPrefix(srv.URL, "http://"))})
	get := func() int {
		resp, err := http.Get(node.URL() + "/t")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get(); s != 200 {
		t.Fatalf("status %d", s)
	}
	old := node.PluginPID()
	if old == 0 || node.PluginStarts() != 1 {
		t.Fatalf("pid %d, starts %d", old, node.PluginStarts())
	}
	if err := node.KillPlugin(); err != nil {
		t.Fatal(err)
	}
	pid, err := node.WaitPlugin(old, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if node.PluginStarts() != 2 {
		t.Fatalf("starts %d after a kill, want 2", node.PluginStarts())
	}
	if err := node.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := node.WaitPlugin(pid, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if s := get(); s != 200 {
		t.Fatalf("status %d after reload", s)
	}
}

func TestMain(m *testing.M) {
	if _, err := realkong.Prepare(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
