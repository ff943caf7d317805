package toolpin

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/schema"
	"github.com/mcp-relay/mcp-relay/session"
)

func tool(name, desc string) Tool {
	return ReadTool([]byte(`{"name":"` + name + `","description":"` + desc + `"}`))
}

func page(last bool, tools ...Tool) Page { return Page{Tools: tools, Last: last} }

func policy(t *testing.T, mode string, approved ...schema.ApprovedTool) *Policy {
	t.Helper()
	p := NewPolicy(schema.ToolPin{Mode: mode, Approved: approved, HoldTTL: 3600})
	if p == nil {
		t.Fatal("no policy")
	}
	return p
}

func emptySet() *session.PinSet {
	return &session.PinSet{Baseline: map[string]string{}, Held: map[string]session.Hold{}}
}

func kinds(cs []Change) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Tool+":"+c.Kind)
	}
	return strings.Join(out, ",")
}

func TestJudgeTrustOnFirstUse(t *testing.T) {
	p := policy(t, schema.PinEnforce)
	a, b, c := tool("a", "1"), tool("b", "1"), tool("c", "1")
	set := emptySet()

	// A first page: its tools are recorded, the scope is not sealed yet.
	j := p.Judge(set, []Page{page(false, a, b)})
	if len(j.Changes) != 0 || j.Seal || j.First["a"] != a.Digest || j.First["b"] != b.Digest {
		t.Fatalf("first page: %+v", j)
	}
	set.Baseline["a"], set.Baseline["b"] = a.Digest, b.Digest
	// The last page: its tools are recorded too, and the list is complete.
	j = p.Judge(set, []Page{page(true, c)})
	if len(j.Changes) != 0 || !j.Seal || j.First["c"] != c.Digest {
		t.Fatalf("last page: %+v", j)
	}
	set.Baseline["c"], set.Sealed = c.Digest, true

	// Once sealed: a changed definition and a tool first seen now.
	a2, d := tool("a", "2"), tool("d", "1")
	j = p.Judge(set, []Page{page(true, a2, b, c, d)})
	if kinds(j.Changes) != "a:changed,d:new" || len(j.First) != 0 || j.Seal {
		t.Fatalf("after seal: %+v", j)
	}
	if ch := j.Changes[0]; ch.Digest != a2.Digest || !slices.Equal(ch.Accepted, []string{a.Digest}) || ch.Approved {
		t.Errorf("change of a: %+v", ch)
	}
}

func TestJudgeSameToolTwiceInOneAnswer(t *testing.T) {
	p := policy(t, schema.PinDetect)
	a1, a2 := tool("a", "1"), tool("a", "2")
	j := p.Judge(emptySet(), []Page{page(true, a1, a2)})
	if j.First["a"] != a1.Digest || kinds(j.Changes) != "a:changed" {
		t.Fatalf("%+v", j)
	}
}

func TestJudgeApprovedReplacesTheFirstDigest(t *testing.T) {
	a1, a2, a3 := tool("a", "1"), tool("a", "2"), tool("a", "3")
	// The deck's digest may be written in upper case.
	p := policy(t, schema.PinEnforce, schema.ApprovedTool{Name: "a", Digest: "sha256:" + strings.ToUpper(a2.Digest[7:])},
		schema.ApprovedTool{Name: "a", Digest: a3.Digest})
	set := emptySet()
	set.Baseline["a"], set.Sealed = a1.Digest, true
	j := p.Judge(set, []Page{page(true, a1, a2, a3)})
	if kinds(j.Changes) != "a:changed" || j.Changes[0].Digest != a1.Digest || !j.Changes[0].Approved {
		t.Fatalf("%+v", j)
	}
	// Approved tools are not trusted on first use.
	j = p.Judge(emptySet(), []Page{page(false, a1)})
	if len(j.First) != 0 || kinds(j.Changes) != "a:changed" {
		t.Fatalf("approved tool on first use: %+v", j)
	}
}

func TestJudgeUnreadable(t *testing.T) {
	p := policy(t, schema.PinEnforce)
	bad := ReadTool([]byte(`{"name":"x","description":"a","description":"b"}`))
	j := p.Judge(emptySet(), []Page{page(true, bad)})
	if kinds(j.Changes) != "x:unreadable" || len(j.First) != 0 {
		t.Fatalf("%+v", j)
	}
	if !p.Hidden(emptySet(), bad, nil, time.Now()) {
		t.Error("an unreadable entry is shown")
	}
}

func TestHoldsAndHeld(t *testing.T) {
	p := policy(t, schema.PinEnforce)
	a1, a2 := tool("a", "1"), tool("a", "2")
	now := time.Now()
	set := emptySet()
	set.Baseline["a"], set.Sealed = a1.Digest, true
	changes := p.Judge(set, []Page{page(true, a2)}).Changes
	holds := p.Holds(set, changes, now)
	if holds["a"].Digest != a2.Digest || !holds["a"].Seen.Equal(now) {
		t.Fatalf("holds %+v", holds)
	}
	set.Held["a"] = holds["a"]
	if !p.Held(set, "a", now) || p.Callable(set, "a", now) {
		t.Error("a changed tool is not held")
	}
	// Every answer listing a is withheld, whatever definition it shows.
	if !p.Hidden(set, a1, nil, now) {
		t.Error("the accepted definition of a held tool is shown")
	}
	// Seen again soon: no write; after a tenth of the hold time: refreshed.
	if h := p.Holds(set, changes, now.Add(time.Minute)); len(h) != 0 {
		t.Errorf("refreshed after a minute: %+v", h)
	}
	if h := p.Holds(set, changes, now.Add(7*time.Minute)); h["a"].Digest != a2.Digest {
		t.Errorf("not refreshed after 7 minutes: %+v", h)
	}
	// The hold time passed without a sighting: released.
	if p.Held(set, "a", now.Add(time.Hour)) || !p.Callable(set, "a", now.Add(time.Hour)) {
		t.Error("hold outlived its time")
	}
	// Approving the held definition releases the tool at once.
	q := policy(t, schema.PinEnforce, schema.ApprovedTool{Name: "a", Digest: a2.Digest})
	if q.Held(set, "a", now) || !q.Callable(set, "a", now) || q.Hidden(set, a2, nil, now) {
		t.Error("approved definition still held")
	}
	// ... and withholds the old definition in answers still showing it.
	if ch := q.Judge(set, []Page{page(true, a1)}).Changes; kinds(ch) != "a:changed" {
		t.Errorf("old definition after approval: %+v", ch)
	}
}

func TestCallable(t *testing.T) {
	p := policy(t, schema.PinEnforce, schema.ApprovedTool{Name: "approved", Digest: tool("approved", "1").Digest})
	set := emptySet()
	set.Baseline["pinned"] = tool("pinned", "1").Digest
	now := time.Now()
	for name, want := range map[string]bool{"approved": true, "pinned": true, "unknown": true} {
		if got := p.Callable(set, name, now); got != want {
			t.Errorf("before the list is complete, %s: %v", name, got)
		}
	}
	set.Sealed = true
	for name, want := range map[string]bool{"approved": true, "pinned": true, "unknown": false} {
		if got := p.Callable(set, name, now); got != want {
			t.Errorf("after the list is complete, %s: %v", name, got)
		}
	}
}

func TestPolicyOff(t *testing.T) {
	if NewPolicy(schema.ToolPin{Mode: schema.PinOff}) != nil || NewPolicy(schema.ToolPin{}) != nil {
		t.Error("a policy for mode off")
	}
}
