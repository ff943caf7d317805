package realkong_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcp-relay/mcp-relay/test/realkong"
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

// TestBufferedResponseSeesEditedRequest pins what the stand-in's test of
// the same name follows: a request Access rewrites (set_method,
// set_raw_body, set_header, clear_header) while it stays buffered reaches
// the upstream rewritten, and the Response phase's kong.request getters
// return the rewritten request; there upstream_host names the target Kong
// balanced to after its retries, "host:port" as the target was given (the
// client's Host with preserve_host), upstream_addr is empty, and
// get_ctx("balancer_data") fails (its balancer object's cycles overflow
// pb_rpc.lua's encoder: the request gets Kong's 500).
func TestBufferedResponseSeesEditedRequest(t *testing.T) {
	requireRealKong(t)
	echo := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Upstream", name)
			_, _ = io.WriteString(w, "{}")
		}))
	}
	a, b := echo("a"), echo("b")
	defer a.Close()
	defer b.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	aAddr := strings.TrimPrefix(a.URL, "http://")
	byName := strings.Replace(strings.TrimPrefix(b.URL, "http://"), "127.0.0.1", "localhost", 1)
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
`, aAddr, byName, dead)
	node := realkong.StartT(t, realkong.Options{Plugin: echoPlugin(t), DeckYAML: []byte(deck)})
	checkBufferedEdits(t, node.URL(), map[string]string{"a": aAddr, "b": byName})
	if n := strings.Count(string(node.ErrorLog()), "Connection refused"); n == 0 {
		t.Errorf("Kong never tried the refused target: the retries were not exercised")
	}
	req, _ := http.NewRequest("POST", node.URL()+"/t", strings.NewReader("x"))
	req.Header.Set("X-Test-Mode", "resp-balancer-data")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(node.ErrorLog()), "stack overflow") {
		t.Errorf("get_ctx balancer_data in Response: %d, want Kong's 500 and a stack overflow in its log", resp.StatusCode)
	}
}

// checkBufferedEdits is the comparison both gateways run (test/standin has
// a copy): base serves /t (balanced over a, b, and a refused target) and /p
// (the same with preserve_host), each with echoplugin.
func checkBufferedEdits(t *testing.T, base string, targets map[string]string) {
	t.Helper()
	post := func(path, mode string) bufferedReport {
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
		return rep
	}
	served := map[string]bool{}
	for i := range 6 { // the refused target comes first in some of them: Kong retries
		rep := post("/t", "edit-report")
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
	rep := post("/t", "resp-report")
	if rep.Method != "POST" || rep.Body != "client body" || first(rep.Headers["x-remove-me"]) != "1" {
		t.Errorf("unedited request: Response read %q %q %v", rep.Method, rep.Body, rep.Headers)
	}
	host := strings.TrimPrefix(base, "http://")
	if rep := post("/p", "resp-report"); rep.UpstreamHost != host {
		t.Errorf("preserve_host: upstream_host %q, want the client's Host %q", rep.UpstreamHost, host)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
