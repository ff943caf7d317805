package envelope

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// The 2026-07-28 sentinel for header values that cannot travel as plain ASCII:
// =?base64?<standard, padded Base64 of the UTF-8 bytes>?=. The markers are
// case-sensitive.
const (
	sentinelPrefix = "=?base64?"
	sentinelSuffix = "?="
)

// DecodeHeader decodes an Mcp-Method or Mcp-Name value of protocol 2026-07-28.
//
// A plain value must be printable ASCII (0x20-0x7E) without leading or trailing
// spaces, and is returned as is; "" is returned as "" (an absent header). A value
// that starts with "=?base64?" and ends with "?=" must carry canonical, padded,
// standard-alphabet Base64 of valid UTF-8. Anything else is malformed (ok false):
// clients must encode control characters, non-ASCII text, surrounding spaces
// and values that merely look like the sentinel, so a plain value with them
// did not come from a conforming client. Decoding the Base64 form allocates.
func DecodeHeader(v string) (s string, ok bool) {
	payload, encoded, ok := splitHeader(v)
	if !ok {
		return "", false
	}
	if !encoded {
		return v, true
	}
	n, ok := decodedLen(payload)
	if !ok {
		return "", false
	}
	if n == 0 {
		return "", true
	}
	buf := make([]byte, 0, n)
	for i := 0; i < len(payload); i += 4 {
		q, m, ok := quantum(payload, i)
		if !ok {
			return "", false
		}
		buf = append(buf, q[:m]...)
	}
	if !utf8.Valid(buf) {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(buf), len(buf)), true
}

// EncodeHeader writes s as a 2026-07-28 Mcp-Method or Mcp-Name value: as it
// is when DecodeHeader reads it back as it is (printable ASCII without
// surrounding spaces, not shaped like the sentinel), else in the Base64
// sentinel form. s must be valid UTF-8 and not empty.
func EncodeHeader(s string) string {
	if _, encoded, ok := splitHeader(s); ok && !encoded {
		return s
	}
	return sentinelPrefix + base64.StdEncoding.EncodeToString([]byte(s)) + sentinelSuffix
}

// MatchesHeaders reports whether a 2026-07-28 request's Mcp-Method and Mcp-Name
// headers agree with its body, the source of truth. Headers are given raw ("" =
// absent) and compared after decoding, without allocating.
//
// Mcp-Method is required on requests (an id member); on a notification it is
// checked only when present, as 2026-07-28 defines no header rules for them.
// Mcp-Name is required for tools/call, prompts/get (params.name) and
// resources/read (params.uri), and there the body's value must be a non-empty
// string; on other methods it is checked when present. A malformed header, a
// body that is not a single object, and an Ambiguous body never match.
func MatchesHeaders(r Request, mcpMethod, mcpName string) bool {
	if r.Kind != Single || r.Ambiguous {
		return false
	}
	if mcpMethod == "" {
		if r.HasID {
			return false
		}
	} else if r.Method == "" || !headerEquals(mcpMethod, r.Method) {
		return false
	}
	required := needsName(r.Method)
	if mcpName == "" {
		return !required
	}
	if required && r.Name == "" {
		return false
	}
	return headerEquals(mcpName, r.Name)
}

// NeedsName reports the methods whose 2026-07-28 requests carry Mcp-Name:
// tools/call, prompts/get (params.name) and resources/read (params.uri).
func NeedsName(method string) bool { return needsName(method) }

func needsName(method string) bool {
	switch method {
	case "tools/call", "prompts/get", "resources/read":
		return true
	}
	return false
}

// headerEquals reports whether the raw header value decodes to want.
func headerEquals(raw, want string) bool {
	payload, encoded, ok := splitHeader(raw)
	if !ok {
		return false
	}
	if !encoded {
		return raw == want
	}
	n, ok := decodedLen(payload)
	if !ok || n != len(want) {
		return false
	}
	// Compare quantum by quantum rather than decode into a buffer. want is
	// valid UTF-8 (it comes from a validated body), so equal bytes are too.
	for i, j := 0, 0; i < len(payload); i, j = i+4, j+3 {
		q, m, ok := quantum(payload, i)
		if !ok || string(q[:m]) != want[j:j+m] {
			return false
		}
	}
	return true
}

// splitHeader tells a plain value from the Base64 form and checks the plain
// form's characters; payload is the Base64 text between the markers.
func splitHeader(v string) (payload string, encoded, ok bool) {
	if strings.HasPrefix(v, sentinelPrefix) && strings.HasSuffix(v, sentinelSuffix) {
		if len(v) < len(sentinelPrefix)+len(sentinelSuffix) {
			return "", false, false // "=?base64?=": markers overlap
		}
		return v[len(sentinelPrefix) : len(v)-len(sentinelSuffix)], true, true
	}
	if v == "" {
		return "", false, true
	}
	if v[0] == ' ' || v[len(v)-1] == ' ' {
		return "", false, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "", false, false
		}
	}
	return "", false, true
}

// decodedLen returns the decoded length of padded Base64 p, checking only its
// shape; quantum checks the characters.
func decodedLen(p string) (int, bool) {
	if len(p)%4 != 0 {
		return 0, false
	}
	n := len(p) / 4 * 3
	if len(p) > 0 && p[len(p)-1] == '=' {
		n--
		if p[len(p)-2] == '=' {
			n--
		}
	}
	return n, true
}

// quantum decodes the four Base64 characters at p[i:i+4] into m bytes. Padding
// is allowed only in the last quantum, and the bits it leaves unused must be
// zero, so every value has exactly one accepted encoding.
func quantum(p string, i int) (q [3]byte, m int, ok bool) {
	a, b := b64(p[i]), b64(p[i+1])
	if a > 63 || b > 63 {
		return q, 0, false
	}
	last := i+4 == len(p)
	c, d := p[i+2], p[i+3]
	switch {
	case last && c == '=' && d == '=':
		if b&0x0f != 0 {
			return q, 0, false
		}
		q[0] = a<<2 | b>>4
		return q, 1, true
	case last && d == '=':
		cv := b64(c)
		if cv > 63 || cv&0x03 != 0 {
			return q, 0, false
		}
		q[0], q[1] = a<<2|b>>4, b<<4|cv>>2
		return q, 2, true
	}
	cv, dv := b64(c), b64(d)
	if cv > 63 || dv > 63 {
		return q, 0, false
	}
	q[0], q[1], q[2] = a<<2|b>>4, b<<4|cv>>2, cv<<6|dv
	return q, 3, true
}

// b64 maps a standard-alphabet Base64 character to its value; 0xff otherwise.
func b64(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A'
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26
	case c >= '0' && c <= '9':
		return c - '0' + 52
	case c == '+':
		return 62
	case c == '/':
		return 63
	}
	return 0xff
}
