package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
)

// TestSessionTimingEquality: a session id presented by another consumer is
// answered exactly as an id that does not exist, in the same time: the
// answers are byte-identical (status, body, headers but Date and Kong's
// latency and request id), and over 30 interleaved samples of each, in random order,
// the medians of the two response times differ by less than 10 ms while
// both pay the same wait: session.learn_wait_ms (50 ms here, so the test
// stays short) with Redis, none with the memory store (its sessions are
// recorded before their initialize answers).
// Both stores: memory (one node), Redis, and Redis 5 ms away. Without the equal wait, the
// other consumer's answer would come about 50 ms sooner. The long profile
// (MCP_RELAY_SOAK=long, make soak) takes 200 samples of each.
func TestSessionTimingEquality(t *testing.T) {
	const (
		wait     = 50 * time.Millisecond
		maxDelta = 10 * time.Millisecond
	)
	samples := 30
	if profile, _, _ := soakProfile(); profile == "long" {
		samples = 200
	}
	// "redis-5ms": every byte Redis sends is 5 ms late (a Redis in another
	// zone), so skipped or extra round trips would show.
	for _, store := range []string{"memory", "redis", "redis-5ms"} {
		t.Run(store, func(t *testing.T) {
			rs := startLegacyReplicas(t, 1)
			relay := map[string]any{"session": map[string]any{"store": "memory", "learn_wait_ms": int(wait / time.Millisecond)}}
			switch store {
			case "redis":
				rd := redistest.StartServer(t)
				relay = redisSession(rd.Host(), rd.Port(), map[string]any{"learn_wait_ms": int(wait / time.Millisecond)})
			case "redis-5ms":
				rd := redistest.StartServer(t)
				px := startSlowProxy(t, fmt.Sprintf("%s:%d", rd.Host(), rd.Port()))
				px.SetDelay(5 * time.Millisecond)
				relay = redisSession(px.Host(), px.Port(), map[string]any{"learn_wait_ms": int(wait / time.Millisecond)})
			}
			a := startNode(t, deck(t, deckOptions{relay: relay}), addrs(rs...))
			owner := newPinRaw(demoKey, 10*time.Second)
			if r := owner.initialize(t, a.URL()); r.Status != http.StatusOK || owner.session == "" {
				t.Fatalf("initialize: %d %s", r.Status, r.Body)
			}
			if name, r := owner.whoami(t, a.URL()); name == "" {
				t.Fatalf("owner's whoami: %d %s", r.Status, r.Body)
			}

			// The same consumer sends both kinds, with the same JSON-RPC
			// id: only the session id differs.
			thief := newPinRaw(otherKey, 10*time.Second)
			probe := func(id string) (time.Duration, rpcResult) {
				thief.session = id
				var r rpcResult
				d := timed(func() {
					r = thief.post(t, a.URL(), `{"jsonrpc":"2.0","id":"probe","method":"tools/call","params":{"name":"whoami","arguments":{}}}`)
				})
				return d, r
			}
			for range 3 { // warm up connections and caches
				probe(owner.session)
				probe(randomID())
			}
			var foreign, unknown, foreignKong, unknownKong durations
			var ref rpcResult
			for i := range samples {
				kinds := []bool{true, false} // true: the owner's session
				if rand.IntN(2) == 0 {
					kinds[0], kinds[1] = false, true
				}
				for _, own := range kinds {
					id := randomID()
					if own {
						id = owner.session
					}
					d, r := probe(id)
					k, _ := strconv.Atoi(r.Header.Get("X-Kong-Response-Latency"))
					if own {
						foreign, foreignKong = append(foreign, d), append(foreignKong, time.Duration(k)*time.Millisecond)
					} else {
						unknown, unknownKong = append(unknown, d), append(unknownKong, time.Duration(k)*time.Millisecond)
					}
					if !pluginNotFound(r) {
						t.Fatalf("sample %d (owner's session %v): %d %s, want the 404 envelope", i, own, r.Status, r.Body)
					}
					if i == 0 && ref.Header == nil {
						ref = r
						continue
					}
					if diff := answerDiff(ref, r); diff != "" {
						t.Fatalf("sample %d (owner's session %v): the answer differs: %s", i, own, diff)
					}
				}
			}
			// The owner's session is untouched.
			if name, r := owner.whoami(t, a.URL()); name == "" {
				t.Errorf("owner's whoami after the probes: %d %s", r.Status, r.Body)
			}

			delta := foreign.pct(0.5) - unknown.pct(0.5)
			t.Logf("%s store, learn_wait_ms %d, %d samples each, interleaved in random order:", store, wait/time.Millisecond, samples)
			t.Logf("  another consumer's session: %v, interquartile range %v", foreign, iqr(foreign))
			t.Logf("  unknown session:            %v, interquartile range %v", unknown, iqr(unknown))
			t.Logf("  difference of the medians %v; X-Kong-Response-Latency medians %v and %v", delta.Round(10*time.Microsecond),
				foreignKong.pct(0.5), unknownKong.pct(0.5))
			t.Logf("  answer (both kinds, byte for byte): %d %s", ref.Status, bytes.TrimSpace(ref.Body))
			// The memory store without -log-phase records sessions before
			// their answers: no request waits there.
			if want := map[bool]time.Duration{true: 0, false: wait}[store == "memory"]; foreign.pct(0) < want || unknown.pct(0) < want {
				t.Errorf("fastest answers %v (another consumer's) and %v (unknown): both must wait %v",
					foreign.pct(0), unknown.pct(0), want)
			}
			if delta.Abs() >= maxDelta {
				t.Errorf("the medians differ by %v (another consumer's %v, unknown %v): the timing tells whether the session exists",
					delta, foreign.pct(0.5), unknown.pct(0.5))
			}
		})
	}
}

// iqr is the interquartile range of d.
func iqr(d durations) time.Duration {
	return (d.pct(0.75) - d.pct(0.25)).Round(10 * time.Microsecond)
}

// answerDiff describes how b differs from a: status, body, and headers
// other than those that change with every answer (Date, Kong's latency and
// request id).
func answerDiff(a, b rpcResult) string {
	if a.Status != b.Status {
		return fmt.Sprintf("status %d, then %d", a.Status, b.Status)
	}
	if !bytes.Equal(a.Body, b.Body) {
		return fmt.Sprintf("body %q, then %q", a.Body, b.Body)
	}
	skip := func(k string) bool { return k == "Date" || k == "X-Kong-Response-Latency" || k == "X-Kong-Request-Id" }
	keys := func(h http.Header) []string {
		var ks []string
		for k := range h {
			if !skip(k) {
				ks = append(ks, k)
			}
		}
		slices.Sort(ks)
		return ks
	}
	ka, kb := keys(a.Header), keys(b.Header)
	if !slices.Equal(ka, kb) {
		return fmt.Sprintf("headers %v, then %v", ka, kb)
	}
	for _, k := range ka {
		if va, vb := strings.Join(a.Header[k], ","), strings.Join(b.Header[k], ","); va != vb {
			return fmt.Sprintf("header %s %q, then %q", k, va, vb)
		}
	}
	return ""
}
