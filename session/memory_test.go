package session

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

func TestMemoryLRUEviction(t *testing.T) {
	m := NewMemory(MemoryOptions{TTL: time.Hour, MaxSessions: 4})
	t.Cleanup(func() { _ = m.Close() })
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if err := m.Learn(ctx, fmt.Sprint("s", i), Record{Target: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	// s0 is the oldest but was just used; s1 is the least recently used.
	if _, ok, _ := m.Lookup(ctx, "s0", 0); !ok {
		t.Fatal("s0 missing")
	}
	if err := m.Learn(ctx, "s4", Record{Target: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Learn(ctx, "s5", Record{Target: "t"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"s0": true, "s1": false, "s2": false, "s3": true, "s4": true, "s5": true}
	for id, present := range want {
		if _, ok, _ := m.Lookup(ctx, id, 0); ok != present {
			t.Errorf("%s present = %v, want %v", id, ok, present)
		}
	}
	if n := m.Len(); n != 4 {
		t.Errorf("Len = %d, want 4", n)
	}
}

func TestMemoryEvictsExpiredFirst(t *testing.T) {
	m := NewMemory(MemoryOptions{TTL: time.Hour, MaxSessions: 3, TombstoneTTL: time.Millisecond})
	t.Cleanup(func() { _ = m.Close() })
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if err := m.Learn(ctx, id, Record{Target: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	_, _, _ = m.Lookup(ctx, "a", 0) // a is used, b is next in line...
	if err := m.End(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // ...but c's tombstone has expired
	_ = m.Learn(ctx, "d", Record{Target: "t"})
	for id, present := range map[string]bool{"a": true, "d": true} {
		if _, ok, _ := m.Lookup(ctx, id, 0); ok != present {
			t.Errorf("%s present = %v, want %v", id, ok, present)
		}
	}
	if n := m.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
}

func TestMemorySweepFreesExpired(t *testing.T) {
	m := NewMemory(MemoryOptions{TTL: 50 * time.Millisecond, MaxSessions: 2000}) // one shard
	t.Cleanup(func() { _ = m.Close() })
	for i := 0; i < 1000; i++ {
		_ = m.Learn(context.Background(), fmt.Sprint("s", i), Record{Target: "t"})
	}
	for i := 0; i < 200 && m.Len() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("Len = %d after 2s, want 0 (sweeper)", n)
	}
	// Freed slots are reused, not appended: the slab grows only by what the
	// free slots cannot hold. (It may hold fewer than 1000 slots: on a slow
	// machine the sweeper frees the first records while the last are still
	// being learned, and those reuse the freed slots.)
	slotCount := func() (n int) {
		for i := range m.shards {
			m.shards[i].mu.RLock()
			n += len(m.shards[i].slots)
			m.shards[i].mu.RUnlock()
		}
		return n
	}
	freed := slotCount()
	for i := 0; i < 1000; i++ {
		_ = m.Learn(context.Background(), fmt.Sprint("n", i), Record{Target: "t"})
	}
	if slots := slotCount(); freed == 0 || slots > max(freed, 1000) {
		t.Errorf("slab holds %d slots for 1000 sessions after %d were freed", slots, freed)
	}
}

func TestMemoryClosed(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	_ = m.Close()
	_ = m.Close()
	if _, _, err := m.Lookup(context.Background(), "x", 0); err == nil {
		t.Error("Lookup on a closed store: no error")
	}
	if err := m.Learn(context.Background(), "x", Record{}); err == nil {
		t.Error("Learn on a closed store: no error")
	}
}

func TestMemoryKeepsNoReferenceToCallerID(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	t.Cleanup(func() { _ = m.Close() })
	buf := []byte("big-request-buffer:session-1:rest")
	id := string(buf[19:28])
	_ = m.Learn(context.Background(), id, Record{Target: "t"})
	sh := m.shard(id)
	for k := range sh.index {
		if unsafe.StringData(k) == unsafe.StringData(id) {
			t.Fatal("store kept the caller's string")
		}
	}
}

// TestMemoryFootprint reports heap bytes per session with 1M sessions
// (100k with -short), ids shaped like mcp-go's ("mcp-session-" + UUID).
func TestMemoryFootprint(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	perSession := memoryFootprint(t, n)
	t.Logf("memory store: %.0f bytes/session at %d sessions (ids of 48 bytes)", perSession, n)
	if perSession > 400 {
		t.Errorf("%.0f bytes/session, want at most 400 (target 200)", perSession)
	}
}

func memoryFootprint(tb testing.TB, n int) float64 {
	tb.Helper()
	targets := make([]string, 16)
	for i := range targets {
		targets[i] = fmt.Sprintf("10.0.0.%d:8080", i)
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// What recovery keeps: the initialize params of a few client kinds
	// (interned), and for 1% of the sessions a recovered family's ids.
	inits := make([]string, 4)
	for i := range inits {
		inits[i] = fmt.Sprintf(`{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{},"sampling":{},"roots":{"listChanged":true}},"clientInfo":{"name":"client-%d","version":"1.2.%d"}}`, i, i)
	}
	m := NewMemory(MemoryOptions{TTL: time.Hour, MaxSessions: n})
	defer m.Close()
	before := heap()
	ctx := context.Background()
	created := time.Now()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("mcp-session-%08x-%04x-4%03x-8%03x-%012x", i, i&0xffff, i&0xfff, i&0xfff, i)
		rec := Record{Target: targets[i%len(targets)], Consumer: fmt.Sprint("consumer-", i%100), Created: created,
			Init: inits[i%len(inits)], Service: "0b1d3f4c-8d2e-5a6b-9c7d-1e2f3a4b5c6d"}
		if i%100 == 0 {
			rec.Upstream = fmt.Sprintf("mcp-upstream-%08x-%04x-4%03x-8%03x-%012x", i, i&0xffff, i&0xfff, i&0xfff, i)
		}
		err := m.Learn(ctx, id, rec)
		if err != nil {
			tb.Fatal(err)
		}
	}
	after := heap()
	if m.Len() != n {
		tb.Fatalf("Len = %d, want %d", m.Len(), n)
	}
	runtime.KeepAlive(m)
	return float64(after-before) / float64(n)
}
