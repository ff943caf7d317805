package standin

import (
	"bufio"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// brokenPipeConn is a plugin socket connection that looks alive in the
// pool and whose sends fail as a socket whose plugin process just died.
type brokenPipeConn struct{ net.Conn }

func (brokenPipeConn) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestInstanceClaimLeftByFailedSend: as in Kong 3.9.1, a start_instance
// whose send fails raises out of get_instance_id with its claim still
// taken (pb_rpc.lua asserts the send; plugin.lua removes a claim only when
// the start returns an error). The next request of the plugin waits for
// that claim until get_instance_id gives up ("Could not claim
// instance_id"), and only the one after starts the instance again.
// Real Kong showed it when a plugin process was killed under traffic: a
// node's requests through the plugin got 500 for 10 s.
func TestInstanceClaimLeftByFailedSend(t *testing.T) {
	wait := instanceClaimWait
	instanceClaimWait = 300 * time.Millisecond
	t.Cleanup(func() { instanceClaimWait = wait })

	ours, peer := net.Pipe()
	t.Cleanup(func() { _ = ours.Close(); _ = peer.Close() })
	c := newRPCClient(t.TempDir()+"/no-plugin.socket", time.Second)
	c.idle = append(c.idle, &rpcConn{Conn: brokenPipeConn{ours}, br: bufio.NewReader(ours)})
	in := &instances{byKey: map[string]*instance{}}
	p := &Plugin{ID: "0d6797b6-3f1c-51a1-a35f-6d18fae05605", Name: "mcp-relay"}
	var log *nodeLog // nil: no error log

	_, err := in.get(c, "mcp-relay", p, []byte(`{}`), log)
	if _, thrown := err.(*luaErr); !thrown || err.Error() != "pb_rpc.lua:285: broken pipe" {
		t.Fatalf("start over a broken pipe: %v (%T), want the Lua error pb_rpc.lua raises", err, err)
	}
	if in.byKey[p.ID] == nil {
		t.Fatal("the claim was removed; Kong leaves it taken")
	}

	start := time.Now()
	_, err = in.get(c, "mcp-relay", p, []byte(`{}`), log)
	if err == nil || !strings.HasPrefix(err.Error(), "Could not claim instance_id for mcp-relay") {
		t.Fatalf("next request: %v, want Kong's claim timeout", err)
	}
	if took := time.Since(start); took < instanceClaimWait {
		t.Errorf("next request failed after %v, before the claim wait (%v)", took, instanceClaimWait)
	}

	// The claim is gone: the next start is tried (and, with no plugin
	// listening, fails as a connect error, leaving nothing behind).
	_, err = in.get(c, "mcp-relay", p, []byte(`{}`), log)
	if err == nil || strings.HasPrefix(err.Error(), "Could not claim") {
		t.Fatalf("after the claim wait: %v, want a new start's connect error", err)
	}
	if in.byKey[p.ID] != nil {
		t.Error("a failed connect left a claim")
	}
}
