package standin_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/standin"
)

// TestNoLogEventWithoutLogPhase follows Kong 3.9.1 (test/realkong pins the
// same on real Kong): a Go plugin whose -dump lists no log phase gets no Log
// event, whatever its server implements; one that lists it gets one per
// request.
func TestNoLogEventWithoutLogPhase(t *testing.T) {
	for _, tt := range []struct {
		phases string
		want   int
	}{{"access,response", 0}, {"access,response,log", 3}} {
		t.Run(tt.phases, func(t *testing.T) {
			var recs []standin.RequestRecord
			done := make(chan struct{}, 3)
			f := newFixture(t, func(o *standin.Options) {
				o.Env = append(o.Env, "ECHO_PHASES="+tt.phases)
				o.OnRecord = func(r standin.RequestRecord) { recs = append(recs, r); done <- struct{}{} }
			})
			for range 3 {
				if resp, _ := f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "log-mark"}, ""); resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			for range 3 {
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("a request's record never came")
				}
			}
			if got := strings.Count(f.plugOut.String(), "echoplugin: Log event"); got != tt.want {
				t.Errorf("phases %s: %d Log events for 3 requests, want %d", tt.phases, got, tt.want)
			}
			for _, r := range recs {
				if r.HasEvent("log") != (tt.want > 0) {
					t.Errorf("phases %s: record events %v", tt.phases, r.Events)
				}
			}
		})
	}
}

// TestBufferedResponseReadsWhatAccessLeft follows Kong 3.9.1 (test/realkong
// pins the same): a string Access stored with kong.nginx.set_ctx is what
// kong.nginx.get_ctx returns in the same request's buffered Response phase;
// there upstream_host names the target Kong balanced to ("host:port", the
// bare host on the scheme's default port), upstream_scheme the service's
// protocol, and kong.router.get_route the route with its preserve_host and
// its service's id.
func TestBufferedResponseReadsWhatAccessLeft(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.do(t, "GET", "/echo", map[string]string{"X-Test-Mode": "resp-facts"}, "")
	checkResponseFacts(t, resp, f.a.hostPort())
}

// checkResponseFacts is the comparison both gateways run (test/realkong has
// a copy) on echoplugin's resp-facts answer for a route balanced to target.
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
