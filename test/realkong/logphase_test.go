package realkong_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/realkong"
)

// TestNoLogEventWithoutLogPhase pins on Kong 3.9.1 what the stand-in
// follows (test/standin TestNoLogEventWithoutLogPhase): a Go plugin whose
// -dump lists no log phase gets no Log event, whatever its server
// implements; one that lists it gets one per request.
func TestNoLogEventWithoutLogPhase(t *testing.T) {
	requireRealKong(t)
	srv := httptest.NewServer(&hostRecorder{})
	defer srv.Close()
	bin := echoPlugin(t)
	for _, tt := range []struct {
		phases string
		want   int
	}{{"access,response", 0}, {"access,response,log", 3}} {
		t.Run(tt.phases, func(t *testing.T) {
			node := realkong.StartT(t, realkong.Options{Plugin: bin, DeckYAML: deck(strings.TrimPrefix(srv.URL, "http://")),
				Conf: []string{"pluginserver_echo_plugin_query_cmd = " + bin + " -dump -phases=" + tt.phases}})
			for range 3 {
				req, _ := http.NewRequest("GET", node.URL()+"/t", nil)
				req.Header.Set("X-Test-Mode", "log-mark")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			got := 0
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				// Kong runs Log in a timer after the answer: wait for it.
				if got = strings.Count(string(node.PluginOutput()), "echoplugin: Log event"); got >= tt.want && tt.want > 0 {
					break
				}
			}
			if got != tt.want {
				t.Errorf("phases %s: %d Log events for 3 requests, want %d", tt.phases, got, tt.want)
			}
		})
	}
}

// TestBufferedResponseReadsWhatAccessLeft pins on Kong 3.9.1 what the
// stand-in follows (test/standin TestBufferedResponseReadsWhatAccessLeft):
// in a buffered Response phase, kong.nginx.get_ctx returns the string
// Access stored with set_ctx, upstream_host names the balanced target,
// upstream_scheme the service's protocol, and get_route the route with
// its preserve_host and its service's id.
func TestBufferedResponseReadsWhatAccessLeft(t *testing.T) {
	requireRealKong(t)
	srv := httptest.NewServer(&hostRecorder{})
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")
	node := realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: deck(target)})
	req, _ := http.NewRequest("GET", node.URL()+"/t", nil)
	req.Header.Set("X-Test-Mode", "resp-facts")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	checkResponseFacts(t, resp, target)
}

// checkResponseFacts is test/standin's comparison of echoplugin's
// resp-facts answer (a copy: the packages share no test code).
func checkResponseFacts(t *testing.T, resp *http.Response, target string) {
	t.Helper()
	h := resp.Header
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := h.Get("X-Resp-Ctx"); got != "ctx-value/<nil>" {
		t.Errorf("get_ctx in Response: %q, want what Access set", got)
	}
	if got := h.Get("X-Resp-Upstream-Host"); got != target {
		t.Errorf("upstream_host in Response: %q, want the balanced target %q", got, target)
	}
	if got := h.Get("X-Resp-Upstream-Scheme"); got != "http" {
		t.Errorf("upstream_scheme in Response: %q, want http", got)
	}
	route := h.Get("X-Resp-Route")
	if !strings.HasPrefix(route, "preserve_host=false service=") || !strings.HasSuffix(route, " err=<nil>") ||
		strings.Contains(route, "service= ") {
		t.Errorf("get_route in Response: %q, want preserve_host=false and the service's id", route)
	}
}
