package e2e

// End-to-end: a session belongs to the consumer that created it; DELETE by
// its owner revokes it on every node; idle sessions expire.

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
)

// TestSessionSecurity: a session belongs to its consumer; DELETE by its
// owner revokes it on every node; idle sessions expire after session.ttl.
func TestSessionSecurity(t *testing.T) {
	t.Run("consumer binding and revocation", func(t *testing.T) {
		rd := redistest.StartServer(t)
		rs := startLegacyReplicas(t, 2)
		cfg := deck(t, deckOptions{relay: redisSession(rd.Host(), rd.Port(), map[string]any{"learn_wait_ms": 250})})
		a := startNode(t, cfg, addrs(rs...))
		b := startNode(t, cfg, addrs(rs...))
		owner := newSessions(t, a, b, rs, 1)[0]
		ownerName, _ := owner.whoami(t, a.URL())
		served := func() int64 {
			var n int64
			for _, r := range rs {
				n += r.MustStats(t).RequestsBySession[owner.session]
			}
			return n
		}
		seen := served()

		thief := newPinRaw(otherKey, 10*time.Second)
		thief.session = owner.session
		var stolen durations
		stolenAt := map[gateway][]rpcResult{}
		for i, n := range []gateway{a, b, a} {
			var r rpcResult
			id := fmt.Sprintf("steal-%d", i)
			stolen = append(stolen, timed(func() {
				r = thief.post(t, n.URL(), `{"jsonrpc":"2.0","id":"`+id+`","method":"tools/call","params":{"name":"whoami","arguments":{}}}`)
			}))
			if !pluginNotFound(r) || r.Message["id"] != id {
				t.Errorf("another consumer's request %d: %d %s, want the 404 envelope echoing %q", i, r.Status, r.Body, id)
			}
			stolenAt[n] = append(stolenAt[n], r)
		}
		var del rpcResult
		stolen = append(stolen, timed(func() { del = thief.delete(t, b.URL()) }))
		if del.Status != http.StatusNotFound {
			t.Errorf("another consumer's DELETE: %d %s, want 404", del.Status, del.Body)
		}
		// Let the Log phase of the other consumer's requests run: they must
		// neither end nor lose the session. A finishes its two, B its
		// request and the DELETE.
		waitAnswered(t, a, 5*time.Second, stolenAt[a]...)
		waitAnswered(t, b, 5*time.Second, append(stolenAt[b], del)...)
		if got := served(); got != seen {
			t.Errorf("another consumer's requests reached the replica: %d requests of the session, %d before", got, seen)
		}
		for _, n := range []gateway{a, b} {
			if name, r := owner.whoami(t, n.URL()); name != ownerName {
				t.Errorf("owner after the other consumer's attempts: %d %s", r.Status, r.Body)
			}
		}
		stranger := newPinRaw(demoKey, 10*time.Second)
		stranger.session = randomID()
		var unknown rpcResult
		unknownWait := timed(func() { unknown = stranger.request(t, b.URL(), "tools/list", "") })
		if !pluginNotFound(unknown) {
			t.Errorf("unknown session id: %d %s", unknown.Status, unknown.Body)
		}
		// Neither the answer nor its timing may tell that the session exists.
		if stolen.pct(0) < 200*time.Millisecond || unknownWait < 200*time.Millisecond {
			t.Errorf("another consumer's 404 after %v (fastest), an unknown id's after %v: both should pay the 250 ms learn wait",
				stolen.pct(0), unknownWait)
		}
		t.Logf("another consumer's requests and DELETE: 404 after %v; an unknown id: 404 after %v (learn_wait_ms 250)", stolen, unknownWait)

		// The owner's DELETE revokes the session on both nodes.
		if r := owner.delete(t, a.URL()); r.Status != http.StatusOK {
			t.Fatalf("owner's DELETE: %d %s", r.Status, r.Body)
		}
		revoked := time.Now()
		first := owner.request(t, b.URL(), "tools/list", "")
		for _, n := range []gateway{b, a} {
			ok := false
			for range 40 {
				if r := owner.request(t, n.URL(), "tools/list", ""); pluginNotFound(r) {
					ok = true
					break
				} else if r.Status/100 == 2 {
					t.Errorf("request after the owner's DELETE succeeded: %d %s", r.Status, r.Body)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !ok {
				t.Errorf("node %s never answered the 404 envelope after the owner's DELETE", n.URL())
			}
		}
		t.Logf("request right after the owner's DELETE (other node): %d plugin envelope %v; both nodes answer 404 %v after it",
			first.Status, pluginNotFound(first), time.Since(revoked).Round(time.Millisecond))
		if first.Status != http.StatusNotFound {
			t.Errorf("request right after the owner's DELETE: %d %s", first.Status, first.Body)
		}
		if mis := misroutes(t, rs...); mis != 0 {
			t.Errorf("%d misroutes", mis)
		}
	})

	t.Run("ttl", func(t *testing.T) {
		rd := redistest.StartServer(t)
		rs := startLegacyReplicas(t, 2)
		for _, store := range []string{"redis", "memory"} {
			t.Run(store, func(t *testing.T) {
				t.Parallel() // both mostly sleep
				relay := redisSession(rd.Host(), rd.Port(), map[string]any{"ttl": 1})
				if store == "memory" {
					relay = map[string]any{"session": map[string]any{"store": "memory", "ttl": 1}}
				}
				cfg := deck(t, deckOptions{relay: relay})
				a := startNode(t, cfg, addrs(rs...))
				b := a
				if store == "redis" {
					b = startNode(t, cfg, addrs(rs...))
				}
				ss := newSessions(t, a, b, rs, 2)
				idle, busy := ss[0], ss[1]
				busyName, _ := busy.whoami(t, a.URL())

				start := time.Now()
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { // busy: a request every 300 ms for 3.3 x ttl
					defer wg.Done()
					g := goTB{t}
					for i := 0; time.Since(start) < 3300*time.Millisecond; i++ {
						n := a
						if i%2 == 1 {
							n = b
						}
						if name, r := busy.whoami(g, n.URL()); name != busyName {
							t.Errorf("%s: busy session after %v: %d %s", store, time.Since(start).Round(time.Millisecond), r.Status, r.Body)
							return
						}
						time.Sleep(300 * time.Millisecond)
					}
				}()
				// idle: untouched; one request after 2 x ttl (any earlier
				// request would slide its expiry), then polled up to 5 s.
				time.Sleep(2 * time.Second)
				var expiredAfter time.Duration
				for time.Since(start) < 7*time.Second {
					r := idle.request(t, b.URL(), "tools/list", "")
					if pluginNotFound(r) {
						expiredAfter = time.Since(start)
						break
					}
					if r.Status != http.StatusOK {
						t.Errorf("%s: idle session: %d %s", store, r.Status, r.Body)
						break
					}
					time.Sleep(500 * time.Millisecond)
				}
				wg.Wait()
				if expiredAfter == 0 {
					t.Errorf("%s: the session idle for more than ttl (1 s) was still served after %v", store, time.Since(start).Round(time.Millisecond))
				}
				alive := time.Since(start)
				if name, r := busy.whoami(t, b.URL()); name != busyName {
					t.Errorf("%s: busy session at the end: %d %s", store, r.Status, r.Body)
				}
				t.Logf("%s, ttl 1 s: idle session answered 404 at its first request %v after it was last used; busy session alive after %v",
					store, expiredAfter.Round(time.Millisecond), alive.Round(time.Millisecond))
			})
		}
	})
}
