package rules

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Filter removes what one caller may not use from list answers: every
// JSON-RPC result holding a list of a kind with rules (result.tools,
// .prompts, .resources) is rewritten, each page alone (nextCursor is kept).
type Filter struct {
	Rules *Set // nil: no access rules
	// HideTool, when set, also removes the tools/list entries it reports
	// (tool pinning), whatever the access rules say.
	HideTool func(entry []byte) bool
	// Caller is asked who calls, once, when an entry may be denied to
	// someone and the rules depend on the caller; nil: nobody in particular.
	Caller func() *Caller
	// Hidden, when set, is told how many entries a list lost.
	Hidden func(list string, n int)
	// Unreadable is set when an answer was not readable as JSON or SSE
	// (it is then passed as it came).
	Unreadable bool
	who        *Caller
}

// toolsOnly is the kind of tools lists filtered by HideTool alone.
var toolsOnly = Kind{List: "tools", nameKey: "name", ListMethod: "tools/list"}

// kinds are the lists the filter rewrites.
func (f *Filter) kinds() []Kind {
	var ks []Kind
	if f.Rules != nil {
		ks = f.Rules.kinds
	}
	if f.HideTool != nil && !slices.ContainsFunc(ks, func(k Kind) bool { return k.List == "tools" }) {
		ks = append(slices.Clip(ks), toolsOnly)
	}
	return ks
}

func (f *Filter) caller() *Caller {
	if f.who == nil {
		if f.Rules != nil && f.Rules.usesCallers && f.Caller != nil {
			f.who = f.Caller()
		}
		if f.who == nil {
			f.who = &Caller{}
		}
	}
	return f.who
}

func (f *Filter) hidden(list string, n int) {
	if f.Hidden != nil {
		f.Hidden(list, n)
	}
}

// Body filters one answer body, JSON (one message or a batch) or an SSE
// stream, and reports whether it changed anything; unchanged, b comes
// back as it was.
func (f *Filter) Body(b []byte) ([]byte, bool) {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 {
		return b, false
	}
	if t[0] == '{' || t[0] == '[' {
		return f.json(b)
	}
	return f.sse(b)
}

// json filters one JSON-RPC message or a batch of them.
func (f *Filter) json(b []byte) ([]byte, bool) {
	s := unsafe.String(unsafe.SliceData(b), len(b))
	if !gjson.Valid(s) {
		f.Unreadable = true
		return b, false
	}
	v := gjson.Parse(s)
	if !v.IsArray() {
		return f.message(b)
	}
	var out []byte
	changed := false
	v.ForEach(func(_, e gjson.Result) bool {
		if out == nil {
			out = append(make([]byte, 0, len(b)), '[')
		} else {
			out = append(out, ',')
		}
		m, c := f.message([]byte(e.Raw))
		changed = changed || c
		out = append(out, m...)
		return true
	})
	if !changed {
		return b, false
	}
	return append(out, ']'), true
}

// message filters every list of one JSON-RPC answer. Member names are
// matched as clients read them: JavaScript takes the last of duplicate
// members, Go's encoding/json also matches names case-insensitively. An
// answer whose result or list members are not spelled plainly and once is
// decoded and encoded again (messageSlow); an entry is removed when any
// reading of its name is denied.
func (f *Filter) message(b []byte) ([]byte, bool) {
	if !plainMember(gjson.Parse(view(b)), "result") {
		return f.messageSlow(b)
	}
	changed := false
	kinds := f.kinds()
	for i := range kinds {
		kind := &kinds[i]
		result := gjson.Get(view(b), "result")
		if !result.IsObject() {
			return b, changed
		}
		if !plainMember(result, kind.List) {
			out, c := f.messageSlow(b)
			return out, changed || c
		}
		list := result.Get(kind.List)
		if !list.IsArray() {
			continue
		}
		kept := make([]byte, 0, len(list.Raw))
		kept = append(kept, '[')
		removed := 0
		list.ForEach(func(_, e gjson.Result) bool {
			if f.denied(kind, e) {
				removed++
				return true
			}
			if len(kept) > 1 {
				kept = append(kept, ',')
			}
			kept = append(kept, e.Raw...)
			return true
		})
		if removed == 0 {
			continue
		}
		kept = append(kept, ']')
		// gjson gives the offset of a value reached by a plain path.
		at := list.Index
		if at <= 0 || at+len(list.Raw) > len(b) || string(b[at:at+len(list.Raw)]) != list.Raw {
			out, c := f.messageSlow(b)
			return out, changed || c
		}
		f.hidden(kind.List, removed)
		out := make([]byte, 0, len(b)-len(list.Raw)+len(kept))
		out = append(out, b[:at]...)
		out = append(out, kept...)
		b = append(out, b[at+len(list.Raw):]...)
		changed = true
	}
	return b, changed
}

// plainMember reports that obj has at most one member named key in any
// letter case or escaping, spelled exactly "key".
func plainMember(obj gjson.Result, key string) bool {
	n, plain := 0, true
	obj.ForEach(func(k, _ gjson.Result) bool {
		if strings.EqualFold(k.String(), key) {
			n++
			plain = plain && k.Raw == `"`+key+`"`
		}
		return true
	})
	return n <= 1 && plain
}

// denied reports whether the caller may not see entry e: any of its
// members named like the name key (duplicates, other letter cases) is
// denied, or it has none and "" is.
func (f *Filter) denied(kind *Kind, e gjson.Result) bool {
	if kind.List == "tools" && f.HideTool != nil && f.HideTool([]byte(e.Raw)) {
		return true
	}
	if kind.Rules == nil {
		return false
	}
	seen := false
	deny := false
	e.ForEach(func(k, v gjson.Result) bool {
		if strings.EqualFold(k.String(), kind.nameKey) {
			seen = true
			name := v.String()
			deny = mayDeny(kind.Rules, name) && !Allowed(kind.Rules, f.caller(), name)
		}
		return !deny
	})
	if !seen {
		return mayDeny(kind.Rules, "") && !Allowed(kind.Rules, f.caller(), "")
	}
	return deny
}

// messageSlow filters a message whose members are not spelled plainly:
// decoded (the last of duplicates wins, as for clients), every member
// named like result and like a list filtered, encoded again.
func (f *Filter) messageSlow(b []byte) ([]byte, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		f.Unreadable = true
		return b, false
	}
	changed := false
	for rk, rv := range m {
		if !strings.EqualFold(rk, "result") {
			continue
		}
		var result map[string]json.RawMessage
		if json.Unmarshal(rv, &result) != nil {
			continue
		}
		resultChanged := false
		kinds := f.kinds()
		for i := range kinds {
			kind := &kinds[i]
			for lk, lv := range result {
				var list []json.RawMessage
				if !strings.EqualFold(lk, kind.List) || json.Unmarshal(lv, &list) != nil {
					continue
				}
				kept := list[:0]
				for _, e := range list {
					if !f.denied(kind, gjson.ParseBytes(e)) {
						kept = append(kept, e)
					}
				}
				if removed := len(list) - len(kept); removed > 0 {
					f.hidden(kind.List, removed)
					result[lk], _ = json.Marshal(kept)
					resultChanged = true
				}
			}
		}
		if resultChanged {
			m[rk], _ = json.Marshal(result)
			changed = true
		}
	}
	if !changed {
		return b, false
	}
	out, err := json.Marshal(m)
	if err != nil {
		return b, false
	}
	return out, true
}

func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// sse filters the data of each event of a buffered SSE answer; other lines
// (event:, id:, retry:, comments) are kept as sent.
func (f *Filter) sse(b []byte) ([]byte, bool) {
	lines := bytes.SplitAfter(b, []byte("\n"))
	var out []byte
	changed := false
	for i := 0; i < len(lines); {
		// One event: lines up to a blank line.
		j := i
		var data []byte
		firstData := -1
		for j < len(lines) && len(bytes.TrimRight(lines[j], "\r\n")) > 0 {
			if d, ok := bytes.CutPrefix(bytes.TrimRight(lines[j], "\r\n"), []byte("data:")); ok {
				if firstData < 0 {
					firstData = j
				} else {
					data = append(data, '\n')
				}
				data = append(data, bytes.TrimPrefix(d, []byte(" "))...)
			}
			j++
		}
		newData, c := []byte(nil), false
		if firstData >= 0 && len(data) > 0 && (data[0] == '{' || data[0] == '[') {
			newData, c = f.json(data)
			f.Unreadable = false // an event that is not JSON is not ours to judge
		}
		for x := i; x < j; x++ {
			if c && bytes.HasPrefix(lines[x], []byte("data:")) {
				if x == firstData {
					out = append(out, "data: "...)
					out = append(out, newData...)
					out = append(out, '\n')
				}
				continue
			}
			out = append(out, lines[x]...)
		}
		changed = changed || c
		if j < len(lines) { // the blank line
			out = append(out, lines[j]...)
			j++
		}
		i = j
	}
	if !changed {
		return b, false
	}
	return out, true
}
