package standin

import (
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dyingConn is a plugin socket connection whose process dies as the frame
// reaches it: the send fails with EPIPE.
type dyingConn struct{ net.Conn }

func (dyingConn) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestInstanceClaimLeftByFailedSend: as in Kong 3.9.1, a start_instance
// whose send fails raises out of get_instance_id with its claim still
// taken (pb_rpc.lua asserts the send; plugin.lua removes a claim only when
// the start returns an error). The plugin's next requests wait for that
// claim until one gives up ("Could not claim instance_id", returned to
// handle_event); the others then claim it themselves. Real Kong showed it
// when a plugin process was killed under traffic: a node's requests
// through the plugin got 500 after 10 s.
func TestInstanceClaimLeftByFailedSend(t *testing.T) {
	wait := instanceClaimWait
	instanceClaimWait = 300 * time.Millisecond
	t.Cleanup(func() { instanceClaimWait = wait })

	c := newRPCClient(t.TempDir()+"/no-plugin.socket", time.Second)
	c.connect = func() (net.Conn, error) {
		ours, peer := net.Pipe()
		t.Cleanup(func() { _ = ours.Close(); _ = peer.Close() })
		return dyingConn{ours}, nil
	}
	in := &instances{byKey: map[string]*instance{}}
	p := &Plugin{ID: "0d6797b6-3f1c-51a1-a35f-6d18fae05605", Name: "mcp-relay"}
	var log *nodeLog // nil: no error log

	_, err := in.get(c, "mcp-relay", p, []byte(`{}`), log)
	var thrown *luaErr
	if !errors.As(err, &thrown) || err.Error() != "pb_rpc.lua:284: broken pipe" {
		t.Fatalf("start over a broken pipe: %v (%T), want the Lua error pb_rpc.lua raises", err, err)
	}
	if in.byKey[p.ID] == nil {
		t.Fatal("the claim was removed; Kong leaves it taken")
	}

	// Two requests wait for the claim: the first to give up reports
	// Kong's claim error; the other claims the instance itself and starts
	// it (here over a socket with no plugin: a connect error, raised).
	c.connect = nil
	start := time.Now()
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = in.get(c, "mcp-relay", p, []byte(`{}`), log)
		}()
	}
	wg.Wait()
	if took := time.Since(start); took < instanceClaimWait {
		t.Errorf("the waiters ended after %v, before the claim wait (%v)", took, instanceClaimWait)
	}
	var unclaimed *claimError
	claims, starts := 0, 0
	for _, err := range errs {
		switch {
		case errors.As(err, &unclaimed) && strings.HasPrefix(err.Error(), "Could not claim instance_id for mcp-relay (key: "+p.ID):
			claims++
		case err != nil && strings.Contains(err.Error(), "no such file or directory"):
			starts++
		default:
			t.Errorf("waiter: %v (%T)", err, err)
		}
	}
	if claims < 1 {
		t.Errorf("%d claim errors and %d new starts, want a waiter to give up on the claim", claims, starts)
	}
	if in.byKey[p.ID] != nil {
		t.Error("a failed connect left a claim")
	}
}
