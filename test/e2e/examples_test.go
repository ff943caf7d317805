package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// exampleDeck reads kong/examples/<name> and changes the mcp-relay config
// with edit (nil: as it is).
func exampleDeck(t *testing.T, name string, edit func(cfg map[string]any)) []byte {
	t.Helper()
	raw, err := os.ReadFile(repoFile(filepath.Join("kong", "examples", name)))
	if err != nil {
		t.Fatal(err)
	}
	if edit == nil {
		return raw
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	route := doc["services"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)
	for _, p := range route["plugins"].([]any) {
		if p := p.(map[string]any); p["name"] == "mcp-relay" {
			edit(p["config"].(map[string]any))
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every example in kong/examples is loaded by the stand-in with the real
// plugin's schema (what Kong checks), the replicas replaced by test
// replicas, and answers as its comment says.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(repoFile("kong/examples/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	want := []string{"api-key.yaml", "oauth.yaml", "rate-limit-per-tool.yaml", "redis-cluster.yaml", "redis-sentinel.yaml", "redis.yaml"}
	if !slices.Equal(names, want) {
		t.Fatalf("examples %v, want %v (add a case for a new one)", names, want)
	}
	replica := peers.StartLegacy(t, "example-replica")
	anonymousEnvelope := func(t *testing.T, url string) {
		t.Helper()
		r := newRaw("").initialize(t, url)
		if r.Status != http.StatusOK || reasonOf(r) != "unauthorized" {
			t.Errorf("anonymous initialize: %d %s", r.Status, r.Body)
		}
	}
	// pinned checks a keyed session through the example: initialize, then
	// a tool call that reaches the replica that created the session.
	pinned := func(t *testing.T, url string) {
		t.Helper()
		c := newRaw("change-me-alice-key")
		if r := c.initialize(t, url); r.Status != http.StatusOK || c.session == "" {
			t.Fatalf("keyed initialize: %d %s", r.Status, r.Body)
		}
		if name, r := c.whoami(t, url); name != "example-replica" {
			t.Errorf("whoami: %q %d %s", name, r.Status, r.Body)
		}
	}

	t.Run("api-key", func(t *testing.T) {
		node := startNode(t, exampleDeck(t, "api-key.yaml", nil), addrs(replica))
		anonymousEnvelope(t, node.URL())
		pinned(t, node.URL())
	})
	t.Run("oauth", func(t *testing.T) {
		server := peers.StartBad(t, "bare401") // a resource server refusing the request
		node := startNode(t, exampleDeck(t, "oauth.yaml", nil), addrs(server))
		r := newRaw("").initialize(t, node.URL())
		if r.Status != http.StatusUnauthorized || reasonOf(r) != "unauthorized" ||
			!strings.Contains(r.Header.Get("WWW-Authenticate"), `resource_metadata="https://mcp.example.com/`) {
			t.Errorf("initialize without a token: %d %v %s", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
		}
	})
	t.Run("redis", func(t *testing.T) {
		rs := redistest.StartServer(t)
		deckYAML := exampleDeck(t, "redis.yaml", func(cfg map[string]any) {
			redis := cfg["session"].(map[string]any)["redis"].(map[string]any)
			redis["host"], redis["port"] = rs.Host(), rs.Port()
			delete(redis, "password") // the test server has none
		})
		node := startNode(t, deckYAML, addrs(replica))
		anonymousEnvelope(t, node.URL())
		pinned(t, node.URL())
		if keys, err := rs.Do("KEYS", "mcp-relay:*"); err != nil || keys == "" {
			t.Errorf("no session record in Redis: %q %v", keys, err)
		}
	})
	// Sentinel and Cluster: Kong's schema accepts them and the instance
	// starts (its store check fails in the background: no such hosts).
	for _, name := range []string{"redis-sentinel.yaml", "redis-cluster.yaml"} {
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			node := startNode(t, exampleDeck(t, name, nil), addrs(replica))
			anonymousEnvelope(t, node.URL())
		})
	}
}
