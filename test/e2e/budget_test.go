package e2e

// TestPDKCallBudget: the PDK calls each request kind costs, counted by the
// stand-in for real requests to real replicas: a pinned legacy POST at most
// 5, initialize at most 8 (its Response phase learns the session: the note
// Access left, the answer's Mcp-Session-Id, the route, upstream_host), a
// 2026-07-28 POST 3 with the header check (2 without), a non-MCP request 2,
// a DELETE 7; no request gets a Log event (the plugin declares no Log phase
// without -log-phase). `make bench` prints the same counts.
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
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

func TestPDKCallBudget(t *testing.T) {
	needStandin(t, "PDK call counts are the stand-in's records")
	legacy := peers.StartLegacy(t, "budget-legacy")
	modern := startModernServer(t)
	var recs recordLog
	legacyNode := startNode(t, deck(t, deckOptions{}), addrs(legacy), withRecords(&recs))
	modernNode := startNode(t, deck(t, deckOptions{}), []string{modern}, withRecords(&recs))
	uncheckedNode := startNode(t, deck(t, deckOptions{relay: map[string]any{
		"upstream": map[string]any{"check_method_headers": false}}}), []string{modern}, withRecords(&recs))

	check := func(kind string, r rpcResult, wantStatus, budget int) standin.RequestRecord {
		t.Helper()
		rec := recs.of(t, r)
		if r.Status != wantStatus {
			t.Errorf("%s: status %d, want %d: %s", kind, r.Status, wantStatus, r.Body)
		}
		if n := pdkCalls(rec); n > budget || rec.HasEvent("log") {
			t.Errorf("%s: %d PDK calls, budget %d, and no Log event: %s", kind, n, budget, rec)
		} else {
			t.Logf("%s: %d PDK calls (budget %d): %v", kind, n, budget, rec.Calls)
		}
		return rec
	}

	// Warm up each node: the first request of an instance also starts it.
	for _, n := range []gateway{legacyNode, modernNode, uncheckedNode} {
		recs.of(t, newRaw(demoKey).request(t, n.URL(), "ping", ""))
	}

	c := newPinRaw(demoKey, 10*time.Second)
	check("initialize", c.initialize(t, legacyNode.URL()), http.StatusOK, 8)
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

// TestPDKCallBudgetRecovered: a recovered session's later requests cost a
// healthy pinned one's 5 and one set_header more for the upstream
// Mcp-Session-Id (never set_headers with the Host: Kong would send
// "table: 0x..."); the request that recovers it pays for reading
// upstream_scheme and upstream_uri besides.
func TestPDKCallBudgetRecovered(t *testing.T) {
	rs := startLegacyReplicas(t, 2)
	var recs recordLog
	m := freeport.Addr(t)
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{"session": map[string]any{"replica_probe_ms": 200}}}),
		addrs(rs...), withRecords(&recs), withMetrics(m))
	g := &recoveryRig{t: t, nodes: []gateway{node}, metrics: []string{m}, url: node.URL() + "/mcp", replicas: rs}
	g.coverReplicas()
	// On real Kong the test runs too: the recovered session's requests and
	// its DELETE reach the right replica; the counts are the stand-in's.
	counts := onStandin(t, "PDK call counts", "PDK call counts are the stand-in's records")

	c := newPinRaw(demoKey, 10*time.Second)
	c.initialize(t, node.URL())
	c.initialized(t, node.URL())
	first, r := c.whoami(t, node.URL())
	if counts {
		if n := pdkCalls(recs.of(t, r)); n != 5 {
			t.Errorf("healthy pinned POST: %d PDK calls, want 5", n)
		}
	}
	g.kill(g.byName(first))
	g.waitDown(1)

	second, r := c.whoami(t, node.URL())
	if second == "" || second == first {
		t.Fatalf("recovering request: whoami %q (%d %s)", second, r.Status, r.Body)
	}
	if counts {
		rec := recs.of(t, r)
		t.Logf("recovering request: %d PDK calls: %v", pdkCalls(rec), rec.Calls)
	}
	for i := range 3 {
		name, r := c.whoami(t, node.URL())
		if name != second {
			t.Fatalf("request %d after the recovery reached %q, want %q", i, name, second)
		}
		if !counts {
			continue
		}
		rec := recs.of(t, r)
		if n := pdkCalls(rec); n > 6 || rec.Calls["access"]["kong.service.request.set_header"] != 2 ||
			rec.Calls["access"]["kong.service.request.set_headers"] != 0 {
			t.Errorf("recovered session's request: %d PDK calls (budget 6), want two set_header (Host, Mcp-Session-Id) and no set_headers: %v", n, rec.Calls)
		} else if i == 0 {
			t.Logf("recovered session's later POST: %d PDK calls (budget 6): %v", n, rec.Calls)
		}
	}

	// DELETE with the client's id ends the new upstream session (the
	// replica sees its own id) and the client's record.
	survivor := g.byName(second)
	deletes := survivor.MustStats(t).RequestsByMethod["DELETE"]
	if r := c.delete(t, node.URL()); r.Status != 200 {
		t.Fatalf("DELETE after the recovery: %d %s", r.Status, r.Body)
	}
	if st := survivor.MustStats(t); st.RequestsByMethod["DELETE"] != deletes+1 || st.MisroutedTotal != 0 {
		t.Errorf("the recovered session's replica saw %d DELETEs (want %d), %d misrouted requests",
			st.RequestsByMethod["DELETE"], deletes+1, st.MisroutedTotal)
	}
	if r := c.request(t, node.URL(), "tools/list", ""); !pluginNotFound(r) {
		t.Errorf("request after DELETE: %d %s, want the 404 envelope", r.Status, r.Body)
	}
}

// TestAuthzPDKCost: what access rules, log fields and the metadata cost in
// PDK calls, by request kind (TestPDKCallBudget holds the counts without
// them, which these features leave unchanged). bench/results.md's table
// has the same rows.
func TestAuthzPDKCost(t *testing.T) {
	needStandin(t, "PDK call counts are the stand-in's records")
	a := peers.StartLegacy(t, "cost-a")
	var recs recordLog
	rules := startNode(t, deck(t, deckOptions{relay: map[string]any{"tools": map[string]any{
		"rules": []any{map[string]any{"consumers": []any{"demo"}, "deny": []any{"progress"}}}}}}), addrs(a), withRecords(&recs))
	logged := startNode(t, deck(t, deckOptions{relay: map[string]any{"log": map[string]any{"serialize": true}}}), addrs(a), withRecords(&recs))
	prm := startNode(t, withWellKnownPath(t, deck(t, deckOptions{relay: map[string]any{"auth": map[string]any{
		"resource_metadata": map[string]any{"authorization_servers": []any{"https://auth.example.com"}}}}})), addrs(a), withRecords(&recs))

	check := func(kind string, r rpcResult, wantStatus, want int) {
		t.Helper()
		rec := recs.of(t, r)
		n := pdkCalls(rec)
		if r.Status != wantStatus || n != want {
			t.Errorf("%s: status %d, %d PDK calls; want %d, %d: %s", kind, r.Status, n, wantStatus, want, rec)
		} else {
			t.Logf("%s: %d PDK calls: %v", kind, n, rec.Calls)
		}
	}

	rc := newPinRaw(demoKey, 10*time.Second)
	rc.initialize(t, rules.URL()) // also starts the instance
	rc.initialized(t, rules.URL())
	_, r := rc.whoami(t, rules.URL())
	check("access rules: pinned tools/call allowed", r, 200, 5)
	check("access rules: pinned tools/call denied", rc.request(t, rules.URL(), "tools/call", `{"name":"progress","arguments":{}}`), 200, 3)
	r = rc.request(t, rules.URL(), "tools/list", "")
	if strings.Contains(string(r.Body), `"progress"`) {
		t.Errorf("tools/list shows progress: %s", r.Body)
	}
	check("access rules: pinned tools/list, entries hidden", r, 200, 9)
	oc := newPinRaw(otherKey, 10*time.Second)
	oc.initialize(t, rules.URL())
	oc.initialized(t, rules.URL())
	r = oc.request(t, rules.URL(), "tools/list", "")
	if !strings.Contains(string(r.Body), `"progress"`) {
		t.Errorf("other's tools/list lacks progress: %s", r.Body)
	}
	check("access rules: pinned tools/list, nothing hidden for this consumer", r, 200, 8)

	lc := newPinRaw(demoKey, 10*time.Second)
	lc.initialize(t, logged.URL())
	lc.initialized(t, logged.URL())
	_, r = lc.whoami(t, logged.URL())
	check("log.serialize: pinned tools/call", r, 200, 6)

	newRaw("").request(t, prm.URL(), "ping", "") // starts the instance
	check("resource_metadata: anonymous initialize", newRaw("").initialize(t, prm.URL()), 401, 5)
	req, err := http.NewRequest(http.MethodGet, prm.URL()+"/.well-known/oauth-protected-resource/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	check("resource_metadata: the document", newRaw("").do(t, req), 200, 4)
	req, _ = http.NewRequest(http.MethodDelete, prm.URL()+"/mcp", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("apikey", demoKey)
	plain := newRaw(demoKey).do(t, req)
	check("resource_metadata: a request without MCP markers", plain, plain.Status, 3)
}
