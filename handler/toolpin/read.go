package toolpin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// DigestPrefix starts every digest: the algorithm, as in the deck.
const DigestPrefix = "sha256:"

// Tool is one entry of a tools/list answer as pinning reads it.
type Tool struct {
	// Name is the entry's "name", as clients call the tool.
	Name string
	// Digest is DigestPrefix and the hex SHA-256 of the canonical JSON of
	// the definition; "" when the entry cannot be pinned (Err says why).
	Digest string
	Err    error
}

// Page is one tools/list result found in an answer.
type Page struct {
	Tools []Tool
	// Last: the result has no nextCursor, so it ends a list (a list of one
	// page, or the last page of a longer one).
	Last bool
}

// Why an entry cannot be pinned.
var (
	ErrNotObject = errors.New("tool entry is not an object")
	ErrNoName    = errors.New("tool entry has no name string")
	ErrAmbiguous = errors.New("tool entry spells a member of its definition twice, or in another letter case")
)

// definition are the members of a tool entry that its digest covers: what a
// client shows the model and validates calls with. Other members (icons,
// _meta, execution) may change without changing the digest.
var definition = [...]string{"name", "title", "description", "inputSchema", "outputSchema", "annotations"}

// ReadTool reads one entry of a tools/list result: its name and the digest
// of its definition.
//
// The digest is taken over a JSON object of the entry's definition members
// (definition), canonicalized (RFC 8785), so that whitespace, member order
// and number or string spelling do not change it. Members spelled in
// another letter case ("Description") are digested under their own
// spelling: Go's encoding/json reads them case-insensitively, so a client
// may show them. An entry whose definition cannot be canonicalized (a
// duplicate member, a lone surrogate, a number beyond float64), whose name
// is not one plain string member, or that is not an object, has no digest.
func ReadTool(entry []byte) Tool {
	v := gjson.ParseBytes(entry)
	if !v.IsObject() {
		return Tool{Err: ErrNotObject}
	}
	var t Tool
	obj := make([]byte, 0, len(entry)+2)
	obj = append(obj, '{')
	names := 0
	v.ForEach(func(k, val gjson.Result) bool {
		for _, m := range definition {
			if !strings.EqualFold(k.Str, m) {
				continue
			}
			if m == "name" {
				names++
				if k.Str == "name" && val.Type == gjson.String {
					t.Name = val.Str
				}
			}
			if len(obj) > 1 {
				obj = append(obj, ',')
			}
			obj = appendString(obj, k.Str)
			obj = append(obj, ':')
			obj = append(obj, val.Raw...)
			break
		}
		return true
	})
	obj = append(obj, '}')
	switch {
	case names > 1:
		return Tool{Name: t.Name, Err: ErrAmbiguous}
	case t.Name == "":
		return Tool{Err: ErrNoName}
	}
	canon, err := AppendCanonical(make([]byte, 0, len(obj)), obj)
	if err != nil {
		if errors.Is(err, ErrDuplicate) {
			err = ErrAmbiguous
		}
		return Tool{Name: t.Name, Err: err}
	}
	t.Digest = Digest(canon)
	return t
}

// Digest names canonical JSON bytes: DigestPrefix and their hex SHA-256.
func Digest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// ReadAnswer returns the tools/list results of an answer body: JSON (one
// message or a batch) or an SSE stream Kong buffered (the data of each
// event). Every member named like result, and in it like tools, counts, in
// any letter case: clients differ in which one they read. ok is false when
// the body is readable neither as JSON nor as SSE.
func ReadAnswer(body []byte) (pages []Page, ok bool) {
	t := bytes.TrimLeft(body, " \t\r\n")
	if len(t) == 0 {
		return nil, true
	}
	if t[0] == '{' || t[0] == '[' {
		return readJSON(pages, t)
	}
	ok = true
	eachEvent(body, func(data []byte) {
		if len(data) > 0 && (data[0] == '{' || data[0] == '[') {
			pages, _ = readJSON(pages, data) // an event that is not JSON is not a list
		}
	})
	return pages, ok
}

func readJSON(pages []Page, b []byte) ([]Page, bool) {
	s := unsafe.String(unsafe.SliceData(b), len(b))
	if !gjson.Valid(s) {
		return pages, false
	}
	v := gjson.Parse(s)
	if v.IsArray() {
		v.ForEach(func(_, m gjson.Result) bool {
			pages = readMessage(pages, m)
			return true
		})
		return pages, true
	}
	return readMessage(pages, v), true
}

func readMessage(pages []Page, m gjson.Result) []Page {
	if !m.IsObject() {
		return pages
	}
	m.ForEach(func(k, result gjson.Result) bool {
		if !strings.EqualFold(k.Str, "result") || !result.IsObject() {
			return true
		}
		last := true
		var lists []gjson.Result
		result.ForEach(func(k, v gjson.Result) bool {
			switch {
			case strings.EqualFold(k.Str, "tools") && v.IsArray():
				lists = append(lists, v)
			case strings.EqualFold(k.Str, "nextCursor") && v.Type == gjson.String && v.Str != "":
				last = false
			}
			return true
		})
		for _, list := range lists {
			p := Page{Last: last}
			list.ForEach(func(_, e gjson.Result) bool {
				p.Tools = append(p.Tools, ReadTool([]byte(e.Raw)))
				return true
			})
			pages = append(pages, p)
		}
		return true
	})
	return pages
}

// eachEvent calls fn with the data of each event of an SSE stream (its
// data lines joined with "\n", the space after "data:" dropped).
func eachEvent(b []byte, fn func(data []byte)) {
	var data []byte
	seen := false
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			if seen {
				fn(data)
			}
			data, seen = data[:0], false
			continue
		}
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if seen {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(d, []byte(" "))...)
			seen = true
		}
	}
	if seen {
		fn(data)
	}
}

// DeckEntry writes one element of config.tools.pin.approved in YAML flow
// style, {name: '...', digest: '...'}, so that it fits one log line and
// pastes into a deck file as a list item.
func DeckEntry(name, digest string) string {
	return "{name: " + yamlScalar(name) + ", digest: " + yamlScalar(digest) + "}"
}

// yamlScalar quotes s for a YAML flow collection: single quotes (nothing
// to escape in a log line) unless s holds a control character, which only
// YAML's double quotes can carry.
func yamlScalar(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return strconv.Quote(s)
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
