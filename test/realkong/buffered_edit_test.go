package realkong_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcp-relay/mcp-relay/test/kongfacts"
	"github.com/mcp-relay/mcp-relay/test/realkong"
)

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
	kongfacts.CheckBufferedEdits(t, node.URL(), map[string]string{"a": aAddr, "b": byName})
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
