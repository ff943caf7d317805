package standin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mcp-relay/mcp-relay/test/standin"
)

// bufferedReport is what echoplugin's report mode answers: what a buffered
// Response phase reads, one member per PDK call.
type bufferedReport struct {
	Method       string              `json:"request.get_method"`
	Headers      map[string][]string `json:"request.get_headers"`
	Body         string              `json:"request.get_raw_body"`
	UpstreamHost string              `json:"nginx.get_var:upstream_host"`
	UpstreamAddr string              `json:"nginx.get_var:upstream_addr"`
	Served       string              `json:"service.response.get_header:X-Upstream"`
}

// TestBufferedResponseSeesEditedRequest follows Kong 3.9.1 (test/realkong
// pins the same on real Kong): a request Access rewrites with set_method,
// set_raw_body, set_header and clear_header while it stays buffered reaches
// the upstream rewritten, and the Response phase's kong.request getters
// return the rewritten request, not the client's. In that phase
// upstream_host names the target Kong balanced to, after its retries (a
// refused target first), as set_host_header wrote it: "host:port" as the
// target was given; with preserve_host it is the client's Host.
// upstream_addr is empty there (the subrequest's variable), and
// get_ctx("balancer_data") fails: the table holds the balancer object, whose
// cycles overflow pb_rpc.lua's encoder.
func TestBufferedResponseSeesEditedRequest(t *testing.T) {
	a, b := newEchoUpstream(t, "a"), newEchoUpstream(t, "b")
	dead := closedPort(t)
	byName := strings.Replace(b.hostPort(), "127.0.0.1", "localhost", 1)
	deck := fmt.Sprintf(`_format_version: "3.0"
upstreams:
  - name: three
    targets: [{target: %q}, {target: %q}, {target: %q}]
services:
  - name: svc
    host: three
    port: 80
    routes:
      - name: balanced
        paths: [/t]
        plugins: [{name: echo-plugin}]
      - name: preserved
        paths: [/p]
        preserve_host: true
        plugins: [{name: echo-plugin}]
`, a.hostPort(), byName, dead)
	node := standin.StartT(t, standin.Options{Plugin: pluginBinary(t, "echo-plugin"), DeckYAML: []byte(deck)})
	checkBufferedEdits(t, node.URL(), map[string]string{"a": a.hostPort(), "b": byName})
	f := &fixture{node: node}
	if resp, _ := f.do(t, "POST", "/t", map[string]string{"X-Test-Mode": "resp-balancer-data"}, "x"); resp.StatusCode != 500 {
		t.Errorf("get_ctx balancer_data in Response: %d, want Kong's 500 (the event fails)", resp.StatusCode)
	}
}

// checkBufferedEdits is the comparison both gateways run (test/realkong has
// a copy): base serves /t (balanced over a, b, and a refused target) and /p
// (the same with preserve_host), each with echoplugin.
func checkBufferedEdits(t *testing.T, base string, targets map[string]string) {
	t.Helper()
	post := func(path, mode string) (bufferedReport, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path+"?q=1", strings.NewReader("client body"))
		req.Header.Set("X-Test-Mode", mode)
		req.Header.Set("X-Remove-Me", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rep bufferedReport
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %v", path, mode, resp.StatusCode, err)
		}
		return rep, resp
	}
	served := map[string]bool{}
	for i := range 6 { // the refused target comes first in some of them: Kong retries
		rep, _ := post("/t", "edit-report")
		served[rep.Served] = true
		if rep.Method != "PUT" || rep.Body != "new body" || len(rep.Headers["x-remove-me"]) != 0 ||
			first(rep.Headers["x-edited"]) != "yes" {
			t.Errorf("request %d: Response read method %q, body %q, headers %v: want the edited request", i, rep.Method, rep.Body, rep.Headers)
		}
		if want := targets[rep.Served]; rep.UpstreamHost != want || rep.UpstreamAddr != "" {
			t.Errorf("request %d served by %q: upstream_host %q (want %q), upstream_addr %q (want empty)",
				i, rep.Served, rep.UpstreamHost, want, rep.UpstreamAddr)
		}
	}
	if !served["a"] || !served["b"] {
		t.Errorf("six balanced requests were served by %v, want both live targets", served)
	}
	rep, _ := post("/t", "resp-report")
	if rep.Method != "POST" || rep.Body != "client body" || first(rep.Headers["x-remove-me"]) != "1" {
		t.Errorf("unedited request: Response read %q %q %v", rep.Method, rep.Body, rep.Headers)
	}
	host := strings.TrimPrefix(base, "http://")
	if rep, _ := post("/p", "resp-report"); rep.UpstreamHost != host {
		t.Errorf("preserve_host: upstream_host %q, want the client's Host %q", rep.UpstreamHost, host)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
