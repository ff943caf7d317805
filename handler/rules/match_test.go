package rules

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mcp-relay/mcp-relay/schema"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything/at all", true},
		{"delete_*", "delete_repo", true},
		{"delete_*", "undelete_repo", false},
		{"*_admin", "user_admin", true},
		{"*_admin", "user_admin2", false},
		{"github__*", "github__create_issue", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a*b*c", "abcabc", true},
		{"?", "é", true}, // one character, two bytes
		{"??", "é", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{`\*`, "*", true},
		{`\*`, "x", false},
		{`a\?`, "a?", true},
		{`a\?`, "ab", false},
		{`\\`, `\`, true},
		{`a\`, `a\`, true}, // a trailing backslash matches itself
		{"file:///etc/*", "file:///etc/passwd", true},
		{"file:///etc/*", "file:///home/x", false},
		{"**", "x", true},
		{"Echo", "echo", false}, // case-sensitive, as MCP names are
		{"*a", strings.Repeat("b", 10000), false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"~"+tt.name, func(t *testing.T) {
			if got := globMatch(tt.pattern, tt.name); got != tt.want {
				t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
			}
		})
	}
}

// globRegexp is the reference the fuzz target compares globMatch with.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)\A`)
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '\\':
			if i+1 < len(pattern) {
				i++
			}
			b.WriteString(regexp.QuoteMeta(string(pattern[i])))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String())
}

func FuzzGlobMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"delete_*", "delete_repo"}, {"a*b*c", "abcabc"}, {"?", "é"}, {`\*`, "*"}, {`a\`, `a\`},
		{"*?*", "x"}, {"file:///*/x", "file:///a/b/x"}, {"", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		// The reference works on characters: compare on valid UTF-8 only,
		// and where escapes do not split a multi-byte character.
		if !utf8.ValidString(pattern) || !utf8.ValidString(name) || strings.Contains(pattern, `\`) && !isASCII(pattern) {
			_ = globMatch(pattern, name) || globMatch(name, pattern) // must not panic or hang
			return
		}
		want := globRegexp(pattern).MatchString(name)
		if got := globMatch(pattern, name); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, reference %v", pattern, name, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestAllowed(t *testing.T) {
	rules := &schema.AccessRules{
		Deny: []string{"*_admin"},
		Rules: []schema.AccessRule{
			{Consumers: []string{"demo"}, Deny: []string{"delete_*"}},
			{Consumers: []string{"c-42"}, Allow: []string{"read_*"}, Deny: []string{"read_secret"}},
			{Groups: []string{"ops"}, Allow: []string{"*"}},
			{Allow: []string{"echo", "whoami"}}, // everyone else
		},
	}
	tests := []struct {
		name   string
		who    Caller
		groups []string
		tool   string
		want   bool
	}{
		{"global deny beats every rule", Caller{Username: "demo"}, nil, "user_admin", false},
		{"demo: its deny", Caller{Username: "demo"}, nil, "delete_repo", false},
		{"demo: no allow list, so the rest", Caller{Username: "demo"}, nil, "anything", true},
		{"by id", Caller{ID: "c-42"}, nil, "read_file", true},
		{"by id: deny before allow", Caller{ID: "c-42"}, nil, "read_secret", false},
		{"by id: outside allow", Caller{ID: "c-42"}, nil, "write_file", false},
		{"first match wins over a later group rule", Caller{Username: "demo"}, []string{"ops"}, "delete_x", false},
		{"group", Caller{Username: "x"}, []string{"ops"}, "write_file", true},
		{"catch-all rule", Caller{Username: "x"}, nil, "echo", true},
		{"catch-all rule denies the rest", Caller{Username: "x"}, nil, "write_file", false},
		{"no consumer at all", Caller{}, nil, "whoami", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			who := tt.who
			asked := 0
			who.Groups = func() []string { asked++; return tt.groups }
			if got := Allowed(rules, &who, tt.tool); got != tt.want {
				t.Errorf("Allowed(%+v, %q) = %v, want %v", tt.who, tt.tool, got, tt.want)
			}
			if asked > 1 {
				t.Errorf("groups asked %d times, want at most once", asked)
			}
		})
	}
	t.Run("no rules", func(t *testing.T) {
		if !Allowed(&schema.AccessRules{}, &Caller{}, "x") {
			t.Error("empty rules deny")
		}
	})
	t.Run("groups asked only when a group rule is reached", func(t *testing.T) {
		asked := false
		who := Caller{Username: "demo", Groups: func() []string { asked = true; return nil }}
		Allowed(rules, &who, "x")
		if asked {
			t.Error("groups read though the consumer's own rule decided")
		}
	})
}
