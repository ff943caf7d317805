// Package kongfacts holds checks of Kong behaviour that the stand-in's
// tests and test/realkong's run alike, so that both gateways are held to
// the same facts.
package kongfacts

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// BufferedReport is what the stand-in's echoplugin answers in its report
// modes: what a buffered Response phase reads, one member per PDK call.
type BufferedReport struct {
	Method       string              `json:"request.get_method"`
	Headers      map[string][]string `json:"request.get_headers"`
	Body         string              `json:"request.get_raw_body"`
	UpstreamHost string              `json:"nginx.get_var:upstream_host"`
	UpstreamAddr string              `json:"nginx.get_var:upstream_addr"`
	Served       string              `json:"service.response.get_header:X-Upstream"`
}

// CheckBufferedEdits: base serves /t, balanced over two live targets (a
// and b, whose answers carry X-Upstream: a or b; targets maps them to the
// "host:port" they were given as) and one that refuses connections, and
// /p, the same with preserve_host; both run echoplugin. A request Access
// rewrote (mode edit-report) reaches the Response phase as rewritten;
// there upstream_host names the target that served it, after Kong's
// retries, and upstream_addr is empty; with preserve_host it is the
// client's Host.
func CheckBufferedEdits(t testing.TB, base string, targets map[string]string) {
	t.Helper()
	post := func(path, mode string) BufferedReport {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path+"?q=1", strings.NewReader("client body"))
		req.Header.Set("X-Test-Mode", mode)
		req.Header.Set("X-Remove-Me", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rep BufferedReport
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
