package e2e

// End-to-end: the replica a session is pinned to dies; its clients get the
// 404 envelope once the probes find it down and re-initialise.

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// TestReplicaDeath: the replica a session is pinned to dies; with
// session.recover off, its clients get Kong's 502 until the plugin's probes
// find the replica down, then the 404 envelope, re-initialise onto the live
// replica and work again; the live replica's sessions never notice. (With
// recovery on, recovery_test.go.)
func TestReplicaDeath(t *testing.T) {
	live, dead := peers.StartLegacy(t, "replica-live"), peers.StartLegacy(t, "replica-dead")
	m := freeport.Addr(t)
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{"session": map[string]any{"recover": false}}}),
		addrs(live, dead), withMetrics(m))

	// Six sessions, three on each replica.
	var onLive, onDead []*rawMCP
	for i := 0; (len(onLive) < 3 || len(onDead) < 3) && i < 40; i++ {
		c := newPinRaw(demoKey, 10*time.Second)
		if r := c.initialize(t, node.URL()); r.Status != http.StatusOK {
			t.Fatalf("initialize: %d %s", r.Status, r.Body)
		}
		c.initialized(t, node.URL())
		switch name, r := c.whoami(t, node.URL()); name {
		case live.Name():
			if len(onLive) < 3 {
				onLive = append(onLive, c)
			}
		case dead.Name():
			if len(onDead) < 3 {
				onDead = append(onDead, c)
			}
		default:
			t.Fatalf("whoami: %d %s", r.Status, r.Body)
		}
	}
	if len(onLive) < 3 || len(onDead) < 3 {
		t.Fatalf("sessions not spread: %d on %s, %d on %s", len(onLive), live.Name(), len(onDead), dead.Name())
	}

	dead.Kill()
	killed := time.Now()

	// The live replica's sessions keep working throughout.
	stop := make(chan struct{})
	var liveCalls atomic.Int64
	var bg sync.WaitGroup
	for i, c := range onLive {
		bg.Add(1)
		go func() {
			defer bg.Done()
			g := goTB{t}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if name, r := c.whoami(g, node.URL()); name != live.Name() {
					t.Errorf("live session %d during the recovery: %d %s", i, r.Status, r.Body)
					return
				}
				liveCalls.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	type recovery struct {
		errors  int // gateway errors before the 404
		inits   int // initialize attempts until one reached the live replica
		elapsed time.Duration
	}
	recs := make([]recovery, len(onDead))
	var wg sync.WaitGroup
	for i, c := range onDead {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := goTB{t}
			var rec recovery
			got404 := false
			// The plugin's probes (session.replica_probe_ms, 500 ms by
			// default, two failures) find the replica down within about a
			// second; until then Kong answers 502.
			for n, deadline := 0, time.Now().Add(5*time.Second); !got404 && time.Now().Before(deadline); n++ {
				if n > 0 {
					time.Sleep(50 * time.Millisecond)
				}
				id := fmt.Sprintf(`"death-%d-%d"`, i, n)
				r := c.post(g, node.URL(), `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/list","params":{}}`)
				switch {
				case r.Status == http.StatusNotFound:
					if !pluginNotFound(r) || r.Message["id"] != strings.Trim(id, `"`) {
						t.Errorf("dead session %d: 404 is not the envelope echoing %s: %s", i, id, r.Body)
					}
					got404 = true
				case r.Status >= 500 && r.Message["jsonrpc"] == "2.0" && r.Message["error"] != nil:
					rec.errors++ // Kong's 502 (connect refused), JSON-RPC shaped by error_template.json
				default:
					t.Errorf("dead session %d: request %d answered %d %s", i, n, r.Status, r.Body)
					return
				}
			}
			if !got404 {
				t.Errorf("dead session %d: no 404 within 5 s (%d gateway errors)", i, rec.errors)
				return
			}
			// Re-initialise: the balancer may still pick the dead replica
			// (Kong has no health checks here), so retry as a client would.
			for rec.inits < 10 {
				rec.inits++
				if r := c.initialize(g, node.URL()); r.Status != http.StatusOK || c.session == "" {
					continue
				}
				c.initialized(g, node.URL())
				if name, r := c.whoami(g, node.URL()); name != live.Name() {
					t.Errorf("dead session %d re-initialised: whoami %d %s", i, r.Status, r.Body)
					return
				}
				rec.elapsed = time.Since(killed)
				recs[i] = rec
				return
			}
			t.Errorf("dead session %d: no initialize reached the live replica in %d attempts", i, rec.inits)
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()

	var times durations
	for i, r := range recs {
		if r.elapsed > 0 {
			times = append(times, r.elapsed)
		}
		t.Logf("session %d of the dead replica: %d gateway error(s) before the 404, %d initialize attempt(s), working again %v after the kill",
			i, r.errors, r.inits, r.elapsed.Round(time.Millisecond))
	}
	t.Logf("recovery after the replica's death: %v; live sessions made %d calls meanwhile", times, liveCalls.Load())
	if liveCalls.Load() == 0 {
		t.Error("the live sessions made no call during the recovery")
	}
	for _, c := range onLive { // and afterwards
		if name, r := c.whoami(t, node.URL()); name != live.Name() {
			t.Errorf("live session after the recovery: %d %s", r.Status, r.Body)
		}
	}
	if st := live.MustStats(t); st.MisroutedTotal != 0 {
		t.Errorf("the live replica saw %d requests of sessions it does not own", st.MisroutedTotal)
	}
	mt := metrics(t, m)
	if lost := mt["mcp_relay_sessions_lost_total"]; lost != float64(len(onDead)) {
		t.Errorf("sessions_lost_total %v, want %d", lost, len(onDead))
	}
	t.Logf("metrics: sessions_lost_total %v, sessions_unknown_total %v", mt["mcp_relay_sessions_lost_total"], mt["mcp_relay_sessions_unknown_total"])
}
