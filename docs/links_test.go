// Package docs holds the project's chapters (markdown) and the test that
// keeps their links, and the README's and CONTRIBUTING.md's, true.
package docs

import (
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// The documents whose links are checked, relative to this directory.
var documents = []string{"../README.md", "../CONTRIBUTING.md", "*.md"}

// TestLinks fails on a relative link to a file that does not exist, or on a
// #anchor that names no heading of its markdown target, with file:line.
func TestLinks(t *testing.T) {
	var files []string
	for _, pattern := range documents {
		m, err := filepath.Glob(pattern)
		if err != nil || len(m) == 0 {
			t.Fatalf("no document matches %s", pattern)
		}
		files = append(files, m...)
	}
	anchors := map[string]map[string]bool{} // cleaned path -> slugs
	slugsOf := func(path string) (map[string]bool, error) {
		if a, ok := anchors[path]; ok {
			return a, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		a := headingSlugs(string(b))
		anchors[path] = a
		return a, nil
	}
	checked := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links(string(b)) {
			checked++
			where := fmt.Sprintf("%s:%d", filepath.Clean(file), l.line)
			target, anchor, _ := strings.Cut(l.target, "#")
			path := filepath.Clean(file)
			if target != "" {
				path = filepath.Join(filepath.Dir(file), target)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: link to %s: no such file", where, l.target)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			slugs, err := slugsOf(path)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if !slugs[anchor] {
				t.Errorf("%s: link to %s: %s has no heading #%s (it has: %s)", where, l.target, path, anchor, sortedKeys(slugs))
			}
		}
	}
	if checked == 0 {
		t.Fatal("no links found: the link reader is broken")
	}
}

type link struct {
	target string
	line   int
}

var (
	// [text](target) and ![alt](target); the text may hold `code` and
	// brackets one level deep.
	inlineLink = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	external   = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// links returns the relative link targets of a markdown document, outside
// fenced code blocks and code spans; URLs with a scheme are left out.
func links(doc string) []link {
	var out []link
	for i, line := range proseLines(doc) {
		for _, m := range inlineLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, "``"), -1) {
			if external.MatchString(m[1]) {
				continue
			}
			out = append(out, link{target: m[1], line: i + 1})
		}
	}
	return out
}

// proseLines yields doc's lines with their index, fenced code blocks
// (``` or ~~~) and their fences left out.
func proseLines(doc string) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		fence := ""
		for i, line := range strings.Split(doc, "\n") {
			trimmed := strings.TrimSpace(line)
			if fence != "" {
				if strings.HasPrefix(trimmed, fence) {
					fence = ""
				}
				continue
			}
			if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
				fence = trimmed[:3]
				continue
			}
			if !yield(i, line) {
				return
			}
		}
	}
}

var atxHeading = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)

// headingSlugs returns the anchors GitHub gives the headings of doc,
// duplicates numbered -1, -2 ... as GitHub does.
func headingSlugs(doc string) map[string]bool {
	slugs := map[string]bool{}
	seen := map[string]int{}
	for _, line := range proseLines(doc) {
		m := atxHeading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			slugs[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			slugs[s] = true
		}
		seen[s]++
	}
	return slugs
}

var markdownLinkText = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// slug is GitHub's anchor for a heading's text: links reduced to their
// text, lower case, every character but letters, digits, spaces, - and _
// dropped (backticks, dots, brackets, colons ...), spaces turned into -.
func slug(heading string) string {
	heading = markdownLinkText.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func sortedKeys(m map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, " ")
}

func TestSlug(t *testing.T) {
	tests := []struct{ heading, want string }{
		{"Two commands", "two-commands"},
		{"Install in Kong", "install-in-kong"},
		{"Access rules: which consumer may use which tool", "access-rules-which-consumer-may-use-which-tool"},
		{"OAuth discovery: protected-resource metadata", "oauth-discovery-protected-resource-metadata"},
		{"`config.session.redis`", "configsessionredis"},
		{"`config.tools.rules[]`", "configtoolsrules"},
		{"Browser origins: `origin.allow`", "browser-origins-originallow"},
		{"mcp-go ends a session without the client's headers", "mcp-go-ends-a-session-without-the-clients-headers"},
		{"Upstream 401 and 403: the server's own reason", "upstream-401-and-403-the-servers-own-reason"},
		{"Replica loss, ending, Host", "replica-loss-ending-host"},
		{"snake_case stays", "snake_case-stays"},
		{"Proven on real Kong 3.9.1", "proven-on-real-kong-391"},
		{"What is recovered (and why)", "what-is-recovered-and-why"},
		{"A [linked](other.md) heading", "a-linked-heading"},
		{"Ünïcode letters stay", "ünïcode-letters-stay"},
		{"two  spaces", "two--spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.heading, func(t *testing.T) {
			if got := slug(tt.heading); got != tt.want {
				t.Errorf("slug(%q) = %q, want %q", tt.heading, got, tt.want)
			}
		})
	}
}

func TestHeadingSlugsNumbersDuplicates(t *testing.T) {
	got := headingSlugs("# A\n## Metrics\n```\n# not a heading\n```\n### Metrics\n## Metrics ##\n")
	for _, want := range []string{"a", "metrics", "metrics-1", "metrics-2"} {
		if !got[want] {
			t.Errorf("no #%s in %s", want, sortedKeys(got))
		}
	}
	if got["not-a-heading"] {
		t.Error("a line in a fenced code block was read as a heading")
	}
}

func TestLinksReader(t *testing.T) {
	doc := "see [a](a.md#x) and [`b`](../b.go), [web](https://example.com)\n" +
		"`[not](a link)` ![img](p.png \"title\")\n```\n[in](fence.md)\n```\n[[nested] text](c.md)\n"
	var got []string
	for _, l := range links(doc) {
		got = append(got, fmt.Sprintf("%s@%d", l.target, l.line))
	}
	want := "a.md#x@1 ../b.go@1 p.png@2 c.md@6"
	if strings.Join(got, " ") != want {
		t.Errorf("links = %v, want %s", got, want)
	}
}

// readmeMaxLines keeps the README an operator's ten-minute read: chapters
// that grow go to this directory, contributor material to CONTRIBUTING.md.
const readmeMaxLines = 450

func TestReadmeStaysShort(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > readmeMaxLines {
		t.Errorf("README.md has %d lines, more than %d: move a chapter to docs/ (and link it)", n, readmeMaxLines)
	}
}
