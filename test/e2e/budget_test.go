package e2e

// TestPDKCallBudget: the PDK calls each request kind costs, counted by the
// stand-in for real requests to real replicas: a pinned legacy POST at most
// 5, initialize at most 6, a 2026-07-28 POST 3 with the header check (2
// without), a non-MCP request 2, a DELETE 7; a Log phase with nothing to
// learn makes no call. `make bench` prints the same counts.
//
// A pinned request costs one call more than pinning alone (4): restoring the
// Host header Kong sends when it balances. kong.service.set_target writes
// ngx.var.upstream_host (kong/pdk/service.lua), which runloop access.after
// (kong/runloop/handler.lua) then sends as a preserved Host, skipping
// balancer.set_host_header; only kong.service.request.set_header(s) writes
// it back. The call is skipped when that Host is the bare target host (port
// 80 over http, 443 over https).

import (
	"net/http"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

func TestPDKCallBudget(t *testing.T) {
	legacy := peers.StartLegacy(t, "budget-legacy")
	modern := startModernServer(t)
	var recs recordLog
	legacyNode := startNode(t, deck(t, deckOptions{}), addrs(legacy), recs.option())
	modernNode := startNode(t, deck(t, deckOptions{}), []string{modern}, recs.option())
	uncheckedNode := startNode(t, deck(t, deckOptions{relay: map[string]any{
		"upstream": map[string]any{"check_method_headers": false}}}), []string{modern}, recs.option())

	// record waits for the record of the answer r (by X-Kong-Request-Id).
	record := func(r rpcResult) standin.RequestRecord {
		t.Helper()
		id := r.Header.Get("X-Kong-Request-Id")
		var rec standin.RequestRecord
		recs.waitRecords(t, 5*time.Second, func(all []standin.RequestRecord) bool {
			for _, x := range all {
				if x.ID == id {
					rec = x
					return true
				}
			}
			return false
		})
		return rec
	}
	calls := func(rec standin.RequestRecord) int { return rec.RoundTrips() - len(rec.Events) - rec.InstanceStarts }
	check := func(kind string, r rpcResult, wantStatus, budget int) standin.RequestRecord {
		t.Helper()
		rec := record(r)
		if r.Status != wantStatus {
			t.Errorf("%s: status %d, want %d: %s", kind, r.Status, wantStatus, r.Body)
		}
		if n := calls(rec); n > budget {
			t.Errorf("%s: %d PDK calls, budget %d: %s", kind, n, budget, rec)
		} else {
			t.Logf("%s: %d PDK calls (budget %d): %v", kind, n, budget, rec.Calls)
		}
		return rec
	}

	// Warm up each node: the first request of an instance also starts it.
	for _, n := range []*standin.Node{legacyNode, modernNode, uncheckedNode} {
		record(newRaw(demoKey).request(t, n.URL(), "ping", ""))
	}

	c := newPinRaw(demoKey, 10*time.Second)
	check("initialize", c.initialize(t, legacyNode.URL()), http.StatusOK, 6)
	c.initialized(t, legacyNode.URL())
	name, r := c.whoami(t, legacyNode.URL())
	if name != legacy.Name() {
		t.Fatalf("whoami: %q %d %s", name, r.Status, r.Body)
	}
	rec := check("pinned legacy POST (tools/call)", r, http.StatusOK, 5)
	if rec.Calls["access"]["kong.service.set_target"] != 1 || rec.PhaseCalls("log") != 0 {
		t.Errorf("pinned POST: want one set_target and no Log call: %v", rec.Calls)
	}
	r = c.request(t, legacyNode.URL(), "tools/list", "")
	check("pinned legacy POST, buffered (tools/list)", r, http.StatusOK, 6)

	m := newRaw(demoKey)
	m.version = "2026-07-28"
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},` + modernMeta + `}}`
	hdr := []string{"MCP-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "echo"}
	check("2026-07-28 POST, header check on", m.post(t, modernNode.URL(), body, hdr...), http.StatusOK, 3)
	check("2026-07-28 POST, header check off", m.post(t, uncheckedNode.URL(), body, hdr...), http.StatusOK, 2)

	// No MCP marker at all (no MCP header, no JSON-RPC body, no SSE Accept).
	req, err := http.NewRequest(http.MethodDelete, legacyNode.URL()+"/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("apikey", demoKey)
	plain := newRaw(demoKey).do(t, req)
	check("request without MCP markers", plain, plain.Status, 2)

	check("DELETE", c.delete(t, legacyNode.URL()), http.StatusOK, 7)
}
