package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// TestConformanceDNSRebinding runs the official MCP conformance suite's
// dns-rebinding-protection scenario (@modelcontextprotocol/conformance,
// pinned in test/clients with the node 22 it needs) against a server behind
// the plugin with config.origin.allow: a foreign Host and Origin get a 4xx
// at the gateway, the gateway's own origin passes. Without origin.allow the
// scenario fails (the server behind accepts any Origin), which is checked
// too, so the pass is the plugin's.
func TestConformanceDNSRebinding(t *testing.T) {
	dir := clientsDir(t)
	node22 := filepath.Join(dir, "node_modules", ".bin", "node")
	suite := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
	for _, f := range []string{node22, suite} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("\n*** %v\n***     make client-deps   (or: cd test/clients && npm ci)\n", err)
		}
	}
	replica := peers.StartLegacy(t, "conformance")

	for _, tt := range []struct {
		name  string
		allow bool
		want  map[string]string // check id -> status
	}{
		{"with origin.allow", true, map[string]string{
			"localhost-host-rebinding-rejected": "SUCCESS", "localhost-host-valid-accepted": "SUCCESS"}},
		{"without origin.allow", false, map[string]string{
			"localhost-host-rebinding-rejected": "FAILURE", "localhost-host-valid-accepted": "SUCCESS"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := freeport.Addr(t)
			relay := map[string]any{}
			if tt.allow {
				relay["origin"] = map[string]any{"allow": []any{"http://" + addr}}
			}
			node := startNode(t, withoutKeyAuth(t, deck(t, deckOptions{relay: relay})), addrs(replica),
				withListen(addr))

			out := t.TempDir()
			cmd := exec.Command(node22, suite, "server", "--url", node.URL()+"/mcp",
				"--scenario", "dns-rebinding-protection", "-o", out)
			env, _ := clientEnv(t)
			cmd.Env = env
			stdout, stderr, took, hung, _ := runBounded(t, cmd, clientBound)
			if hung {
				t.Fatalf("the conformance suite did not finish within %s:\n%s\n%s", clientBound, stdout, stderr)
			}
			got := conformanceChecks(t, out)
			t.Logf("%.1f s: %v", took.Seconds(), got)
			for id, status := range tt.want {
				if got[id] != status {
					t.Errorf("%s: %q, want %q\n%s\n%s", id, got[id], status, stdout, stderr)
				}
			}
		})
	}
}

// withoutKeyAuth drops key-auth from a deck file: the conformance suite
// sends no credentials.
func withoutKeyAuth(t *testing.T, deckYAML []byte) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(deckYAML, &doc); err != nil {
		t.Fatal(err)
	}
	route := doc["services"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)
	var kept []any
	for _, p := range route["plugins"].([]any) {
		if p.(map[string]any)["name"] != "key-auth" {
			kept = append(kept, p)
		}
	}
	route["plugins"] = kept
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// conformanceChecks reads the suite's result files: check id -> status.
func conformanceChecks(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var checks []struct{ ID, Status string }
		if json.Unmarshal(raw, &checks) != nil {
			return nil
		}
		for _, c := range checks {
			if c.ID != "" {
				got[c.ID] = c.Status
			}
		}
		return nil
	})
	if len(got) == 0 {
		t.Fatalf("no conformance results in %s", dir)
	}
	return got
}
