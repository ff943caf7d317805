package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/peers"
)

// olderPlugin is the plugin as Kong sees it after an upgrade whose schema
// gained a rule: Kong stored the configuration under the older schema (it
// checks plugin configuration when it is written, not when it is read), so
// the plugin receives a configuration its own rules refuse. Modelled by a
// wrapper named mcp-relay that answers -dump with the schema minus its
// entity checks and runs the real plugin otherwise.
func olderPlugin(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(pluginBin, "-dump").Output()
	if err != nil {
		t.Fatal(err)
	}
	var dump map[string]any
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatal(err)
	}
	var strip func(v any)
	strip = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			delete(v, "entity_checks")
			for _, e := range v {
				strip(e)
			}
		case []any:
			for _, e := range v {
				strip(e)
			}
		}
	}
	strip(dump)
	dir := t.TempDir()
	old, _ := json.Marshal(dump)
	if err := os.WriteFile(filepath.Join(dir, "dump.json"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "mcp-relay")
	script := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = -dump ]; then exec cat %q; fi\nexec %q \"$@\"\n",
		filepath.Join(dir, "dump.json"), pluginBin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// A configuration the plugin refuses but Kong accepted: the instance starts,
// every MCP request gets a 500 envelope naming the field (reason
// config_invalid), the upstream is never reached, and Kong's own log (at its
// default level) has one error naming the field, not one per request.
func TestConfigKongCannotCheck(t *testing.T) {
	replica := peers.StartLegacy(t, "ci-replica")
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{
		"envelope": map[string]any{"modern_auth_code": -32001}}}), addrs(replica),
		withPlugin(olderPlugin(t)))
	const n = 5
	for i := range n {
		c := newRaw(demoKey)
		r := c.request(t, node.URL(), "tools/list", "")
		if r.Status != http.StatusInternalServerError || reasonOf(r) != "config_invalid" ||
			!strings.Contains(fmt.Sprint(r.errorField("message")), "config.envelope.modern_auth_code") {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
	}
	waitServed(t, node, n, 10*time.Second) // their Log phases too
	if got := replica.MustStats(t).RequestsTotal; got != 0 {
		t.Errorf("the replica got %d requests", got)
	}
	lines := kongLines(node, "[error]", "plugin=mcp-relay", "invalid configuration", "config.envelope.modern_auth_code")
	if len(lines) != 1 {
		t.Fatalf("Kong's log has %d configuration errors for %d requests, want 1:\n%s", len(lines), n, node.kongLog())
	}
	if strings.Contains(node.kongLog(), "starting instance:") {
		t.Errorf("Kong failed to start the instance:\n%s", node.kongLog())
	}
}
