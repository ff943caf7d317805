package e2e

// config.origin.allow: requests from another origin never reach the
// server (the official conformance suite's check is conformance_test.go).

import (
	"net/http"
	"testing"

	"github.com/mcp-relay/mcp-relay/test/peers"
)

// TestForeignOriginNeverReachesTheServer: with config.origin.allow, a
// request from another origin is answered 403 at the gateway; listed
// origins and requests without Origin pass.
func TestForeignOriginNeverReachesTheServer(t *testing.T) {
	a := peers.StartLegacy(t, "origin")
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{
		"origin": map[string]any{"allow": []any{"http://localhost:6274"}}}}), addrs(a))

	c := newRaw(demoKey)
	if r := c.initialize(t, node.URL()); r.Status != http.StatusOK {
		t.Fatalf("initialize without Origin: %d %s", r.Status, r.Body)
	}
	before := a.MustStats(t).RequestsTotal
	r := c.post(t, node.URL(), `{"jsonrpc":"2.0","id":77,"method":"tools/list"}`, "Origin", "http://evil.example:8000")
	if r.Status != http.StatusForbidden || r.dataField("reason") != "origin_forbidden" || r.Message["id"] != float64(77) {
		t.Fatalf("foreign origin: %d %s", r.Status, r.Body)
	}
	if after := a.MustStats(t).RequestsTotal; after != before {
		t.Errorf("the replica saw %d requests from the foreign origin", after-before)
	}
	if r := c.post(t, node.URL(), `{"jsonrpc":"2.0","id":78,"method":"tools/list"}`, "Origin", "http://localhost:6274"); r.Status != http.StatusOK {
		t.Fatalf("listed origin: %d %s", r.Status, r.Body)
	}
}
