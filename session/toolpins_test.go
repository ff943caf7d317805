package session

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
)

var (
	d1 = "sha256:" + strings.Repeat("1", 64)
	d2 = "sha256:" + strings.Repeat("2", 64)
	d3 = "sha256:" + strings.Repeat("3", 64)
)

// pinsContract is what every ToolPins keeps: first digests set-if-absent,
// seal once, the latest hold per name; a and b are two nodes' views of
// one book (the same one for the process's book).
func pinsContract(t *testing.T, a, b ToolPins) {
	ctx := context.Background()
	scope := fmt.Sprintf("route:%d", time.Now().UnixNano())
	set, err := a.Pins(ctx, scope)
	if err != nil || len(set.Baseline) != 0 || set.Sealed || len(set.Held) != 0 {
		t.Fatalf("a new scope: %+v, %v", set, err)
	}
	if set, err = a.WritePins(ctx, scope, PinWrite{First: map[string]string{"echo": d1, "sum": d2}}); err != nil ||
		set.Baseline["echo"] != d1 || set.Baseline["sum"] != d2 || set.Sealed {
		t.Fatalf("first write: %+v, %v", set, err)
	}
	// The other node's first digest of echo loses: the first one stays.
	set, err = b.WritePins(ctx, scope, PinWrite{First: map[string]string{"echo": d3, "ask": d3}, Seal: true})
	if err != nil || set.Baseline["echo"] != d1 || set.Baseline["ask"] != d3 || !set.Sealed {
		t.Fatalf("second node's write: %+v, %v", set, err)
	}
	// Node a sees what b wrote once b's event reached it (b's write returns
	// when its own subscriber has it, so a's has it about then).
	waitFor(t, "a sees b's write", slack, func() bool {
		set, err = a.Pins(ctx, scope)
		return err == nil && set.Baseline["ask"] == d3 && set.Sealed
	})
	seen := time.Now().Truncate(time.Millisecond)
	if _, err = a.WritePins(ctx, scope, PinWrite{Hold: map[string]Hold{"echo": {Digest: d2, Seen: seen}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b sees a's hold", slack, func() bool {
		set, err = b.Pins(ctx, scope)
		return err == nil && set.Held["echo"].Digest == d2 && set.Held["echo"].Seen.Equal(seen)
	})
	later := seen.Add(time.Minute)
	if set, err = b.WritePins(ctx, scope, PinWrite{Hold: map[string]Hold{"echo": {Digest: d3, Seen: later}}}); err != nil ||
		set.Held["echo"].Digest != d3 || !set.Held["echo"].Seen.Equal(later) || set.Baseline["echo"] != d1 {
		t.Fatalf("a newer hold: %+v, %v", set, err)
	}
	// Another scope is another book.
	if set, err = a.Pins(ctx, scope+"x"); err != nil || len(set.Baseline) != 0 {
		t.Fatalf("another scope: %+v, %v", set, err)
	}
}

func TestToolPinsProcess(t *testing.T) {
	p := &processPins{scopes: map[string]*PinSet{}}
	pinsContract(t, p, p)
	v := p.version.Load()
	if _, err := p.WritePins(context.Background(), "s", PinWrite{}); err != nil || p.version.Load() != v {
		t.Errorf("an empty write changed the version: %d -> %d, %v", v, p.version.Load(), err)
	}
}

func TestToolPinsRedis(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := singleCfg(srv, "pins:")
	cfg.Timeout = 5 * time.Second
	a := newNode(t, cfg, RedisOptions{CacheSize: 10})
	b := newNode(t, cfg, RedisOptions{CacheSize: 10})
	pinsContract(t, a, b)

	// A cached scope costs no round trip; another node's write drops it.
	// A fill is not kept when an invalidation of any scope raced it (here
	// the late event of b's last write above), so the next read may fill
	// again; from then on reads are free.
	ctx := context.Background()
	waitFor(t, "a read of the cached scope costs no round trip", slack, func() bool {
		if _, err := a.Pins(ctx, "route:cached"); err != nil {
			return false
		}
		before := a.Stats().RoundTrips
		_, err := a.Pins(ctx, "route:cached")
		return err == nil && a.Stats().RoundTrips == before
	})
	if _, err := b.WritePins(ctx, "route:cached", PinWrite{First: map[string]string{"x": d1}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b's write", slack, func() bool {
		set, err := a.Pins(ctx, "route:cached")
		return err == nil && set.Baseline["x"] == d1
	})
	if keys, err := srv.Do("KEYS", "pins:t:*"); err != nil || !strings.Contains(keys, "pins:t:{route:cached}") {
		t.Errorf("keys %q, %v", keys, err)
	}
	if ttl, err := srv.Do("TTL", "pins:t:{route:cached}"); err != nil || ttl != "-1" {
		t.Errorf("pins expire: TTL %q, %v", ttl, err)
	}
}

// Nodes racing to record the first digest of the same names all end up
// with one digest per name.
func TestToolPinsRedisRace(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := singleCfg(srv, "race:")
	cfg.Timeout = 5 * time.Second
	nodes := []*Redis{newNode(t, cfg, RedisOptions{}), newNode(t, cfg, RedisOptions{}), newNode(t, cfg, RedisOptions{})}
	var wg sync.WaitGroup
	results := make([]*PinSet, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := fmt.Sprintf("sha256:%064d", i)
			set, err := n.WritePins(context.Background(), "route:race", PinWrite{First: map[string]string{"a": d, "b": d}})
			if err != nil {
				t.Error(err)
			}
			results[i] = set
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r == nil || r.Baseline["a"] != results[0].Baseline["a"] || r.Baseline["b"] != results[0].Baseline["b"] {
			t.Errorf("node %d: %+v, node 0: %+v", i, r, results[0])
		}
	}
}

func TestToolPinsBounded(t *testing.T) {
	p := &processPins{scopes: map[string]*PinSet{}}
	first := map[string]string{}
	for i := range MaxPinnedTools + 5 {
		first[fmt.Sprint("tool-", i)] = d1
	}
	set, _ := p.WritePins(context.Background(), "s", PinWrite{First: first})
	if len(set.Baseline) != MaxPinnedTools {
		t.Errorf("%d pinned, bound %d", len(set.Baseline), MaxPinnedTools)
	}
}

// The process's pins come back after a restart, and a sessions file
// another process wrote is merged: first digests stay, the later hold wins.
func TestToolPinsSessionsFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions")
	seen := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	set := newMapSet(t)
	_, _ = set.pins.WritePins(ctx, "route:1", PinWrite{First: map[string]string{"echo": d1, "na\x00me": d2}, Seal: true,
		Hold: map[string]Hold{"echo": {Digest: d2, Seen: seen}}})
	_, _ = set.pins.WritePins(ctx, "service:2", PinWrite{First: map[string]string{"x": d3}})
	var logs logBuf
	f := testSessionsFile(t, path, set, &logs, nil)
	f.tick(false) // changed pins are written at the next tick, due or not
	if id, ok := statID(path); !ok || id != f.known {
		t.Fatalf("pins not written at the tick: %v", logs.String())
	}

	restarted := newMapSet(t)
	testSessionsFile(t, path, restarted, &logs, nil)
	got, _ := restarted.pins.Pins(ctx, "route:1")
	if got.Baseline["echo"] != d1 || got.Baseline["na\x00me"] != d2 || !got.Sealed ||
		got.Held["echo"].Digest != d2 || !got.Held["echo"].Seen.Equal(seen) {
		t.Errorf("route:1 after a restart: %+v", got)
	}
	if got, _ := restarted.pins.Pins(ctx, "service:2"); got.Baseline["x"] != d3 || got.Sealed {
		t.Errorf("service:2 after a restart: %+v", got)
	}
	if !strings.Contains(logs.String(), "tool_pin_scopes=2") {
		t.Errorf("start-up line does not count the scopes: %s", logs.String())
	}

	// A process that has its own first digests merges another's file.
	other := newMapSet(t)
	_, _ = other.pins.WritePins(ctx, "route:1", PinWrite{First: map[string]string{"echo": d3, "new": d3},
		Hold: map[string]Hold{"echo": {Digest: d3, Seen: seen.Add(time.Second)}}})
	testSessionsFile(t, path, other, &logs, nil)
	got, _ = other.pins.Pins(ctx, "route:1")
	if got.Baseline["echo"] != d3 || got.Baseline["new"] != d3 || !got.Sealed || got.Held["echo"].Digest != d3 {
		t.Errorf("merged: %+v", got)
	}
}
