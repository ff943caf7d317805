package schema

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

const (
	readmePath  = "../docs/configuration.md"
	readmeBegin = "<!-- config:begin -->\n"
	readmeEnd   = "<!-- config:end -->\n"
)

// TestReadmeReference keeps docs/configuration.md's configuration reference
// equal to MarkdownReference(). With -update it rewrites the lines between
// the markers; it never creates the file or the markers.
func TestReadmeReference(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatalf("%v\ndocs/configuration.md must hold the configuration reference: add the two lines\n%s%sto it, then run go test ./schema -update", err, readmeBegin, readmeEnd)
	}
	before, section, after, err := splitReadme(readme)
	if err != nil {
		t.Fatalf("docs/configuration.md: %v\nAdd the two lines\n%s%swhere the configuration reference belongs (each on a line of its own, in this order), then run go test ./schema -update", err, readmeBegin, readmeEnd)
	}
	want := MarkdownReference()
	if string(section) == want {
		return
	}
	if *update {
		out := append(append(append(before, readmeBegin...), want...), readmeEnd...)
		out = append(out, after...)
		if err := os.WriteFile(readmePath, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("docs/configuration.md's configuration reference is out of date: run go test ./schema -update\n--- docs/configuration.md\n%s\n--- MarkdownReference()\n%s", section, want)
}

// splitReadme cuts readme around the markers: before ends with the line
// before the begin marker, section lies between the markers, after starts
// with the line after the end marker.
func splitReadme(readme []byte) (before, section, after []byte, err error) {
	readme = bytes.ReplaceAll(readme, []byte("\r\n"), []byte("\n"))
	begin := lineIndex(readme, readmeBegin)
	end := lineIndex(readme, readmeEnd)
	switch {
	case begin < 0 || end < 0:
		return nil, nil, nil, fmt.Errorf("no %q and %q lines", readmeBegin[:len(readmeBegin)-1], readmeEnd[:len(readmeEnd)-1])
	case bytes.Count(readme, []byte(readmeBegin)) > 1 || bytes.Count(readme, []byte(readmeEnd)) > 1:
		return nil, nil, nil, fmt.Errorf("the markers appear more than once")
	case end < begin:
		return nil, nil, nil, fmt.Errorf("the end marker comes before the begin marker")
	}
	return readme[:begin:begin], readme[begin+len(readmeBegin) : end], readme[end+len(readmeEnd):], nil
}

// lineIndex finds line (with its newline) at the start of a line of b.
func lineIndex(b []byte, line string) int {
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(line))
		if i < 0 {
			return -1
		}
		if off+i == 0 || b[off+i-1] == '\n' {
			return off + i
		}
		off += i + 1
	}
}

func TestSplitReadme(t *testing.T) {
	tests := []struct {
		name, in                    string
		before, section, after, err string
	}{
		{name: "ok", in: "# T\n<!-- config:begin -->\nold\n<!-- config:end -->\nrest\n",
			before: "# T\n", section: "old\n", after: "rest\n"},
		{name: "empty section", in: "<!-- config:begin -->\n<!-- config:end -->\n", section: ""},
		{name: "crlf", in: "a\r\n<!-- config:begin -->\r\nx\r\n<!-- config:end -->\r\n", before: "a\n", section: "x\n"},
		{name: "missing", in: "# T\n", err: "no"},
		{name: "only begin", in: "<!-- config:begin -->\n", err: "no"},
		{name: "not on its own line", in: "x <!-- config:begin -->\n<!-- config:end -->\n", err: "no"},
		{name: "reversed", in: "<!-- config:end -->\n<!-- config:begin -->\n", err: "before"},
		{name: "twice", in: "<!-- config:begin -->\n<!-- config:end -->\n<!-- config:begin -->\n<!-- config:end -->\n", err: "more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, s, a, err := splitReadme([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.err)) {
					t.Fatalf("err = %v, want it to say %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.before || string(s) != tt.section || string(a) != tt.after {
				t.Errorf("split = %q %q %q, want %q %q %q", b, s, a, tt.before, tt.section, tt.after)
			}
		})
	}
}

func TestMarkdownReferenceCoversEveryField(t *testing.T) {
	md := MarkdownReference()
	walk(root.name, root, func(path string, f *field) {
		if path == root.name || path[len(path)-2:] == "[]" {
			return
		}
		if !bytes.Contains([]byte(md), []byte("| `"+path+"` |")) {
			t.Errorf("no row for %s", path)
		}
	})
}
