// Package toolpin is the logic of pinned tool definitions
// (config.tools.pin): the canonical JSON and digest of a tool's
// definition, the tools read from tools/list answers, and the judgement of
// each definition against the approved digests and the recorded baseline.
// It knows nothing of Kong: the handler reads the answers through the PDK,
// keeps the baseline in the session store, and decides what to answer, log
// and count.
package toolpin

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Canonical JSON (RFC 8785, the JSON Canonicalization Scheme): objects with
// their members sorted by the UTF-16 code units of their names, no
// whitespace, numbers as ECMAScript writes them (shortest round-trip form),
// strings with only the escapes JSON requires. Two documents that mean the
// same to a JSON reader canonicalize to the same bytes, so a digest of the
// canonical form changes only when the meaning does.
//
// I-JSON rules are enforced: duplicate member names, lone surrogates and
// invalid UTF-8 make a document uncanonicalizable, as do numbers beyond
// float64 (RFC 8785 section 3.2.2.3) and nesting deeper than maxDepth.

// maxDepth bounds nesting: no document can exhaust the stack.
const maxDepth = 128

// Errors of AppendCanonical.
var (
	ErrSyntax    = errors.New("canonical JSON: invalid JSON")
	ErrDuplicate = errors.New("canonical JSON: duplicate member name")
	ErrString    = errors.New("canonical JSON: string is not valid Unicode")
	ErrNumber    = errors.New("canonical JSON: number out of range")
	ErrDepth     = errors.New("canonical JSON: nested too deeply")
)

// AppendCanonical appends the canonical form of the JSON text src to dst.
// Whitespace around src is allowed; anything after its one value is not.
func AppendCanonical(dst, src []byte) ([]byte, error) {
	c := canon{src: src}
	c.space()
	out, err := c.value(dst, 0)
	if err != nil {
		return dst, err
	}
	c.space()
	if c.i != len(src) {
		return dst, ErrSyntax
	}
	return out, nil
}

type canon struct {
	src []byte
	i   int
}

func (c *canon) space() {
	for c.i < len(c.src) {
		switch c.src[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *canon) value(dst []byte, depth int) ([]byte, error) {
	if c.i >= len(c.src) {
		return dst, ErrSyntax
	}
	switch b := c.src[c.i]; {
	case b == '{':
		return c.object(dst, depth+1)
	case b == '[':
		return c.array(dst, depth+1)
	case b == '"':
		s, err := c.str()
		if err != nil {
			return dst, err
		}
		return appendString(dst, s), nil
	case b == '-' || (b >= '0' && b <= '9'):
		return c.number(dst)
	case c.literal("true"):
		return append(dst, "true"...), nil
	case c.literal("false"):
		return append(dst, "false"...), nil
	case c.literal("null"):
		return append(dst, "null"...), nil
	}
	return dst, ErrSyntax
}

func (c *canon) literal(word string) bool {
	if len(c.src)-c.i >= len(word) && string(c.src[c.i:c.i+len(word)]) == word {
		c.i += len(word)
		return true
	}
	return false
}

// member is one object member: its decoded name and where its canonical
// value lies in the object's value buffer.
type member struct {
	name       string
	start, end int
}

// compareUTF16 orders strings by their UTF-16 code units without
// converting them: runes below U+10000 are one unit; a rune above is a
// surrogate pair whose first unit (U+D800..U+DBFF) sorts below U+E000..
// U+FFFF, where code point order would put it above.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			ua, ub := ra, rb
			if ra >= 0x10000 && rb >= 0x10000 {
				ua, ub = ra, rb // both pairs: their order is the code points'
			} else if ra >= 0x10000 {
				ua = 0xd800 + (ra-0x10000)>>10
			} else if rb >= 0x10000 {
				ub = 0xd800 + (rb-0x10000)>>10
			}
			if ua < ub {
				return -1
			}
			return 1
		}
		a, b = a[na:], b[nb:]
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

func (c *canon) object(dst []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, ErrDepth
	}
	c.i++ // {
	c.space()
	var members []member
	var values []byte // the members' canonical values, back to back
	if c.i < len(c.src) && c.src[c.i] == '}' {
		c.i++
		return append(dst, "{}"...), nil
	}
	for {
		if c.i >= len(c.src) || c.src[c.i] != '"' {
			return dst, ErrSyntax
		}
		name, err := c.str()
		if err != nil {
			return dst, err
		}
		c.space()
		if c.i >= len(c.src) || c.src[c.i] != ':' {
			return dst, ErrSyntax
		}
		c.i++
		c.space()
		start := len(values)
		if values, err = c.value(values, depth); err != nil {
			return dst, err
		}
		members = append(members, member{name: name, start: start, end: len(values)})
		c.space()
		if c.i >= len(c.src) {
			return dst, ErrSyntax
		}
		if c.src[c.i] == ',' {
			c.i++
			c.space()
			continue
		}
		if c.src[c.i] != '}' {
			return dst, ErrSyntax
		}
		c.i++
		break
	}
	slices.SortFunc(members, func(a, b member) int { return compareUTF16(a.name, b.name) })
	dst = append(dst, '{')
	for j, m := range members {
		if j > 0 {
			if m.name == members[j-1].name {
				return dst, ErrDuplicate
			}
			dst = append(dst, ',')
		}
		dst = appendString(dst, m.name)
		dst = append(dst, ':')
		dst = append(dst, values[m.start:m.end]...)
	}
	return append(dst, '}'), nil
}

func (c *canon) array(dst []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, ErrDepth
	}
	c.i++ // [
	c.space()
	dst = append(dst, '[')
	if c.i < len(c.src) && c.src[c.i] == ']' {
		c.i++
		return append(dst, ']'), nil
	}
	for n := 0; ; n++ {
		if n > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = c.value(dst, depth); err != nil {
			return dst, err
		}
		c.space()
		if c.i >= len(c.src) {
			return dst, ErrSyntax
		}
		if c.src[c.i] == ',' {
			c.i++
			c.space()
			continue
		}
		if c.src[c.i] != ']' {
			return dst, ErrSyntax
		}
		c.i++
		return append(dst, ']'), nil
	}
}

// str decodes the JSON string at c.i (its opening quote).
func (c *canon) str() (string, error) {
	c.i++ // "
	start := c.i
	// Fast path: no escapes.
	for c.i < len(c.src) {
		b := c.src[c.i]
		if b == '"' {
			s := c.src[start:c.i]
			c.i++
			if !utf8.Valid(s) {
				return "", ErrString
			}
			return string(s), nil
		}
		if b == '\\' {
			break
		}
		if b < 0x20 {
			return "", ErrSyntax
		}
		c.i++
	}
	out := append([]byte(nil), c.src[start:c.i]...)
	for c.i < len(c.src) {
		b := c.src[c.i]
		switch {
		case b == '"':
			c.i++
			if !utf8.Valid(out) {
				return "", ErrString
			}
			return string(out), nil
		case b < 0x20:
			return "", ErrSyntax
		case b != '\\':
			out = append(out, b)
			c.i++
			continue
		}
		if c.i+1 >= len(c.src) {
			return "", ErrSyntax
		}
		c.i += 2
		switch e := c.src[c.i-1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := c.hex4()
			if !ok {
				return "", ErrSyntax
			}
			if utf16.IsSurrogate(r) {
				// A high surrogate must be followed by an escaped low one.
				if r >= 0xdc00 || len(c.src)-c.i < 6 || c.src[c.i] != '\\' || c.src[c.i+1] != 'u' {
					return "", ErrString
				}
				c.i += 2
				r2, ok := c.hex4()
				if !ok {
					return "", ErrSyntax
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return "", ErrString
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", ErrSyntax
		}
	}
	return "", ErrSyntax
}

func (c *canon) hex4() (rune, bool) {
	if len(c.src)-c.i < 4 {
		return 0, false
	}
	var r rune
	for _, h := range c.src[c.i : c.i+4] {
		r <<= 4
		switch {
		case h >= '0' && h <= '9':
			r |= rune(h - '0')
		case h >= 'a' && h <= 'f':
			r |= rune(h - 'a' + 10)
		case h >= 'A' && h <= 'F':
			r |= rune(h - 'A' + 10)
		default:
			return 0, false
		}
	}
	c.i += 4
	return r, true
}

// number checks the JSON number grammar and writes the number as
// ECMAScript's Number.prototype.toString does.
func (c *canon) number(dst []byte) ([]byte, error) {
	start := c.i
	if c.src[c.i] == '-' {
		c.i++
	}
	switch {
	case c.i < len(c.src) && c.src[c.i] == '0':
		c.i++
	case c.i < len(c.src) && c.src[c.i] >= '1' && c.src[c.i] <= '9':
		c.digits()
	default:
		return dst, ErrSyntax
	}
	if c.i < len(c.src) && c.src[c.i] == '.' {
		c.i++
		if c.digits() == 0 {
			return dst, ErrSyntax
		}
	}
	if c.i < len(c.src) && (c.src[c.i] == 'e' || c.src[c.i] == 'E') {
		c.i++
		if c.i < len(c.src) && (c.src[c.i] == '+' || c.src[c.i] == '-') {
			c.i++
		}
		if c.digits() == 0 {
			return dst, ErrSyntax
		}
	}
	f, err := strconv.ParseFloat(string(c.src[start:c.i]), 64)
	if err != nil || math.IsInf(f, 0) {
		return dst, ErrNumber
	}
	return AppendNumber(dst, f), nil
}

func (c *canon) digits() int {
	n := 0
	for c.i < len(c.src) && c.src[c.i] >= '0' && c.src[c.i] <= '9' {
		c.i++
		n++
	}
	return n
}

// AppendNumber writes f as ECMAScript's Number.prototype.toString (ECMA-262
// Number::toString, radix 10): the shortest digits that read back as f,
// in plain notation for magnitudes from 1e-6 up to 1e21, else with an
// exponent. f must be finite; -0 is written 0.
func AppendNumber(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// d.ddddde±x: the digits and the exponent of the first one.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	mant, exp, _ := cutByte(e, 'e')
	x, _ := strconv.Atoi(string(exp))
	digits := make([]byte, 0, len(mant))
	for _, b := range mant {
		if b != '.' {
			digits = append(digits, b)
		}
	}
	k, n := len(digits), x+1 // f = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, "0."...)
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}

func cutByte(b []byte, sep byte) (before, after []byte, found bool) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// appendString writes s (valid UTF-8) as RFC 8785 does: `"` and `\`
// escaped, control characters as \b \t \n \f \r or \u00xx (lower-case
// hex), everything else as it is.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b == '"' || b == '\\':
			dst = append(dst, '\\', b)
		case b >= 0x20:
			dst = append(dst, b)
		case b == '\b':
			dst = append(dst, '\\', 'b')
		case b == '\t':
			dst = append(dst, '\\', 't')
		case b == '\n':
			dst = append(dst, '\\', 'n')
		case b == '\f':
			dst = append(dst, '\\', 'f')
		case b == '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
		}
	}
	return append(dst, '"')
}
