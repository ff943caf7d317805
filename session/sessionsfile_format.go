package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"time"
)

// The snapshot file keeps memory stores' records across plugin process
// restarts. Layout (integers little-endian; uvarint and varint as in
// encoding/binary):
//
//	header   "MCPRSESS" (8 bytes), version uint16, reserved uint16 (0),
//	         written int64 (unix nanoseconds)
//	sections each: kind byte ('S' a memory store, 'H' learn hints),
//	         uvarint key length, key (the store's settings), ttl int64,
//	         tombstone ttl int64 (nanoseconds), max sessions int64, then
//	         entries, each a uvarint length n > 0 and n bytes, and a
//	         uvarint 0 ending the section
//	end      kind byte 0
//	trailer  CRC-32C (Castagnoli) of every byte before it, uint32
//
// An entry is a uvarint id length, the id, a varint time (unix nanoseconds:
// a record's last use or tombstoning, a hint's expiry) and, for the rest of
// the entry, a value (a record in encodeRecord's form; empty for hints).
// Entries are length-prefixed so that a later version may append fields
// that this one skips. A file of another version is not read.
//
// A section of kind 'S' whose key is not a memory store's ("memory|...")
// is skipped by readers that do not know it. The key "tools" holds the
// process's tool pins: one entry per fact, its id the scope, a 0 byte and
// "p:<tool name>" (value: the first digest), "h:<tool name>" (value: a held
// digest, time: when it was last seen) or "sealed".
const snapKeyToolPins = "tools"
const (
	snapMagic      = "MCPRSESS"
	snapVersion    = 1
	snapHeaderLen  = 8 + 2 + 2 + 8
	snapTrailerLen = 4

	snapKindStore = 'S'
	snapKindHints = 'H'

	maxSnapKey   = 4 << 10
	maxSnapEntry = 1 << 20
)

var snapCRC = crc32.MakeTable(crc32.Castagnoli)

// errSnapVersion marks a well-formed file written by another version.
var errSnapVersion = errors.New("snapshot file of an unsupported version")

// snapSection is one section of a read file. Its entries stay encoded, as
// sub-slices of the file's bytes, until a store claims them.
type snapSection struct {
	kind         byte
	key          string
	ttl, tombTTL int64
	maxSessions  int64
	entries      []byte // the entries as written, without the ending 0
	count        int
	newest       int64 // latest entry time, to drop sections all expired
}

// snapEntry is one decoded entry.
type snapEntry struct {
	id    string
	time  int64
	value []byte
}

// snapFile is a whole read file.
type snapFile struct {
	written  int64
	sections []snapSection
}

// readSnapshot checks and splits a snapshot file. It never panics and
// allocates nothing proportional to counts the file claims.
func readSnapshot(data []byte) (snapFile, error) {
	var f snapFile
	if len(data) < snapHeaderLen+1+snapTrailerLen {
		return f, errors.New("snapshot file truncated: shorter than its header")
	}
	if string(data[:8]) != snapMagic {
		return f, errors.New("not a snapshot file: bad magic")
	}
	if v := binary.LittleEndian.Uint16(data[8:]); v != snapVersion {
		return f, fmt.Errorf("%w: version %d, this build reads %d", errSnapVersion, v, snapVersion)
	}
	body := data[:len(data)-snapTrailerLen]
	if got, want := crc32.Checksum(body, snapCRC), binary.LittleEndian.Uint32(data[len(body):]); got != want {
		return f, fmt.Errorf("snapshot file corrupt or truncated: checksum %08x, want %08x", got, want)
	}
	f.written = int64(binary.LittleEndian.Uint64(data[12:]))
	r := snapReader{b: body, off: snapHeaderLen}
	for {
		kind, err := r.byte()
		if err != nil {
			return f, err
		}
		if kind == 0 {
			break
		}
		if kind != snapKindStore && kind != snapKindHints {
			return f, fmt.Errorf("snapshot file: unknown section kind %#x at offset %d", kind, r.off-1)
		}
		s := snapSection{kind: kind}
		key, err := r.bytes(maxSnapKey)
		if err != nil {
			return f, err
		}
		s.key = string(key)
		if s.ttl, err = r.int64(); err != nil {
			return f, err
		}
		if s.tombTTL, err = r.int64(); err != nil {
			return f, err
		}
		if s.maxSessions, err = r.int64(); err != nil {
			return f, err
		}
		start := r.off
		for {
			entry, err := r.bytes(maxSnapEntry)
			if err != nil {
				return f, err
			}
			if len(entry) == 0 {
				break
			}
			e, err := decodeSnapEntry(entry)
			if err != nil {
				return f, fmt.Errorf("snapshot file: entry at offset %d: %w", r.off-len(entry), err)
			}
			s.count++
			s.newest = max(s.newest, e.time)
		}
		s.entries = body[start : r.off-1]
		f.sections = append(f.sections, s)
	}
	if r.off != len(body) {
		return f, fmt.Errorf("snapshot file: %d stray bytes after the last section", len(body)-r.off)
	}
	return f, nil
}

func decodeSnapEntry(b []byte) (snapEntry, error) {
	r := snapReader{b: b}
	id, err := r.bytes(len(b))
	if err != nil || len(id) == 0 {
		return snapEntry{}, errors.New("bad id")
	}
	t, n := binary.Varint(b[r.off:])
	if n <= 0 {
		return snapEntry{}, errors.New("bad time")
	}
	return snapEntry{id: string(id), time: t, value: b[r.off+n:]}, nil
}

// eachSnapEntry decodes a section's entries, already checked by
// readSnapshot, one by one.
func eachSnapEntry(entries []byte, fn func(snapEntry)) {
	r := snapReader{b: entries}
	for r.off < len(entries) {
		b, err := r.bytes(maxSnapEntry)
		if err != nil {
			return
		}
		if e, err := decodeSnapEntry(b); err == nil {
			fn(e)
		}
	}
}

type snapReader struct {
	b   []byte
	off int
}

var errSnapTruncated = errors.New("snapshot file truncated")

func (r *snapReader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errSnapTruncated
	}
	r.off++
	return r.b[r.off-1], nil
}

func (r *snapReader) int64() (int64, error) {
	if len(r.b)-r.off < 8 {
		return 0, errSnapTruncated
	}
	r.off += 8
	return int64(binary.LittleEndian.Uint64(r.b[r.off-8:])), nil
}

// bytes reads a uvarint length and that many bytes (at most limit).
func (r *snapReader) bytes(limit int) ([]byte, error) {
	n, k := binary.Uvarint(r.b[r.off:])
	if k <= 0 {
		return nil, errSnapTruncated
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("snapshot file: length %d at offset %d exceeds %d", n, r.off, limit)
	}
	r.off += k
	if uint64(len(r.b)-r.off) < n {
		return nil, errSnapTruncated
	}
	r.off += int(n)
	return r.b[r.off-int(n) : r.off], nil
}

// snapWriter streams a snapshot file, computing its checksum as it goes.
type snapWriter struct {
	w   io.Writer
	crc uint32
	buf []byte // pending bytes, flushed in chunks
	err error
}

const snapFlushAt = 256 << 10

func newSnapWriter(w io.Writer, written int64) *snapWriter {
	sw := &snapWriter{w: w, buf: make([]byte, 0, snapFlushAt+4096)}
	sw.buf = append(sw.buf, snapMagic...)
	sw.buf = binary.LittleEndian.AppendUint16(sw.buf, snapVersion)
	sw.buf = binary.LittleEndian.AppendUint16(sw.buf, 0)
	sw.buf = binary.LittleEndian.AppendUint64(sw.buf, uint64(written))
	return sw
}

func (sw *snapWriter) flush() {
	if sw.err != nil || len(sw.buf) == 0 {
		sw.buf = sw.buf[:0]
		return
	}
	sw.crc = crc32.Update(sw.crc, snapCRC, sw.buf)
	_, sw.err = sw.w.Write(sw.buf)
	sw.buf = sw.buf[:0]
}

func (sw *snapWriter) maybeFlush() {
	if len(sw.buf) >= snapFlushAt {
		sw.flush()
	}
}

// beginSection starts a section; end it with endSection.
func (sw *snapWriter) beginSection(kind byte, key string, ttl, tombTTL, maxSessions int64) {
	sw.buf = append(sw.buf, kind)
	sw.buf = binary.AppendUvarint(sw.buf, uint64(len(key)))
	sw.buf = append(sw.buf, key...)
	sw.buf = binary.LittleEndian.AppendUint64(sw.buf, uint64(ttl))
	sw.buf = binary.LittleEndian.AppendUint64(sw.buf, uint64(tombTTL))
	sw.buf = binary.LittleEndian.AppendUint64(sw.buf, uint64(maxSessions))
}

// entry appends one entry; value is written as it is.
func (sw *snapWriter) entry(id string, t int64, value string) {
	sw.buf = appendSnapEntry(sw.buf, id, t, value)
	sw.maybeFlush()
}

func appendSnapEntry(b []byte, id string, t int64, value string) []byte {
	var tb [binary.MaxVarintLen64]byte
	tn := binary.PutVarint(tb[:], t)
	n := uvarintLen(uint64(len(id))) + len(id) + tn + len(value)
	b = binary.AppendUvarint(b, uint64(n))
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = append(b, tb[:tn]...)
	return append(b, value...)
}

func (sw *snapWriter) endSection() { sw.buf = append(sw.buf, 0) }

// finish writes the end mark and the checksum.
func (sw *snapWriter) finish() error {
	sw.buf = append(sw.buf, 0)
	sw.flush()
	if sw.err != nil {
		return sw.err
	}
	var t [4]byte
	binary.LittleEndian.PutUint32(t[:], sw.crc)
	_, sw.err = sw.w.Write(t[:])
	return sw.err
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendPinsSection writes tool pins as the entries of a "tools" section.
func appendPinsSection(sw *snapWriter, scopes map[string]*PinSet) {
	for scope, ps := range scopes {
		for name, d := range ps.Baseline {
			sw.entry(scope+"\x00p:"+name, 0, d)
		}
		for name, h := range ps.Held {
			sw.entry(scope+"\x00h:"+name, h.Seen.UnixNano(), h.Digest)
		}
		if ps.Sealed {
			sw.entry(scope+"\x00sealed", 0, "")
		}
	}
}

// readPinsSection reads a "tools" section's entries (already checked by
// readSnapshot); entries it does not know are skipped.
func readPinsSection(entries []byte) map[string]*PinSet {
	out := map[string]*PinSet{}
	eachSnapEntry(entries, func(e snapEntry) {
		scope, fact, ok := strings.Cut(e.id, "\x00")
		if !ok {
			return
		}
		ps := out[scope]
		if ps == nil {
			ps = &PinSet{Baseline: map[string]string{}, Held: map[string]Hold{}}
			out[scope] = ps
		}
		switch {
		case strings.HasPrefix(fact, "p:"):
			ps.Baseline[fact[2:]] = string(e.value)
		case strings.HasPrefix(fact, "h:"):
			ps.Held[fact[2:]] = Hold{Digest: string(e.value), Seen: time.Unix(0, e.time)}
		case fact == "sealed":
			ps.Sealed = true
		}
	})
	return out
}
