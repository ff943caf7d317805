package toolpin

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/schema"
	"github.com/mcp-relay/mcp-relay/session"
)

// listOf is a tools/list answer with n tools of a realistic size (a
// description and an input schema with three properties: about 500 bytes
// each).
func listOf(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":1,"result":{"tools":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"tool_%d","title":"Tool %d","description":"Does thing %d with the given path, query and limit; returns matching items as text.",`+
			`"inputSchema":{"type":"object","properties":{"path":{"type":"string","description":"Where to look."},`+
			`"query":{"type":"string","description":"What to look for."},"limit":{"type":"integer","minimum":1,"maximum":100,"default":10}},"required":["path","query"]},`+
			`"annotations":{"readOnlyHint":true,"openWorldHint":false}}`, i, i, i)
	}
	b.WriteString(`]}}`)
	return []byte(b.String())
}

// BenchmarkReadAnswer: digesting every tool of a list answer, what each
// tools/list answer costs the plugin process in Go with pinning on.
func BenchmarkReadAnswer(b *testing.B) {
	for _, n := range []int{10, 50, 200} {
		body := listOf(n)
		b.Run(fmt.Sprintf("%d tools", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if pages, ok := ReadAnswer(body); !ok || len(pages[0].Tools) != n {
					b.Fatal("unread")
				}
			}
		})
	}
}

// BenchmarkJudge: judging a 50-tool answer against a complete baseline.
func BenchmarkJudge(b *testing.B) {
	pages, _ := ReadAnswer(listOf(50))
	p := NewPolicy(schema.ToolPin{Mode: schema.PinEnforce, HoldTTL: 3600})
	set := &session.PinSet{Baseline: map[string]string{}, Held: map[string]session.Hold{}, Sealed: true}
	for _, t := range pages[0].Tools {
		set.Baseline[t.Name] = t.Digest
	}
	b.ReportAllocs()
	for b.Loop() {
		if j := p.Judge(set, pages); len(j.Changes) != 0 || len(j.First) != 0 {
			b.Fatal(j)
		}
		_ = p.Callable(set, "tool_7", time.Now())
	}
}
