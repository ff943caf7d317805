package session

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Memory stores live in the plugin process, which Kong restarts on reload,
// after a crash, or when worker 0 restarts. A SessionsFile keeps their
// records in a file so that a restarted process still knows every session:
// it writes the file periodically (only when something changed) and at a
// graceful stop, and reads it once at start, before Kong starts any plugin
// instance. Writes go to a temporary file that is synced and renamed over
// the old one, so a crash never leaves a torn file.

// Hint is a learn hint (see handler) kept across a graceful restart: a new
// session whose answer has left Response but whose Log phase has not run.
type Hint struct {
	ID    string
	Until time.Time
	Init  string // the session's initialize params, for recovery (Record.Init)
}

// SessionsFileOptions configures StartSessionsFile.
type SessionsFileOptions struct {
	// Path of the file; its directory must exist. The file is created 0600:
	// session ids are bearer-like secrets.
	Path string
	// Interval between checks for changes; a change is written at the next
	// check (default 5 s).
	Interval time.Duration
	// Logger receives the start-up line and errors (default slog.Default()).
	Logger *slog.Logger
	// OnHints receives learn hints read from the file: at start, and when
	// another process (the one Kong is stopping during a reload) wrote it.
	OnHints func([]Hint)
	// TargetSeen, when set, is told the service and target of the Active
	// records restored from the file (once per pair): the replicas they are
	// pinned to answered an initialize once.
	TargetSeen func(service, target string)
}

// DefaultSessionsFileInterval is how often changes are written.
const DefaultSessionsFileInterval = 5 * time.Second

// snapshotErrorEvery bounds how often write failures are logged.
const snapshotErrorEvery = time.Minute

// SessionsFileStats are process-wide counters, for metrics.
type SessionsFileStats struct {
	Restored      uint64 // records restored from files (tombstones too)
	SkippedExpire uint64 // records found expired when read
	Writes        uint64 // files written
	WriteErrors   uint64 // failed writes
	ReadErrors    uint64 // files that could not be read (moved aside when corrupt)
	LastRecords   int64  // records in the last file written
	LastBytes     int64  // size of the last file written
	LastWriteNs   int64  // how long the last write took
}

var snapStats struct {
	restored, skipped, writes, writeErrors, readErrors atomic.Uint64
	lastRecords, lastBytes, lastWriteNs                atomic.Int64
}

// ReadSessionsFileStats returns the counters.
func ReadSessionsFileStats() SessionsFileStats {
	return SessionsFileStats{
		Restored: snapStats.restored.Load(), SkippedExpire: snapStats.skipped.Load(),
		Writes: snapStats.writes.Load(), WriteErrors: snapStats.writeErrors.Load(),
		ReadErrors: snapStats.readErrors.Load(), LastRecords: snapStats.lastRecords.Load(),
		LastBytes: snapStats.lastBytes.Load(), LastWriteNs: snapStats.lastWriteNs.Load(),
	}
}

// storeSet is where snapshots find memory stores and put restored ones:
// the process's shared stores (Open), or a test's own.
type storeSet interface {
	memoryStores() map[string]*Memory
	memoryStore(key string, opts MemoryOptions) *Memory
	toolPins() *processPins
}

// SessionsFile writes and restores the process's memory stores.
type SessionsFile struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	onHints  func([]Hint)
	seen     func(service, target string) // SessionsFileOptions.TargetSeen
	stores   storeSet

	writeMu    sync.Mutex        // one read or write of the file at a time; guards the fields below
	saved      map[*Memory]int64 // store clock when each store was last written
	savedPins  uint64            // version of the tool pins last written or read
	known      fileID            // the file as this process last wrote or read it
	lastErrLog time.Time
	suppressed int

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// fileID tells whether another process replaced the file.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func statID(path string) (fileID, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, false
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id, true
}

// StartSessionsFile reads opts.Path into the process's shared memory stores
// (one per settings, as Open shares them) and starts the periodic writer.
// It never fails: an unreadable file is logged, a corrupt one is also moved
// aside (to Path + ".bad"), and the process starts empty.
func StartSessionsFile(opts SessionsFileOptions) *SessionsFile {
	return startSessionsFile(opts, registrySet{})
}

func startSessionsFile(opts SessionsFileOptions, stores storeSet) *SessionsFile {
	if opts.Interval <= 0 {
		opts.Interval = DefaultSessionsFileInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	p := &SessionsFile{
		path: opts.Path, interval: opts.Interval, log: opts.Logger, onHints: opts.OnHints, seen: opts.TargetSeen, stores: stores,
		saved: map[*Memory]int64{}, stop: make(chan struct{}), done: make(chan struct{}),
	}
	p.writeMu.Lock()
	p.load(false)
	p.writeMu.Unlock()
	go p.run()
	return p
}

// load reads the file into the stores; merge restores only ids the stores
// do not hold (the file another process wrote while this one ran).
func (p *SessionsFile) load(merge bool) {
	start := time.Now()
	id, _ := statID(p.path)
	data, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		if !merge {
			p.log.Info("no session snapshot yet: starting empty", "file", p.path)
		}
		return
	}
	if err != nil {
		snapStats.readErrors.Add(1)
		p.log.Error("cannot read the session snapshot: starting without it", "file", p.path, "err", err)
		p.known = id
		return
	}
	f, err := readSnapshot(data)
	if err != nil {
		snapStats.readErrors.Add(1)
		aside := p.path + ".bad"
		if rerr := os.Rename(p.path, aside); rerr != nil {
			p.log.Error("unusable session snapshot, and it could not be moved aside: starting without it",
				"file", p.path, "err", err, "rename_err", rerr)
			p.known = id
			return
		}
		p.log.Error("unusable session snapshot moved aside: starting without it", "file", p.path,
			"moved_to", aside, "err", err)
		return
	}
	var restored, expired, stores, pinScopes int
	var hints []Hint
	targets := map[serviceTarget]struct{}{}
	now := time.Now()
	for _, s := range f.sections {
		switch s.kind {
		case snapKindStore:
			if s.key == snapKeyToolPins {
				scopes := readPinsSection(s.entries)
				p.stores.toolPins().restore(scopes)
				pinScopes += len(scopes)
				continue
			}
			if !strings.HasPrefix(s.key, "memory|") || s.ttl <= 0 || s.maxSessions <= 0 {
				continue
			}
			m := p.stores.memoryStore(s.key, MemoryOptions{
				TTL: time.Duration(s.ttl), MaxSessions: int(s.maxSessions), TombstoneTTL: time.Duration(s.tombTTL),
			})
			if m == nil {
				continue
			}
			if !merge {
				m.reserve(s.count)
			}
			r, x := restoreSection(m, s.entries, merge, now, targets)
			restored, expired, stores = restored+r, expired+x, stores+1
			if !merge {
				// The file already holds what was just restored.
				p.saved[m] = m.now()
			}
		case snapKindHints:
			eachSnapEntry(s.entries, func(e snapEntry) {
				if until := time.Unix(0, e.time); until.After(now) {
					hints = append(hints, Hint{ID: e.id, Until: until, Init: string(e.value)})
				}
			})
		}
	}
	snapStats.restored.Add(uint64(restored))
	snapStats.skipped.Add(uint64(expired))
	p.known = id
	// The replicas the restored sessions are pinned to answered an
	// initialize once: the process knows them again as it did before the
	// restart, so a recovery finds a live replica before any request pins
	// one.
	if p.seen != nil {
		for st := range targets {
			if st.target != "" {
				p.seen(st.service, st.target)
			}
		}
	}
	if len(hints) > 0 && p.onHints != nil {
		p.onHints(hints)
	}
	msg := fmt.Sprintf("restored %d sessions from %s (skipped %d expired)", restored, p.path, expired)
	if merge {
		msg = fmt.Sprintf("merged %d sessions from %s, written by another process (skipped %d expired)", restored, p.path, expired)
	}
	if !merge {
		_, p.savedPins = p.stores.toolPins().snapshot() // the file holds what was just restored
	}
	level := slog.LevelInfo
	if merge && restored+expired+len(hints)+pinScopes == 0 {
		// An old process that is draining (a Kong reload with open
		// streams) writes its file again and again: nothing new, no line.
		level = slog.LevelDebug
	}
	p.log.Log(context.Background(), level, msg, "stores", stores, "learn_hints", len(hints), "tool_pin_scopes", pinScopes,
		"written_at", time.Unix(0, f.written).UTC().Format(time.RFC3339), "took", time.Since(start).Round(time.Millisecond))
}

// serviceTarget is one replica of one Kong service.
type serviceTarget struct{ service, target string }

// restoreSection puts a section's unexpired records into m with their
// remaining TTL and state, and adds the service and target of each Active
// one it restored to targets.
func restoreSection(m *Memory, entries []byte, onlyMissing bool, now time.Time, targets map[serviceTarget]struct{}) (restored, expired int) {
	wall := now.UnixNano()
	eachSnapEntry(entries, func(e snapEntry) {
		rec, err := decodeRecord(string(e.value))
		if err != nil {
			return
		}
		age := max(wall-e.time, 0)
		if (rec.State == Active && age > m.ttl) || (rec.State != Active && age > m.tombTTL) {
			expired++
			return
		}
		if onlyMissing && m.holds(e.id) {
			return
		}
		if m.restore(e.id, rec, age) == nil {
			restored++
			if rec.State == Active && rec.Target != "" {
				targets[serviceTarget{rec.Service, rec.Target}] = struct{}{}
			}
		}
	})
	return restored, expired
}

// restore learns id with its state and sets its last use age ago, so it
// keeps the rest of its TTL.
func (m *Memory) restore(id string, rec Record, age int64) error {
	if err := m.Learn(context.Background(), id, rec); err != nil {
		return err
	}
	sh := m.shard(id)
	seen := m.now() - age
	sh.mu.RLock()
	if i, ok := sh.index[id]; ok {
		atomic.StoreInt64(&sh.slots[i].seen, seen)
	}
	sh.mu.RUnlock()
	return nil
}

// reserve sizes an empty store's shards for n records, so a restore does
// not grow maps and slabs step by step.
func (m *Memory) reserve(n int) {
	n = min(n, int(m.max))
	per := n/len(m.shards) + n/len(m.shards)/8 + 8
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		if len(sh.index) == 0 && len(sh.slots) == 0 {
			sh.index = make(map[string]uint32, per)
			sh.slots = make([]memEntry, 0, per)
		}
		sh.mu.Unlock()
	}
}

// holds tells whether id has a record, without marking it used.
func (m *Memory) holds(id string) bool {
	sh := m.shard(id)
	sh.mu.RLock()
	_, ok := sh.index[id]
	sh.mu.RUnlock()
	return ok
}

// changedSince tells whether a record was written or used after the store
// clock reached at. Snapshots of unchanged stores are skipped.
func (m *Memory) changedSince(at int64) bool {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for j := range sh.slots {
			if e := &sh.slots[j]; e.id != "" && atomic.LoadInt64(&e.seen) > at {
				sh.mu.RUnlock()
				return true
			}
		}
		sh.mu.RUnlock()
	}
	return false
}

// appendSnapshot writes m's unexpired records, one shard at a time under
// its read lock (lookups go on; writers to that shard wait for it), and
// returns how many.
func (m *Memory) appendSnapshot(sw *snapWriter) int {
	wallBase := m.base.UnixNano()
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		now := m.now()
		sh.mu.RLock()
		for j := range sh.slots {
			e := &sh.slots[j]
			if e.id == "" || m.expired(e, now) {
				continue
			}
			sw.buf = appendSnapEntry(sw.buf, e.id, wallBase+atomic.LoadInt64(&e.seen), encodeRecord(e.record()))
			n++
		}
		sh.mu.RUnlock()
		sw.maybeFlush()
	}
	return n
}

// foreignCheckEvery is how often the file is checked for another process's
// write (a stat): during a Kong reload the old process writes its sessions
// after the new one started, and the new one must merge them within the
// learn wait (session.learn_wait_ms, 250 ms by default) that holds a
// request for an unknown session.
const foreignCheckEvery = 50 * time.Millisecond

func (p *SessionsFile) run() {
	defer close(p.done)
	t := time.NewTicker(min(p.interval, foreignCheckEvery))
	defer t.Stop()
	next := time.Now().Add(p.interval)
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			due := !now.Before(next)
			p.tick(due)
			if due {
				next = now.Add(p.interval)
			}
		}
	}
}

// tick merges the file if another process replaced it, and then writes
// it; otherwise, when due, it writes the file if a store changed since its
// last write.
func (p *SessionsFile) tick(due bool) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	changed := false
	if id, ok := statID(p.path); ok && id != p.known {
		p.load(true)
		changed = true
	}
	// Tool pins change rarely and are trust anchors: written at the next
	// tick, not the next interval, so a killed process loses at most the
	// last tick's.
	if _, v := p.stores.toolPins().snapshot(); v != p.savedPins {
		changed = true
	}
	if !changed && !due {
		return
	}
	stores := p.stores.memoryStores()
	live := make(map[*Memory]bool, len(stores))
	for _, m := range stores {
		live[m] = true
		at, ok := p.saved[m]
		if !ok {
			at = -1 << 63
		}
		if !changed && m.changedSince(at) {
			changed = true
		}
	}
	for m := range p.saved {
		if !live[m] { // closed since: write the file without it
			delete(p.saved, m)
			changed = true
		}
	}
	if changed {
		_ = p.writeLocked(stores, nil) // logged and counted
	}
}

// Flush writes the file now, whether or not anything changed.
func (p *SessionsFile) Flush() error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	return p.writeLocked(p.stores.memoryStores(), nil)
}

// Handover writes the file now, with the learn hints given, for the
// process that took this one's place during a Kong reload: that one
// merges it at once, while this one goes on serving the requests its old
// worker still has. Another process's file is merged first, as always.
func (p *SessionsFile) Handover(hints []Hint) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if id, ok := statID(p.path); ok && id != p.known {
		p.load(true)
	}
	return p.writeLocked(p.stores.memoryStores(), hints)
}

// Shutdown stops the periodic writer and writes the file one last time,
// with the learn hints given (a graceful stop: SIGTERM from Kong).
func (p *SessionsFile) Shutdown(hints []Hint) error {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if id, ok := statID(p.path); ok && id != p.known {
		p.load(true) // the file the next process wrote during a reload
	}
	err := p.writeLocked(p.stores.memoryStores(), hints)
	if err == nil {
		p.log.Info(fmt.Sprintf("wrote %d sessions to %s at shutdown", snapStats.lastRecords.Load(), p.path),
			"learn_hints", len(hints), "took", time.Duration(snapStats.lastWriteNs.Load()).Round(time.Millisecond))
	}
	return err
}

// Close stops the periodic writer without writing.
func (p *SessionsFile) Close() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}

func (p *SessionsFile) writeLocked(stores map[string]*Memory, hints []Hint) error {
	start := time.Now()
	records, size, err := p.writeFile(stores, hints)
	if err != nil {
		snapStats.writeErrors.Add(1)
		p.logWriteError(err)
		return err
	}
	snapStats.writes.Add(1)
	snapStats.lastRecords.Store(int64(records))
	snapStats.lastBytes.Store(size)
	snapStats.lastWriteNs.Store(int64(time.Since(start)))
	if p.suppressed > 0 {
		p.log.Info("session snapshot written again after failures", "file", p.path, "failures_not_logged", p.suppressed)
		p.suppressed = 0
	}
	return nil
}

func (p *SessionsFile) logWriteError(err error) {
	if now := time.Now(); now.Sub(p.lastErrLog) >= snapshotErrorEvery {
		p.log.Error("cannot write the session snapshot: a restart would lose the sessions since the last write",
			"file", p.path, "err", err, "failures_not_logged", p.suppressed)
		p.lastErrLog, p.suppressed = now, 0
		return
	}
	p.suppressed++
}

func (p *SessionsFile) writeFile(stores map[string]*Memory, hints []Hint) (records int, size int64, err error) {
	dir, base := filepath.Split(p.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, base+".tmp-*") // mode 0600
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	sw := newSnapWriter(tmp, time.Now().UnixNano())
	keys := make([]string, 0, len(stores))
	for k := range stores {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	saved := make(map[*Memory]int64, len(stores))
	for _, k := range keys {
		m := stores[k]
		saved[m] = m.now()
		sw.beginSection(snapKindStore, k, m.ttl, m.tombTTL, m.max)
		records += m.appendSnapshot(sw)
		sw.endSection()
	}
	pins, pinsVersion := p.stores.toolPins().snapshot()
	if len(pins) > 0 {
		sw.beginSection(snapKindStore, snapKeyToolPins, 0, 0, 0)
		appendPinsSection(sw, pins)
		sw.endSection()
	}
	if len(hints) > 0 {
		sw.beginSection(snapKindHints, "", 0, 0, 0)
		for _, h := range hints {
			sw.entry(h.ID, h.Until.UnixNano(), h.Init)
		}
		sw.endSection()
	}
	if err = sw.finish(); err != nil {
		return 0, 0, err
	}
	if err = tmp.Sync(); err != nil {
		return 0, 0, err
	}
	fi, err := tmp.Stat()
	if err != nil {
		return 0, 0, err
	}
	if err = tmp.Close(); err != nil {
		return 0, 0, err
	}
	if err = os.Rename(tmp.Name(), p.path); err != nil {
		return 0, 0, err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename itself durable
		_ = d.Sync()
		_ = d.Close()
	}
	p.saved = saved
	p.savedPins = pinsVersion
	p.known, _ = statID(p.path)
	return records, fi.Size(), nil
}

// registrySet is the process's shared stores, as Open keeps them.
type registrySet struct{}

func (registrySet) memoryStores() map[string]*Memory {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	out := make(map[string]*Memory, len(registry.stores))
	for k, e := range registry.stores {
		if m, ok := e.store.(*Memory); ok {
			out[k] = m
		}
	}
	return out
}

func (registrySet) toolPins() *processPins { return localPins }

// memoryStore returns the shared store with key, creating it as Open would
// (the janitor closes it if no route with these settings uses it).
func (registrySet) memoryStore(key string, opts MemoryOptions) *Memory {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if e := registry.stores[key]; e != nil {
		m, _ := e.store.(*Memory)
		return m
	}
	m := NewMemory(opts)
	e := &shared{store: m, idle: int64(max(idleRedis, opts.TTL+time.Minute) / time.Second)}
	e.touch()
	registry.stores[key] = e
	if !registry.janitor {
		registry.janitor = true
		go janitor()
	}
	return m
}
