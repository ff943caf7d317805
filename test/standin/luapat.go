package standin

import (
	"regexp"
	"strings"
	"sync"
)

// Lua patterns appear in Kong schemas (match, not_match). luaPattern
// translates the common subset (character classes, sets, quantifiers,
// anchors) into a Go regexp; patterns using %b, %f or back-references give
// nil and are not checked.

var luaClasses = map[byte]string{
	'a': `A-Za-z`, 'c': `\x00-\x1f\x7f`, 'd': `0-9`, 'l': `a-z`,
	'p': `!-/:-@\[-` + "`" + `{-~`, 's': `\t\n\v\f\r `, 'u': `A-Z`, 'w': `0-9A-Za-z`, 'x': `0-9A-Fa-f`,
}

var luaPatCache sync.Map

func luaPattern(p string) *regexp.Regexp {
	if re, ok := luaPatCache.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	src, ok := translateLuaPattern(p)
	if !ok {
		return nil
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil
	}
	luaPatCache.Store(p, re)
	return re
}

// classOf returns the bracket-expression body of %x, and whether it negates.
func classOf(c byte) (string, bool, bool) {
	lower := c | 0x20
	body, ok := luaClasses[lower]
	if !ok {
		return "", false, false
	}
	return body, c != lower, true
}

func translateLuaPattern(p string) (string, bool) {
	var b strings.Builder
	i := 0
	if strings.HasPrefix(p, "^") {
		b.WriteString("^")
		i = 1
	}
	for i < len(p) {
		c := p[i]
		var atom string
		switch {
		case c == '%':
			if i+1 >= len(p) {
				return "", false
			}
			n := p[i+1]
			i += 2
			if body, neg, ok := classOf(n); ok {
				if neg {
					atom = "[^" + body + "]"
				} else {
					atom = "[" + body + "]"
				}
			} else if n == 'b' || n == 'f' || (n >= '0' && n <= '9') {
				return "", false
			} else {
				atom = regexp.QuoteMeta(string(n))
			}
		case c == '[':
			j := i + 1
			var set strings.Builder
			set.WriteString("[")
			if j < len(p) && p[j] == '^' {
				set.WriteString("^")
				j++
			}
			first := true
			for j < len(p) && (p[j] != ']' || first) {
				first = false
				if p[j] == '%' && j+1 < len(p) {
					if body, neg, ok := classOf(p[j+1]); ok {
						if neg {
							return "", false
						}
						set.WriteString(body)
					} else {
						set.WriteString(regexp.QuoteMeta(string(p[j+1])))
					}
					j += 2
					continue
				}
				if j+2 < len(p) && p[j+1] == '-' && p[j+2] != ']' {
					set.WriteString(regexp.QuoteMeta(string(p[j])) + "-" + regexp.QuoteMeta(string(p[j+2])))
					j += 3
					continue
				}
				set.WriteString(regexp.QuoteMeta(string(p[j])))
				j++
			}
			if j >= len(p) {
				return "", false
			}
			set.WriteString("]")
			atom = set.String()
			i = j + 1
		case c == '.':
			atom = `(?s:.)`
			i++
		case c == '$' && i == len(p)-1:
			b.WriteString("$")
			i++
			continue
		case c == '(' || c == ')':
			atom = string(c)
			i++
		default:
			atom = regexp.QuoteMeta(string(c))
			i++
		}
		b.WriteString(atom)
		if i < len(p) {
			switch p[i] {
			case '*', '+', '?':
				b.WriteByte(p[i])
				i++
			case '-':
				b.WriteString("*?")
				i++
			}
		}
	}
	return b.String(), true
}
