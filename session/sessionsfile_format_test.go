package session

import (
	"bytes"
	"encoding/binary"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// goldenSnapshot builds a file from fixed inputs: two store sections (one
// per record state, a long id, a consumer with '|') and a hints section.
func goldenSnapshot(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	sw := newSnapWriter(&b, time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	created := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	seen := time.Date(2026, 12, 1, 9, 59, 0, 0, time.UTC).UnixNano()
	sw.beginSection(snapKindStore, "memory|3600000000000|1000000", int64(time.Hour), int64(10*time.Minute), 1_000_000)
	sw.entry("active-1", seen, encodeRecord(Record{Target: "10.0.0.1:8080", Consumer: "c1", Created: created, State: Active}))
	sw.entry("lost-1", seen, encodeRecord(Record{Target: "10.0.0.2:8080", Consumer: "c|2", Created: created, State: Lost}))
	sw.entry("ended-1", seen, encodeRecord(Record{Target: "[::1]:9", Created: created, State: Ended}))
	sw.entry(strings.Repeat("x", 300), seen, encodeRecord(Record{Target: "10.0.0.3:1", Created: created, State: Active}))
	sw.endSection()
	sw.beginSection(snapKindStore, "memory|60000000000|10", int64(time.Minute), int64(time.Minute), 10)
	sw.endSection()
	sw.beginSection(snapKindHints, "", 0, 0, 0)
	sw.entry("hinted-1", time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC).UnixNano(), "")
	sw.endSection()
	if err := sw.finish(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestSnapshotGolden pins the version 1 layout: a file this build writes
// must stay readable by every later build that claims version 1.
func TestSnapshotGolden(t *testing.T) {
	got := goldenSnapshot(t)
	path := filepath.Join("testdata", "snapshot_v1.golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./session -run TestSnapshotGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("layout changed:\n got %q\nwant %q", got, want)
	}
	f, err := readSnapshot(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.sections) != 3 {
		t.Fatalf("sections = %d, want 3", len(f.sections))
	}
	s := f.sections[0]
	if s.kind != snapKindStore || s.key != "memory|3600000000000|1000000" || s.ttl != int64(time.Hour) ||
		s.tombTTL != int64(10*time.Minute) || s.maxSessions != 1_000_000 || s.count != 4 {
		t.Errorf("section 0 = %+v", s)
	}
	var states []State
	var consumers []string
	eachSnapEntry(s.entries, func(e snapEntry) {
		rec, err := decodeRecord(string(e.value))
		if err != nil {
			t.Errorf("entry %q: %v", e.id, err)
		}
		states = append(states, rec.State)
		consumers = append(consumers, rec.Consumer)
	})
	if want := []State{Active, Lost, Ended, Active}; !slicesEqual(states, want) {
		t.Errorf("states = %v, want %v", states, want)
	}
	if consumers[1] != "c|2" {
		t.Errorf("consumer = %q, want c|2", consumers[1])
	}
	if f.sections[1].count != 0 || f.sections[2].kind != snapKindHints || f.sections[2].count != 1 {
		t.Errorf("sections 1, 2 = %+v, %+v", f.sections[1], f.sections[2])
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// withCRC replaces a file's trailer with the right checksum, so a test can
// reach the structural checks behind it.
func withCRC(b []byte) []byte {
	b = bytes.Clone(b)
	body := b[:len(b)-snapTrailerLen]
	binary.LittleEndian.PutUint32(b[len(body):], crc32.Checksum(body, snapCRC))
	return b
}

func TestReadSnapshotRejects(t *testing.T) {
	good := goldenSnapshot(t)
	flipped := bytes.Clone(good)
	flipped[40] ^= 0x01
	version2 := bytes.Clone(good)
	binary.LittleEndian.PutUint16(version2[8:], 2)
	stray := withCRC(append(bytes.Clone(good[:len(good)-4]), 0x00, 0, 0, 0, 0))
	badKind := bytes.Clone(good)
	badKind[snapHeaderLen] = 'Z'
	// a section claiming a key longer than the file
	hugeKey := withCRC(append(append(bytes.Clone(good[:snapHeaderLen]), 'S', 0xff, 0xff, 0xff, 0x7f), make([]byte, 8)...))
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"header only", good[:snapHeaderLen], "truncated"},
		{"foreign file", []byte("{\"sessions\": []}\n..........................."), "bad magic"},
		{"other version", version2, "unsupported version"},
		{"bit flip", flipped, "checksum"},
		{"truncated", good[:len(good)-10], "checksum"},
		{"truncated, checksum fixed", withCRC(append(bytes.Clone(good[:len(good)-20]), 0, 0, 0, 0)), "truncated"},
		{"stray bytes", stray, "stray"},
		{"unknown section", withCRC(badKind), "unknown section kind"},
		{"huge key length", hugeKey, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readSnapshot(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// FuzzReadSnapshot: the reader never panics, and what it accepts is written
// back to a file that reads the same. Each input is also tried with its
// checksum fixed, so the fuzzer reaches the structure behind it.
func FuzzReadSnapshot(f *testing.F) {
	good := goldenSnapshot(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(snapMagic))
	var b bytes.Buffer
	sw := newSnapWriter(&b, 1)
	_ = sw.finish()
	f.Add(b.Bytes())
	b.Reset()
	sw = newSnapWriter(&b, 2)
	sw.beginSection(snapKindStore, snapKeyToolPins, 0, 0, 0)
	appendPinsSection(sw, map[string]*PinSet{"route:1": {Baseline: map[string]string{"echo": "sha256:00"},
		Held: map[string]Hold{"echo": {Digest: "sha256:11", Seen: time.Unix(1, 0)}}, Sealed: true}})
	sw.endSection()
	_ = sw.finish()
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRewrite(t, data)
		if len(data) >= snapHeaderLen+snapTrailerLen {
			checkRewrite(t, withCRC(data))
		}
	})
}

func checkRewrite(t *testing.T, data []byte) {
	sf, err := readSnapshot(data)
	if err != nil {
		return
	}
	var out bytes.Buffer
	w := newSnapWriter(&out, sf.written)
	for _, s := range sf.sections {
		if s.key == snapKeyToolPins {
			readPinsSection(s.entries) // must not panic on any entry
		}
		w.beginSection(s.kind, s.key, s.ttl, s.tombTTL, s.maxSessions)
		n := 0
		eachSnapEntry(s.entries, func(e snapEntry) {
			// entries may carry bytes after the value's start: rewrite
			// them as read, which must give back the same bytes
			w.entry(e.id, e.time, string(e.value))
			n++
		})
		if n != s.count {
			t.Fatalf("section %q: %d entries decoded, %d counted", s.key, n, s.count)
		}
		w.endSection()
	}
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	again, err := readSnapshot(out.Bytes())
	if err != nil {
		t.Fatalf("rewritten file unreadable: %v", err)
	}
	if len(again.sections) != len(sf.sections) {
		t.Fatalf("sections %d, then %d", len(sf.sections), len(again.sections))
	}
	for i := range sf.sections {
		if !bytes.Equal(again.sections[i].entries, sf.sections[i].entries) {
			// Only non-minimal varints can differ; their decoded entries must not.
			var a, b []snapEntry
			eachSnapEntry(sf.sections[i].entries, func(e snapEntry) { a = append(a, e) })
			eachSnapEntry(again.sections[i].entries, func(e snapEntry) { b = append(b, e) })
			for j := range a {
				if a[j].id != b[j].id || a[j].time != b[j].time || !bytes.Equal(a[j].value, b[j].value) {
					t.Fatalf("entry %d differs after a rewrite", j)
				}
			}
		}
	}
}
