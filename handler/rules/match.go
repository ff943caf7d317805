package rules

import (
	"github.com/mcp-relay/mcp-relay/schema"
)

// globMatch reports whether name matches pattern: `*` matches any run of
// bytes (also none, also `/`), `?` exactly one UTF-8 character, `\` makes
// the next byte literal (a trailing `\` matches itself). Iterative, with one
// backtrack point: linear in practice, O(len(pattern)·len(name)) at worst,
// never recursive, so no pattern can exhaust the stack.
func globMatch(pattern, name string) bool {
	p, n := 0, 0
	starP, starN := -1, 0
	for n < len(name) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starN = p, n
				p++
				continue
			case '?':
				p++
				n += runeLen(name, n)
				continue
			case '\\':
				lit := byte('\\')
				step := 1
				if p+1 < len(pattern) {
					lit, step = pattern[p+1], 2
				}
				if name[n] == lit {
					p += step
					n++
					continue
				}
			default:
				if name[n] == c {
					p++
					n++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last star swallow one more byte and retry after it.
		starN++
		p, n = starP+1, starN
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// runeLen is the length of the UTF-8 sequence starting at name[i] (1 for
// invalid bytes), so `?` matches one character.
func runeLen(name string, i int) int {
	c := name[i]
	n := 1
	switch {
	case c >= 0xf0:
		n = 4
	case c >= 0xe0:
		n = 3
	case c >= 0xc0:
		n = 2
	}
	if i+n > len(name) {
		return 1
	}
	for j := 1; j < n; j++ {
		if name[i+j]&0xc0 != 0x80 {
			return 1
		}
	}
	return n
}

func anyMatch(patterns []string, name string) bool {
	for _, p := range patterns {
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

// Caller is who asks: the consumer the route's auth plugin set, and its
// groups.
type Caller struct {
	ID, Username string
	// Groups reads the caller's groups (for the handler, a PDK call): it is
	// asked only when a rule with groups is reached, at most once.
	Groups     func() []string
	groupsRead bool
	groupList  []string
}

func (c *Caller) inGroups(want []string) bool {
	if len(want) == 0 {
		return false
	}
	if !c.groupsRead {
		c.groupsRead = true
		if c.Groups != nil {
			c.groupList = c.Groups()
		}
	}
	for _, g := range c.groupList {
		for _, w := range want {
			if g == w {
				return true
			}
		}
	}
	return false
}

func (c *Caller) is(consumers []string) bool {
	for _, x := range consumers {
		if x != "" && (x == c.ID || x == c.Username) {
			return true
		}
	}
	return false
}

// Allowed decides whether the caller may use name under rules: the global
// deny list first, then the first rule naming the caller (by consumer, by
// group, or a rule naming neither); its deny list wins over its allow list,
// and a set allow list denies everything it does not match. No rule
// matching: allowed.
func Allowed(rules *schema.AccessRules, who *Caller, name string) bool {
	if anyMatch(rules.Deny, name) {
		return false
	}
	for i := range rules.Rules {
		r := &rules.Rules[i]
		everyone := len(r.Consumers) == 0 && len(r.Groups) == 0
		if !everyone && !who.is(r.Consumers) && !who.inGroups(r.Groups) {
			continue
		}
		if anyMatch(r.Deny, name) {
			return false
		}
		return len(r.Allow) == 0 || anyMatch(r.Allow, name)
	}
	return true
}

// mayDeny reports whether name could be denied to someone: a list answer
// with no such entry needs no caller (no request headers read).
func mayDeny(rules *schema.AccessRules, name string) bool {
	if anyMatch(rules.Deny, name) {
		return true
	}
	for i := range rules.Rules {
		r := &rules.Rules[i]
		if anyMatch(r.Deny, name) || (len(r.Allow) > 0 && !anyMatch(r.Allow, name)) {
			return true
		}
	}
	return false
}
