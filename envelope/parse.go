package envelope

import (
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Kind classifies a request body.
type Kind uint8

const (
	// Empty is a body with no bytes, or only JSON whitespace (space, tab, CR, LF).
	Empty Kind = iota
	// Invalid is a body that is not valid JSON, is valid JSON but neither an
	// object nor an array, is not UTF-8, starts with a byte order mark, or is
	// larger than the size limit.
	Invalid
	// Single is a JSON object.
	Single
	// Batch is a JSON array (2025-03-26 batches), possibly empty.
	Batch
)

// String returns the kind's name, for logs and test failures.
func (k Kind) String() string {
	switch k {
	case Empty:
		return "empty"
	case Invalid:
		return "invalid"
	case Single:
		return "single"
	case Batch:
		return "batch"
	}
	return "unknown"
}

// Request is what the plugin reads from one request body (or one batch element).
//
// Strings reference Body (no copy) unless the JSON spelled them with escapes:
// gjson unescapes those into new strings, which allocates. Either way they are
// valid only while Body is.
//
// Duplicate members: the first occurrence is read (gjson's rule). The backends
// behind the gateway (Go encoding/json, JSON.parse, Python json) take the last
// one, and Go's encoding/json also matches member names case-insensitively, so
// such bodies mean different things to the gateway and to the backend:
// Ambiguous reports them.
type Request struct {
	Kind Kind
	// Body is the body as given; for a batch element, the element's bytes.
	Body []byte
	// ID is the id exactly as sent (quotes and escapes included for strings)
	// when it is a valid JSON-RPC id, a string or a number of any size; ""
	// for null, objects, arrays and booleans.
	ID string
	// HasID reports an "id" member at all; false means a notification.
	// id:null gives HasID true and ID "".
	HasID bool
	// Method is "method" when it is a string, else "".
	Method string
	// Name is what 2026-07-28 puts in Mcp-Name: params.uri for resources/read,
	// params.name for tools/call and prompts/get, and for any other method
	// params.name or, when that is absent, params.uri. "" when not a string.
	Name string
	// JSONRPC reports "jsonrpc" == "2.0".
	JSONRPC bool
	// Ambiguous reports that a member read here (jsonrpc, id, method, params,
	// params.name, params.uri) appears twice, or under a name that differs only
	// in letter case (what Go's encoding/json would still read). MatchesHeaders
	// refuses such bodies: the header cannot be checked against a body that
	// means two things.
	Ambiguous bool

	response bool // has a "result" or "error" member
}

// Parse classifies body and reads its JSON-RPC members. maxBytes <= 0 means no
// limit; a longer body is Invalid without being scanned.
//
// Leading and trailing JSON whitespace is allowed. A UTF-8 byte order mark makes
// the body Invalid: RFC 8259 forbids sending one and Go's encoding/json and
// JSON.parse reject it, so the gateway agrees with the backends.
func Parse(body []byte, maxBytes int) Request {
	r := Request{Body: body}
	if maxBytes > 0 && len(body) > maxBytes {
		r.Kind = Invalid
		return r
	}
	i := 0
	for i < len(body) && isSpace(body[i]) {
		i++
	}
	if i == len(body) {
		return r // Empty
	}
	if !utf8.Valid(body) || !gjson.ValidBytes(body) {
		r.Kind = Invalid
		return r
	}
	switch body[i] {
	case '{':
		r.Kind = Single
		r.readObject(view(body[i:]))
	case '[':
		r.Kind = Batch
	default:
		r.Kind = Invalid
	}
	return r
}

// Elements calls fn with each element of a batch, in order, until fn returns
// false. Objects come as Kind Single, anything else as Kind Invalid; each
// element's Body is its own bytes within the batch. It does nothing for other
// kinds.
func (r Request) Elements(fn func(e Request) bool) {
	if r.Kind != Batch {
		return
	}
	s := view(r.Body)
	gjson.Parse(s).ForEach(func(_, v gjson.Result) bool {
		e := Request{Kind: Invalid}
		// gjson sets Index to the value's offset in s; check it rather than trust it.
		if v.Index >= 0 && v.Index+len(v.Raw) <= len(r.Body) {
			e.Body = r.Body[v.Index : v.Index+len(v.Raw)]
		}
		if v.IsObject() {
			e.Kind = Single
			e.readObject(v.Raw)
		}
		return fn(e)
	})
}

// IsNotification reports a Single message with a method and no id member.
func (r Request) IsNotification() bool {
	return r.Kind == Single && r.Method != "" && !r.HasID
}

// IsResponse reports a Single message that answers a server request (legacy
// era: a client's answer to elicitation or sampling): an id, no method, and a
// "result" or "error" member. Nothing answers a response; echoing its id would
// look, to the client, like the answer to one of its own requests.
func (r Request) IsResponse() bool {
	return r.Kind == Single && r.HasID && r.Method == "" && r.response
}

// member indexes of the top-level names read, and of params' names.
const (
	mJSONRPC = iota
	mID
	mMethod
	mParams
	mResult
	mError
)

var (
	topNames    = [...]string{mJSONRPC: "jsonrpc", mID: "id", mMethod: "method", mParams: "params", mResult: "result", mError: "error"}
	paramsNames = [...]string{0: "name", 1: "uri"}
)

// readObject reads the members of the JSON object obj (already validated) in
// one pass, noting duplicates.
func (r *Request) readObject(obj string) {
	var seen [len(topNames)]bool
	var params gjson.Result
	gjson.Parse(obj).ForEach(func(k, v gjson.Result) bool {
		m, exact := lookup(k.Str, topNames[:])
		if m < 0 {
			return true
		}
		if m == mResult || m == mError {
			r.response = r.response || exact
			return true
		}
		if seen[m] || !exact {
			r.Ambiguous = true
			return true // the first exact occurrence wins
		}
		seen[m] = true
		switch m {
		case mJSONRPC:
			r.JSONRPC = v.Type == gjson.String && v.Str == "2.0"
		case mID:
			r.HasID = true
			if v.Type == gjson.String || v.Type == gjson.Number {
				r.ID = v.Raw
			}
		case mMethod:
			if v.Type == gjson.String {
				r.Method = v.Str
			}
		case mParams:
			params = v
		}
		return true
	})
	if !params.IsObject() {
		return
	}
	var vals [len(paramsNames)]string
	var found [len(paramsNames)]bool
	params.ForEach(func(k, v gjson.Result) bool {
		m, exact := lookup(k.Str, paramsNames[:])
		if m < 0 {
			return true
		}
		if found[m] || !exact {
			r.Ambiguous = true
			return true
		}
		found[m] = true
		if v.Type == gjson.String {
			vals[m] = v.Str
		}
		return true
	})
	switch r.Method {
	case "resources/read":
		r.Name = vals[1]
	case "tools/call", "prompts/get":
		r.Name = vals[0]
	default:
		if found[0] {
			r.Name = vals[0]
		} else {
			r.Name = vals[1]
		}
	}
}

// lookup finds key among names: exact match, or a match under Unicode case
// folding, which is how Go's encoding/json matches member names.
func lookup(key string, names []string) (int, bool) {
	for i, n := range names {
		if key == n {
			return i, true
		}
	}
	for i, n := range names {
		if strings.EqualFold(key, n) {
			return i, false
		}
	}
	return -1, false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// view returns b as a string without copying. The string must not outlive b,
// and b must not change while the string is in use.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
