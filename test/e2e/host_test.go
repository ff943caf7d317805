package e2e

import (
	"net/http"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// TestPinnedRequestsKeepTheBalancedHost: replicas that accept only the Host
// Kong sends when it balances to them ("ip:port", kong/runloop/balancer)
// serve whole sessions through the plugin, pinned requests included
// (set_target alone would make Kong send the bare IP).
func TestPinnedRequestsKeepTheBalancedHost(t *testing.T) {
	a := peers.StartLegacyHostChecked(t, "host-a")
	b := peers.StartLegacyHostChecked(t, "host-b")
	node := startNode(t, deck(t, deckOptions{}), addrs(a, b))

	served := map[string]int{}
	for i := range 4 {
		c := newRaw(demoKey)
		if r := c.initialize(t, node.URL()); r.Status != http.StatusOK || c.session == "" {
			t.Fatalf("session %d: initialize %d %s", i, r.Status, r.Body)
		}
		c.initialized(t, node.URL())
		name, r := c.whoami(t, node.URL())
		if r.Status != http.StatusOK || name == "" {
			t.Fatalf("session %d: pinned tools/call %d %s", i, r.Status, r.Body)
		}
		served[name]++
		if r := c.request(t, node.URL(), "tools/list", ""); r.Status != http.StatusOK || r.Message["result"] == nil {
			t.Fatalf("session %d: pinned tools/list %d %s", i, r.Status, r.Body)
		}
		if r := c.delete(t, node.URL()); r.Status != http.StatusOK {
			t.Fatalf("session %d: pinned DELETE %d %s", i, r.Status, r.Body)
		}
	}
	if served["host-a"] == 0 || served["host-b"] == 0 {
		t.Errorf("want sessions on both replicas, got %v", served)
	}
	if n := misroutes(t, a, b); n != 0 {
		t.Errorf("%d misrouted requests", n)
	}
}

// TestPinnedRequestsKeepThePreservedHost: with the route's preserve_host,
// Kong sends the client's Host when it balances; pinned requests keep it
// too. Such sessions are learned in the Log phase (-log-phase), from
// serialize's balancer tries, with the route's preserve_host.
func TestPinnedRequestsKeepThePreservedHost(t *testing.T) {
	addr := freeport.Addr(t) // the gateway's address: the client's Host
	a := peers.StartLegacyHostChecked(t, "preserve-a", addr)
	b := peers.StartLegacyHostChecked(t, "preserve-b", addr)
	node := startNode(t, withRouteField(t, deck(t, deckOptions{}), "preserve_host", true), addrs(a, b),
		withListen(addr), withLogPhase)

	for i := range 3 {
		c := newRaw(demoKey)
		if r := c.initialize(t, node.URL()); r.Status != http.StatusOK || c.session == "" {
			t.Fatalf("session %d: initialize %d %s", i, r.Status, r.Body)
		}
		c.initialized(t, node.URL())
		if name, r := c.whoami(t, node.URL()); r.Status != http.StatusOK || name == "" {
			t.Fatalf("session %d: pinned tools/call %d %s", i, r.Status, r.Body)
		}
	}
	if n := misroutes(t, a, b); n != 0 {
		t.Errorf("%d misrouted requests", n)
	}
}

// withRouteField sets one field of the deck file's MCP route.
func withRouteField(t *testing.T, deckYAML []byte, field string, value any) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(deckYAML, &doc); err != nil {
		t.Fatal(err)
	}
	doc["services"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)[field] = value
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUpstreamRefusalIsNotDisguised: a replica that refuses a request for
// its own reason (here a wrong Host, from upstream.host_header) is answered
// with an envelope carrying that reason, not a bare "bad key".
func TestUpstreamRefusalIsNotDisguised(t *testing.T) {
	a := peers.StartLegacyHostChecked(t, "refusing")
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{
		"upstream": map[string]any{"host_header": "wrong.example"}}}), addrs(a))

	c := newRaw(demoKey)
	if r := c.initialize(t, node.URL()); r.Status != http.StatusOK || c.session == "" {
		t.Fatalf("initialize (balanced, right Host): %d %s", r.Status, r.Body)
	}
	r := c.request(t, node.URL(), "tools/list", "") // buffered: rewritten
	msg, _ := r.errorField("message").(string)
	if r.dataField("reason") != "forbidden" || !strings.Contains(msg, "MCP server: Invalid Host header: wrong.example") {
		t.Fatalf("tools/list with a refused Host: %d %s", r.Status, r.Body)
	}
	t.Logf("envelope message: %q", msg)
}
