package peers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
)

// TestMCPGoDefaultProtocol documents what the mcp-go client does with its
// default protocol version (2026-07-28) against legacy-only servers: it
// probes with server/discover (no session id), gets a 4xx, and falls back to
// initialize, ending on 2025-11-25 with a session.
func TestMCPGoDefaultProtocol(t *testing.T) {
	t.Parallel()

	t.Run("legacy replica", func(t *testing.T) {
		t.Parallel()
		a := peers.StartLegacy(t, "replica-d")
		// The probe, as a replica answers it: 400 with -32022 and the
		// versions it supports, all legacy.
		resp, body := rawModernProbe(t, a.URL())
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"code":-32022`) || !strings.Contains(body, `"supported":["2025-11-25"`) {
			t.Errorf("probe: %d %s", resp.StatusCode, body)
		}
		if err := a.ResetStats(); err != nil {
			t.Fatal(err)
		}

		c, init, err := mcptest.NewClient(t, a.URL(), mcptest.Config{})
		if err != nil {
			t.Fatalf("initialize: %v", err)
		}
		if init.ProtocolVersion != mcp.ProtocolVersion20251125 || c.GetSessionId() == "" {
			t.Errorf("fell back to %q, session %q", init.ProtocolVersion, c.GetSessionId())
		}
		if got := mcptest.Text(mcptest.CallTool(t, c, "whoami", nil, nil)); got != "replica-d" {
			t.Errorf("whoami %q", got)
		}
		st := a.MustStats(t)
		if st.RequestsByRPC["server/discover"] != 1 || st.StatusCodes["400"] != 1 || st.RequestsByRPC["initialize"] != 1 || st.MisroutedTotal != 0 {
			t.Errorf("stats: %+v", st)
		}
	})

	t.Run("everything", func(t *testing.T) {
		t.Parallel()
		e := peers.StartEverything(t)
		// The everything server answers the probe 400, -32000, id null.
		resp, body := rawModernProbe(t, e.URL())
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"code":-32000`) {
			t.Errorf("probe: %d %s", resp.StatusCode, body)
		}
		c, init, err := mcptest.NewClient(t, e.URL(), mcptest.Config{})
		if err != nil {
			t.Fatalf("initialize: %v", err)
		}
		if init.ProtocolVersion != mcp.ProtocolVersion20251125 || c.GetSessionId() == "" {
			t.Errorf("fell back to %q, session %q", init.ProtocolVersion, c.GetSessionId())
		}
		if got := mcptest.Text(mcptest.CallTool(t, c, "echo", map[string]any{"message": "hi"}, nil)); got != "Echo: hi" {
			t.Errorf("echo %q", got)
		}
		// Elicitation on the POST stream works with the mcp-go client too.
		if got := mcptest.Text(mcptest.CallTool(t, c, "trigger-elicitation-request", nil, nil)); !strings.Contains(got, mcptest.ElicitAnswer) {
			t.Errorf("elicitation: %q", got)
		}
	})
}

// rawModernProbe sends server/discover the way a 2026-07-28 client does.
func rawModernProbe(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	return mcptest.Raw(t, http.MethodPost, url, map[string]string{
		mcp.HeaderProtocolVersion: mcp.ProtocolVersion20260728,
		"Mcp-Method":              string(mcp.MethodServerDiscover),
	}, `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"`+mcp.MetaKeyProtocolVersion+`":"2026-07-28"}}}`)
}
