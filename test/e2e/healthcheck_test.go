package e2e

import (
	"net/http"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/peers"
)

// withoutHealthchecks is kong/kong.yaml changed by o (deck) with a bare
// upstream: no active or passive health checks.
func withoutHealthchecks(t *testing.T, o deckOptions) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(deck(t, o), &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc["upstreams"].([]any)[0].(map[string]any), "healthchecks")
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// New sessions avoid a killed replica: with kong/kong.yaml's retries and
// health checks no initialize gets Kong's 502 (the first connect refused
// moves it to the other replica and takes the dead one out); without them
// every other initialize does. Restarted, the replica gets new sessions
// again once the active probe has seen it.
func TestNewSessionsAvoidKilledReplica(t *testing.T) {
	a, b := peers.StartLegacy(t, "hc-a"), peers.StartLegacy(t, "hc-b")
	before := startNode(t, withoutHealthchecks(t, deckOptions{service: map[string]any{"retries": 0}}), addrs(a, b))
	after := startNode(t, deck(t, deckOptions{}), addrs(a, b))
	c := newRaw(demoKey)
	for _, n := range []string{before.URL(), after.URL()} { // both replicas serve both nodes
		for range 2 {
			if r := c.initialize(t, n); r.Status != http.StatusOK {
				t.Fatalf("initialize with both replicas up: %d %s", r.Status, r.Body)
			}
		}
	}

	b.Kill()
	const n = 20
	count502 := func(url string) (bad int) {
		for range n {
			r := c.initialize(t, url)
			switch r.Status {
			case http.StatusOK:
			case http.StatusBadGateway:
				bad++
			default:
				t.Fatalf("initialize: %d %s", r.Status, r.Body)
			}
		}
		return bad
	}
	badBefore, badAfter := count502(before.URL()), count502(after.URL())
	t.Logf("replica killed: %d of %d new initializes got 502 without retries and health checks, %d of %d with kong/kong.yaml's",
		badBefore, n, badAfter, n)
	if badAfter != 0 {
		t.Errorf("%d initializes got 502 with retries and health checks", badAfter)
	}
	if badBefore == 0 {
		t.Errorf("no initialize got 502 without them: the test did not kill a balanced replica")
	}

	b.Restart()
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("the restarted replica got no new session in 100 initializes (the active probe should bring it back)")
		}
		if r := c.initialize(t, after.URL()); r.Status != http.StatusOK {
			t.Fatalf("initialize after restart: %d %s", r.Status, r.Body)
		}
		if b.MustStats(t).RequestsByRPC["initialize"] > 0 {
			t.Logf("restarted replica got a new session at initialize %d", i+1)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}
