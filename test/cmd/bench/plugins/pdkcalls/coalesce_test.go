package pdkcalls_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/standin"
)

// TestCoalescedServerSpeaksKongsProtocol runs the coalescing plugin server
// behind the Kong stand-in (which plays Kong's side of the socket as
// pb_rpc.lua does): its calls reach Kong, their answers come back, and an
// exit ends the request, as with go-pdk's server.
func TestCoalescedServerSpeaksKongsProtocol(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bench-access-coalesced")
	if out, err := exec.Command("go", "build", "-o", bin, "../bench-access-coalesced").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "host="+r.Host)
	}))
	defer up.Close()
	target := strings.TrimPrefix(up.URL, "http://")
	deck := fmt.Sprintf(`_format_version: "3.0"
services:
  - name: svc
    url: http://unused.invalid:9
    routes:
      - name: calls
        paths: [/calls]
        plugins:
          - name: bench-access-coalesced
            config: {access: [get_headers, get_method, get_raw_body, set_target, set_host], target: %q}
      - name: fails
        paths: [/fails]
        plugins:
          - name: bench-access-coalesced
            config: {access: [get_method, no_such_call]}
`, target)
	var mu sync.Mutex
	var recs []standin.RequestRecord
	node := standin.StartT(t, standin.Options{Plugin: bin, DeckYAML: []byte(deck),
		OnRecord: func(r standin.RequestRecord) { mu.Lock(); recs = append(recs, r); mu.Unlock() }})
	for i := range 3 {
		resp, err := http.Post(node.URL()+"/calls", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "host="+target {
			t.Fatalf("request %d: %d %s, want 200 from the set_target upstream with Host %s", i, resp.StatusCode, b, target)
		}
	}
	resp, err := http.Get(node.URL() + "/fails")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(b), "unknown call") {
		t.Fatalf("a failing call: %d %s, want the plugin's 500 (kong.response.exit)", resp.StatusCode, b)
	}
	node.WaitIdle(5 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(recs) != 4 || recs[0].PhaseCalls("access") != 5 {
		t.Errorf("records %v", recs)
	}
}
