package rules

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcp-relay/mcp-relay/schema"
)

// parseRules prepares the access rules of a plugin configuration.
func parseRules(t testing.TB, config string) *Set {
	t.Helper()
	cfg, err := schema.Parse([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	set := New(&cfg)
	if set == nil {
		t.Fatalf("no access rules in %s", config)
	}
	return set
}

// FuzzFilterList: any upstream answer, JSON or SSE or garbage, is filtered
// without a panic; a JSON answer stays JSON and keeps no denied tool.
func FuzzFilterList(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x1"},{"name":"ok"}],"nextCursor":"n"}}`,
		`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x"}]}},{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"x"}]}}]`,
		"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"xy\"}]}}\n\n",
		"data: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{\"tools\":[{\"name\":\"xy\"},{\"name\":\"z\"}]}}\r\n\r\n",
		`{"jsonrpc":"2.0","id":1,"result":{"t\u006fols":[{"name":"x"}],"tools":[{"name":"x"}]}}`,
		`{"result":{"tools":{"name":"x"}}}`, "", "data:", "{", `{"result":{"tools":[1,"x",null,{"name":["x"]}]}}`,
	} {
		f.Add([]byte(s))
	}
	set := parseRules(f, `{"tools":{"deny":["x*"]}}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		// Tool pinning's hook alone: no panic, and JSON stays JSON.
		hook := Filter{HideTool: func(e []byte) bool { return strings.Contains(string(e), `"x`) }}
		if out, changed := hook.Body(append([]byte(nil), body...)); changed {
			if trimmed := strings.TrimLeft(string(body), " \t\r\n"); (strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[")) && !json.Valid(out) {
				t.Fatalf("JSON withheld by the hook is not JSON: %q -> %q", body, out)
			}
		}
		lf := Filter{Rules: set}
		out, changed := lf.Body(append([]byte(nil), body...))
		if !changed {
			if string(out) != string(body) {
				t.Fatalf("unchanged answer altered: %q -> %q", body, out)
			}
			return
		}
		trimmed := strings.TrimLeft(string(body), " \t\r\n")
		if !strings.HasPrefix(trimmed, "{") && !strings.HasPrefix(trimmed, "[") {
			return // SSE: rewritten event by event
		}
		if !json.Valid(out) {
			t.Fatalf("filtered JSON is not JSON: %q -> %q", body, out)
		}
		var msgs []map[string]any
		if strings.HasPrefix(trimmed, "[") {
			_ = json.Unmarshal(out, &msgs)
		} else {
			var m map[string]any
			_ = json.Unmarshal(out, &m)
			msgs = append(msgs, m)
		}
		for _, m := range msgs {
			res, _ := m["result"].(map[string]any)
			tools, _ := res["tools"].([]any)
			for _, e := range tools {
				if o, ok := e.(map[string]any); ok {
					if name, _ := o["name"].(string); strings.HasPrefix(name, "x") {
						t.Fatalf("denied tool %q kept: %q -> %q", name, body, out)
					}
				}
			}
		}
	})
}

// TestFilterListOddSpellings: answers whose members a client would read
// differently from a plain lookup (duplicates, escapes, letter case).
func TestFilterListOddSpellings(t *testing.T) {
	set := parseRules(t, `{"tools":{"deny":["x*"]}}`)
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"t\u006fols":[{"name":"ok"}],"tools":[{"name":"x1"},{"name":"ok"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x1"}]},"result":{"tools":[{"name":"x2"},{"name":"ok"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"Tools":[{"name":"x1"},{"name":"ok"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok","Name":"x1"},{"name":"ok"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok","name":"x1"},{"name":"ok"}]}}`,
	} {
		lf := Filter{Rules: set}
		out, changed := lf.Body([]byte(body))
		if !changed || strings.Contains(string(out), `"x`) || !json.Valid(out) || !strings.Contains(string(out), `"ok"`) {
			t.Errorf("%s\n-> %v %s", body, changed, out)
		}
	}
}

// TestFilterCallerAndHidden: the caller is asked once, and only when an
// entry may be denied; Hidden is told what each list lost.
func TestFilterCallerAndHidden(t *testing.T) {
	set := parseRules(t, `{"tools":{"rules":[{"consumers":["demo"],"deny":["delete_*"]}]},"prompts":{"deny":["secret*"]}}`)
	tests := []struct {
		name, body string
		asked      int
		hidden     map[string]int
	}{
		{"two denied in one list", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_a"},{"name":"echo"},{"name":"delete_b"}]}}`,
			1, map[string]int{"tools": 2}},
		{"nothing deniable: caller not asked", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}]}}`,
			0, map[string]int{}},
		{"another list", `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"secret1"},{"name":"p"}]}}`,
			1, map[string]int{"prompts": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asked := 0
			hidden := map[string]int{}
			f := Filter{Rules: set,
				Caller: func() *Caller { asked++; return &Caller{Username: "demo"} },
				Hidden: func(list string, n int) { hidden[list] += n }}
			f.Body([]byte(tt.body))
			if asked != tt.asked {
				t.Errorf("caller asked %d times, want %d", asked, tt.asked)
			}
			if len(hidden) != len(tt.hidden) {
				t.Errorf("hidden %v, want %v", hidden, tt.hidden)
			}
			for k, v := range tt.hidden {
				if hidden[k] != v {
					t.Errorf("hidden %v, want %v", hidden, tt.hidden)
				}
			}
		})
	}
}

// TestFilterHideTool: tool pinning's hook removes tools/list entries with
// or without access rules, in JSON, batches and SSE; other lists stay.
func TestFilterHideTool(t *testing.T) {
	hide := func(entry []byte) bool { return strings.Contains(string(entry), `"held"`) }
	tests := []struct {
		name  string
		rules *Set
		in    string
		want  string
	}{
		{"no rules", nil,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"held"},{"name":"ok"}],"nextCursor":"c"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}],"nextCursor":"c"}}`},
		{"with rules", parseRules(t, `{"tools":{"deny":["x*"]}}`),
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"held"},{"name":"x1"},{"name":"ok"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}]}}`},
		{"rules of prompts only", parseRules(t, `{"prompts":{"deny":["p"]}}`),
			`[{"id":1,"result":{"tools":[{"name":"held"}]}},{"id":2,"result":{"prompts":[{"name":"p"},{"name":"held"}]}}]`,
			`[{"id":1,"result":{"tools":[]}},{"id":2,"result":{"prompts":[{"name":"held"}]}}]`},
		{"sse", nil,
			"event: message\ndata: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"held\"},{\"name\":\"ok\"}]}}\n\n",
			"event: message\ndata: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"ok\"}]}}\n\n"},
		{"duplicate result members", nil,
			`{"id":1,"result":{"tools":[{"name":"ok"}]},"Result":{"tools":[{"name":"held"}]}}`,
			`{"Result":{"tools":[]},"id":1,"result":{"tools":[{"name":"ok"}]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hidden := 0
			f := Filter{Rules: tt.rules, HideTool: hide, Hidden: func(list string, n int) { hidden += n }}
			out, changed := f.Body([]byte(tt.in))
			if !changed || string(out) != tt.want {
				t.Errorf("Body = %s (changed %v)\nwant %s", out, changed, tt.want)
			}
			if hidden == 0 {
				t.Error("nothing counted hidden")
			}
		})
	}
	f := Filter{HideTool: hide}
	if out, changed := f.Body([]byte(`{"id":1,"result":{"tools":[{"name":"ok"}]}}`)); changed {
		t.Errorf("nothing held, yet changed: %s", out)
	}
}
