package standin_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mcp-relay/mcp-relay/test/kongfacts"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

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
	kongfacts.CheckBufferedEdits(t, node.URL(), map[string]string{"a": a.hostPort(), "b": byName})
	f := &fixture{node: node}
	if resp, _ := f.do(t, "POST", "/t", map[string]string{"X-Test-Mode": "resp-balancer-data"}, "x"); resp.StatusCode != 500 {
		t.Errorf("get_ctx balancer_data in Response: %d, want Kong's 500 (the event fails)", resp.StatusCode)
	}
}
