package session

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mapSet is a process's memory stores, for tests that must not touch the
// package's shared registry.
type mapSet struct {
	mu     sync.Mutex
	stores map[string]*Memory
	pins   *processPins
}

func newMapSet(t *testing.T) *mapSet {
	s := &mapSet{stores: map[string]*Memory{}, pins: &processPins{scopes: map[string]*PinSet{}}}
	t.Cleanup(func() {
		for _, m := range s.stores {
			_ = m.Close()
		}
	})
	return s
}

func (s *mapSet) memoryStores() map[string]*Memory {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*Memory, len(s.stores))
	for k, m := range s.stores {
		out[k] = m
	}
	return out
}

func (s *mapSet) toolPins() *processPins { return s.pins }

func (s *mapSet) memoryStore(key string, opts MemoryOptions) *Memory {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.stores[key]; m != nil {
		return m
	}
	s.stores[key] = NewMemory(opts)
	return s.stores[key]
}

// store returns the store for ttl and max as Open keys them.
func (s *mapSet) store(ttl time.Duration, maxSessions int) *Memory {
	_, key, _ := settingsKey(Options{Store: StoreMemory, TTL: ttl, MaxSessions: maxSessions})
	return s.memoryStore(key, MemoryOptions{TTL: ttl, MaxSessions: maxSessions})
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testSessionsFile(t *testing.T, path string, set *mapSet, logs *logBuf, onHints func([]Hint)) *SessionsFile {
	t.Helper()
	return testSessionsFileOpts(t, set, SessionsFileOptions{Path: path, Logger: slog.New(slog.NewTextHandler(logs, nil)), OnHints: onHints})
}

// testSessionsFileOpts starts a SessionsFile on set whose ticks are called
// by the tests.
func testSessionsFileOpts(t *testing.T, set *mapSet, opts SessionsFileOptions) *SessionsFile {
	t.Helper()
	opts.Interval = time.Hour
	p := startSessionsFile(opts, set)
	t.Cleanup(p.Close)
	return p
}

func mustLookup(t *testing.T, m *Memory, id string) Record {
	t.Helper()
	rec, ok, err := m.Lookup(context.Background(), id, 0)
	if err != nil || !ok {
		t.Fatalf("lookup %q: found %v, err %v", id, ok, err)
	}
	return rec
}

// TestSnapshotRoundTrip: every state and field of every store, and the
// learn hints, come back after a restart.
func TestSnapshotRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions")
	created := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	recs := map[string]Record{
		"active":                              {Target: "10.0.0.1:8080", Consumer: "consumer-1", Created: created, State: Active},
		"anon":                                {Target: "[fd00::1]:9000", Created: created, State: Active},
		"lost":                                {Target: "10.0.0.2:8080", Consumer: "c|with|bars", Created: created, State: Lost},
		"ended":                               {Target: "10.0.0.3:8080", Consumer: "consumer-3", Created: created, State: Ended},
		"long-id-" + strings.Repeat("z", 900): {Target: "10.0.0.4:1", Created: created, State: Active},
		// What recovery keeps: the initialize params, the Kong service, the
		// upstream id of a recovered session and the alias of its new id.
		"recovered": {Target: "10.0.0.5:8080", Consumer: "consumer-5", Created: created, State: Active,
			Init:    `{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}`,
			Service: "service-1", Upstream: "upstream-id-1"},
		"upstream-id-1": {Target: "10.0.0.5:8080", Consumer: "consumer-5", Created: created, State: Active,
			Service: "service-1", Alias: "recovered"},
	}
	var logs logBuf
	set := newMapSet(t)
	big, small := set.store(time.Hour, 1000), set.store(time.Minute, 10)
	for id, r := range recs {
		if err := big.Learn(ctx, id, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := small.Learn(ctx, "small-1", recs["active"]); err != nil {
		t.Fatal(err)
	}
	p := testSessionsFile(t, path, set, &logs, nil)
	until := time.Now().Add(20 * time.Second).Truncate(time.Nanosecond)
	if err := p.Shutdown([]Hint{{ID: "hinted", Until: until, Init: `{"capabilities":{}}`}, {ID: "stale", Until: time.Now().Add(-time.Second)}}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("file mode %v, want 0600", mode)
	}

	before := ReadSessionsFileStats()
	var hints []Hint
	set2 := newMapSet(t)
	testSessionsFile(t, path, set2, &logs, func(h []Hint) { hints = append(hints, h...) })
	if n := len(set2.stores); n != 2 {
		t.Fatalf("%d stores restored, want 2", n)
	}
	big2, small2 := set2.store(time.Hour, 1000), set2.store(time.Minute, 10)
	for id, want := range recs {
		if got := mustLookup(t, big2, id); got != want {
			t.Errorf("%.20s: got %+v, want %+v", id, got, want)
		}
	}
	if got := mustLookup(t, small2, "small-1"); got != recs["active"] {
		t.Errorf("small-1: got %+v", got)
	}
	if _, ok, _ := small2.Lookup(ctx, "active", 0); ok {
		t.Error("a record of one store appeared in another")
	}
	if len(hints) != 1 || hints[0].ID != "hinted" || !hints[0].Until.Equal(until) || hints[0].Init != `{"capabilities":{}}` {
		t.Errorf("hints = %+v, want only the unexpired one", hints)
	}
	after := ReadSessionsFileStats()
	if d := after.Restored - before.Restored; d != uint64(len(recs)+1) {
		t.Errorf("restored counter +%d, want %d", d, len(recs)+1)
	}
	want := fmt.Sprintf("restored %d sessions from %s (skipped 0 expired)", len(recs)+1, path)
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}

// TestSnapshotKeepsRemainingTTL: records come back with the age they had,
// so they expire when they would have; expired ones are skipped.
func TestSnapshotKeepsRemainingTTL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions")
	const ttl = 10 * time.Second
	now := time.Now()
	var b bytes.Buffer
	sw := newSnapWriter(&b, now.UnixNano())
	_, key, _ := settingsKey(Options{Store: StoreMemory, TTL: 10 * time.Second, MaxSessions: 100})
	sw.beginSection(snapKindStore, key, int64(ttl), int64(ttl), 100)
	rec := func(st State) string { return encodeRecord(Record{Target: "10.0.0.1:1", Created: now, State: st}) }
	sw.entry("aged-7s", now.Add(-7*time.Second).UnixNano(), rec(Active))
	sw.entry("expired-11s", now.Add(-11*time.Second).UnixNano(), rec(Active))
	sw.entry("ended-3s", now.Add(-3*time.Second).UnixNano(), rec(Ended))
	sw.entry("ended-12s", now.Add(-12*time.Second).UnixNano(), rec(Ended))
	sw.entry("future", now.Add(time.Hour).UnixNano(), rec(Active)) // clock stepped back: age 0
	sw.endSection()
	if err := sw.finish(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	before := ReadSessionsFileStats()
	var logs logBuf
	set := newMapSet(t)
	testSessionsFile(t, path, set, &logs, nil)
	m := set.store(ttl, 100)
	age := func(id string) time.Duration {
		sh := m.shard(id)
		sh.mu.RLock()
		defer sh.mu.RUnlock()
		i, ok := sh.index[id]
		if !ok {
			return -1
		}
		return time.Duration(m.now() - atomic.LoadInt64(&sh.slots[i].seen))
	}
	if a := age("aged-7s"); a < 7*time.Second || a >= ttl {
		t.Errorf("aged-7s restored with age %v, want 7s..10s", a)
	}
	if a := age("ended-3s"); a < 3*time.Second || a >= ttl {
		t.Errorf("ended-3s restored with age %v, want 3s..10s", a)
	}
	if a := age("future"); a < 0 || a >= time.Second {
		t.Errorf("future restored with age %v, want about 0", a)
	}
	for _, id := range []string{"expired-11s", "ended-12s"} {
		if a := age(id); a != -1 {
			t.Errorf("%s restored (age %v), want skipped", id, a)
		}
	}
	if got := mustLookup(t, m, "ended-3s").State; got != Ended {
		t.Errorf("ended-3s state %v, want Ended", got)
	}
	st := ReadSessionsFileStats()
	if d := st.SkippedExpire - before.SkippedExpire; d != 2 {
		t.Errorf("skipped +%d, want 2", d)
	}
	if !strings.Contains(logs.String(), "restored 3 sessions from "+path+" (skipped 2 expired)") {
		t.Errorf("log: %s", logs.String())
	}
}

// TestSnapshotUnusableFile: corrupt, truncated, foreign or other-version
// files are logged, moved aside, and the process starts empty and writes a
// good file again.
func TestSnapshotUnusableFile(t *testing.T) {
	good := goldenSnapshot(t)
	other := bytes.Clone(good)
	other[8] = 9
	tests := map[string][]byte{
		"corrupt":       append(bytes.Clone(good[:60]), bytes.Repeat([]byte{0xee}, 30)...),
		"truncated":     good[:len(good)-7],
		"foreign":       []byte("PK\x03\x04 this is a zip file, not a snapshot........"),
		"other version": other,
		"empty":         {},
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sessions")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			before := ReadSessionsFileStats()
			var logs logBuf
			set := newMapSet(t)
			p := testSessionsFile(t, path, set, &logs, nil)
			if len(set.stores) != 0 {
				t.Errorf("%d stores restored from an unusable file", len(set.stores))
			}
			if d := ReadSessionsFileStats().ReadErrors - before.ReadErrors; d != 1 {
				t.Errorf("read errors +%d, want 1", d)
			}
			if got, err := os.ReadFile(path + ".bad"); err != nil || !bytes.Equal(got, data) {
				t.Errorf("file not moved aside intact: %v", err)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), path) {
				t.Errorf("no error naming the file: %s", logs.String())
			}
			_ = set.store(time.Hour, 10).Learn(context.Background(), "s", Record{Target: "10.0.0.1:1"})
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(path)
			if _, err := readSnapshot(raw); err != nil {
				t.Errorf("file written after the bad one is unreadable: %v", err)
			}
		})
	}
}

// TestSnapshotWritesOnlyChanges: a check with nothing new writes nothing;
// a learn, an end, or a lookup that slid a TTL makes the next one write.
func TestSnapshotWritesOnlyChanges(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions")
	var logs logBuf
	set := newMapSet(t)
	m := set.store(time.Hour, 100) // gran: 1 s
	p := testSessionsFile(t, path, set, &logs, nil)
	writes := func() uint64 { return ReadSessionsFileStats().Writes }
	w0 := writes()
	p.tick(true)
	if writes() != w0 {
		t.Fatal("an empty store was written")
	}
	_ = m.Learn(ctx, "a", Record{Target: "10.0.0.1:1"})
	p.tick(true)
	if writes() != w0+1 {
		t.Fatalf("writes +%d after a learn, want 1", writes()-w0)
	}
	p.tick(true)
	if writes() != w0+1 {
		t.Fatal("written again without a change")
	}
	_ = m.End(ctx, "a")
	p.tick(true)
	if writes() != w0+2 {
		t.Fatal("an end was not written")
	}
	_ = m.Learn(ctx, "b", Record{Target: "10.0.0.1:1"})
	p.tick(true)
	// A lookup slides the TTL once its last use is a granule old: make it so.
	sh := m.shard("b")
	sh.mu.RLock()
	atomic.AddInt64(&sh.slots[sh.index["b"]].seen, -int64(2*time.Second))
	sh.mu.RUnlock()
	p.saved[m] = m.now()
	w1 := writes()
	mustLookup(t, m, "b")
	p.tick(true)
	if writes() != w1+1 {
		t.Fatal("a slid TTL was not written")
	}
}

// TestSnapshotDuringWrites: snapshots taken while records are learned,
// used and ended (run with -race) are readable and hold every record
// learned before the snapshot began.
func TestSnapshotDuringWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions")
	var logs logBuf
	set := newMapSet(t)
	m := set.store(time.Hour, 100_000)
	p := testSessionsFile(t, path, set, &logs, nil)
	var learned atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				_ = m.Learn(ctx, id, Record{Target: "10.0.0.1:1", Consumer: "c"})
				learned.Add(1)
				_, _, _ = m.Lookup(ctx, id, 0)
				if i%3 == 0 {
					_ = m.End(ctx, id)
				}
			}
		}()
	}
	var minimum int64
	for range 5 {
		minimum = learned.Load()
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	set2 := newMapSet(t)
	testSessionsFile(t, path, set2, &logs, nil)
	n := int64(set2.store(time.Hour, 100_000).Len())
	if n < minimum {
		t.Errorf("%d records restored, want at least the %d learned before the last snapshot", n, minimum)
	}
	t.Logf("last snapshot: %d records (at least %d)", n, minimum)
}

// TestSnapshotMergesAnotherProcess: during a Kong reload the new plugin
// process starts before the old one is stopped; the old one writes its
// last snapshot then, and the new one merges it in without losing its own.
func TestSnapshotMergesAnotherProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions")
	var logs logBuf
	oldSet := newMapSet(t)
	oldStore := oldSet.store(time.Hour, 100)
	_ = oldStore.Learn(ctx, "both", Record{Target: "10.0.0.1:1", State: Active})
	oldProc := testSessionsFile(t, path, oldSet, &logs, nil)
	if err := oldProc.Flush(); err != nil {
		t.Fatal(err)
	}
	var hints []Hint
	newSet := newMapSet(t)
	newProc := testSessionsFile(t, path, newSet, &logs, func(h []Hint) { hints = append(hints, h...) })
	newStore := newSet.store(time.Hour, 100)
	_ = newStore.Learn(ctx, "new-only", Record{Target: "10.0.0.2:1"})
	_ = newStore.End(ctx, "both") // ended through the new process: stays ended

	_ = oldStore.Learn(ctx, "old-late", Record{Target: "10.0.0.3:1"})
	if err := oldProc.Shutdown([]Hint{{ID: "late-hint", Until: time.Now().Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	newProc.tick(false)
	for id, want := range map[string]State{"both": Ended, "new-only": Active, "old-late": Active} {
		if got := mustLookup(t, newStore, id).State; got != want {
			t.Errorf("%s: state %v, want %v", id, got, want)
		}
	}
	if len(hints) != 1 || hints[0].ID != "late-hint" {
		t.Errorf("hints = %+v", hints)
	}
	final := newMapSet(t)
	testSessionsFile(t, path, final, &logs, nil)
	if n := final.store(time.Hour, 100).Len(); n != 3 {
		t.Errorf("file after the merge holds %d records, want 3", n)
	}
}

// TestSnapshotSharedStores: a restored store is the one Open hands out for
// the same settings, and stores of other settings stay apart.
func TestSnapshotSharedStores(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions")
	cfg := Options{Store: StoreMemory, TTL: 1234 * time.Second, MaxSessions: 4321}
	h, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = h.Learn(ctx, "shared-1", Record{Target: "10.0.0.9:9"})
	var logs logBuf
	p := startSessionsFile(SessionsFileOptions{Path: path, Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, registrySet{})
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	_ = h.Close() // the last handle: the store is gone, as in a new process

	p = startSessionsFile(SessionsFileOptions{Path: path, Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, registrySet{})
	defer p.Close()
	h2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if rec, ok, err := h2.Lookup(ctx, "shared-1", 0); err != nil || !ok || rec.Target != "10.0.0.9:9" {
		t.Fatalf("Open after the restore: %+v %v %v", rec, ok, err)
	}
	other, err := Open(Options{Store: StoreMemory, TTL: 1235 * time.Second, MaxSessions: 4321})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, ok, _ := other.Lookup(ctx, "shared-1", 0); ok {
		t.Error("a store with other settings got the record")
	}
}

// TestSnapshotWriteFailures: a write that fails is counted every time and
// logged once a minute, and leaves no temporary file behind.
func TestSnapshotWriteFailures(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gone", "sessions") // a directory that does not exist
	var logs logBuf
	set := newMapSet(t)
	_ = set.store(time.Hour, 10).Learn(context.Background(), "s", Record{Target: "10.0.0.1:1"})
	p := testSessionsFile(t, path, set, &logs, nil)
	before := ReadSessionsFileStats().WriteErrors
	for range 3 {
		if err := p.Flush(); err == nil {
			t.Fatal("Flush into a missing directory: no error")
		}
	}
	if d := ReadSessionsFileStats().WriteErrors - before; d != 3 {
		t.Errorf("write errors +%d, want 3", d)
	}
	if n := strings.Count(logs.String(), "cannot write the session snapshot"); n != 1 {
		t.Errorf("%d error lines for 3 failures within a minute, want 1", n)
	}
	if err := os.Mkdir(filepath.Join(dir, "gone"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "failures_not_logged=2") {
		t.Errorf("the recovery line does not count the unlogged failures:\n%s", logs.String())
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "gone"))
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only the snapshot", len(entries))
	}
}

// TestSnapshotRestoreTellsTargets: the service and target of every Active
// restored record reach SessionsFileOptions.TargetSeen once (the recovery fleet is seeded from
// them); ended and lost records' targets do not.
func TestSnapshotRestoreTellsTargets(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions")
	set := newMapSet(t)
	m := set.store(time.Hour, 100)
	created := time.Now()
	for id, r := range map[string]Record{
		"a1":    {Target: "10.0.0.1:80", Created: created, State: Active, Service: "svc"},
		"a2":    {Target: "10.0.0.1:80", Created: created, State: Active, Service: "svc"},
		"b":     {Target: "10.0.0.2:80", Created: created, State: Active, Service: "svc"},
		"other": {Target: "10.0.0.2:80", Created: created, State: Active, Service: "svc-2"},
		"lost":  {Target: "10.0.0.3:80", Created: created, State: Lost, Service: "svc"},
		"ended": {Target: "10.0.0.4:80", Created: created, State: Ended, Service: "svc"},
	} {
		if err := m.Learn(ctx, id, r); err != nil {
			t.Fatal(err)
		}
	}
	var logs logBuf
	if err := testSessionsFile(t, path, set, &logs, nil).Shutdown(nil); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	seen := map[string]int{}
	record := func(service, target string) {
		mu.Lock()
		seen[service+" "+target]++
		mu.Unlock()
	}
	testSessionsFileOpts(t, newMapSet(t), SessionsFileOptions{Path: path,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), TargetSeen: record})
	want := map[string]int{"svc 10.0.0.1:80": 1, "svc 10.0.0.2:80": 1, "svc-2 10.0.0.2:80": 1}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("targets told %v, want %v", seen, want)
	}
}
