package handler

import (
	"bytes"
	"encoding/json"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/schema"
)

// Access rules (config.tools, config.prompts, config.resources): a denied
// call never reaches the MCP server, and list answers never show what the
// caller may not use. A route without rules makes no call for them.

// primitive is one kind of thing access rules cover.
type primitive struct {
	rules    *schema.AccessRules
	listKey  string // result member of its list answer
	nameKey  string // member of each listed entry that rules match
	forbid   reason
	listName string
}

var (
	reasonToolForbidden     = reason{"tool_forbidden", 403, 0, "Tool not allowed", true}
	reasonPromptForbidden   = reason{"prompt_forbidden", 403, 0, "Prompt not allowed", true}
	reasonResourceForbidden = reason{"resource_forbidden", 403, 0, "Resource not allowed", true}
)

// accessRules is the instance's prepared rules; nil when none is configured.
type accessRules struct {
	kinds       []primitive // those with rules
	usesCallers bool        // a decision depends on who calls
}

func newAccessRules(cfg *schema.Config) *accessRules {
	a := &accessRules{}
	for _, k := range []primitive{
		{&cfg.Tools, "tools", "name", reasonToolForbidden, "tools/list"},
		{&cfg.Prompts, "prompts", "name", reasonPromptForbidden, "prompts/list"},
		{&cfg.Resources, "resources", "uri", reasonResourceForbidden, "resources/list"},
	} {
		if k.rules.Configured() {
			a.kinds = append(a.kinds, k)
			a.usesCallers = a.usesCallers || k.rules.UsesCallers()
		}
	}
	if len(a.kinds) == 0 {
		return nil
	}
	return a
}

// forCall is the primitive a JSON-RPC method uses by name, if it has rules.
func (a *accessRules) forCall(method string) *primitive {
	var key string
	switch method {
	case "tools/call":
		key = "tools"
	case "prompts/get":
		key = "prompts"
	case "resources/read", "resources/subscribe":
		key = "resources"
	default:
		return nil
	}
	for i := range a.kinds {
		if a.kinds[i].listKey == key {
			return &a.kinds[i]
		}
	}
	return nil
}

// listMethods are the methods whose answers are filtered: Access keeps
// them buffered whatever upstream.buffer_methods says.
func (a *accessRules) listMethods() []string {
	out := make([]string, len(a.kinds))
	for i, k := range a.kinds {
		out[i] = k.listName
	}
	return out
}

// callerOf reads who calls from the headers Kong's auth plugins set; groups
// are asked from Kong only when a rule with groups is reached.
func callerOf(k kong.PDK, headers map[string][]string) *caller {
	return &caller{
		id: first(headers, hConsumerID), username: first(headers, hConsumerName),
		groups: func() []string {
			g, err := k.AuthenticatedGroups()
			if err != nil {
				logger.Error("reading kong.ctx.shared.authenticated_groups", "err", err)
			}
			return g
		},
	}
}

// denyCall answers a call the caller may not make (Access, after the
// anonymous check, before the header check and pinning) and reports
// whether it did. A batch is
// judged per element: if any element is denied, the batch is answered
// whole, denied elements with their reason and the others with
// batch_refused, so that nothing of it runs.
func (p *Plugin) denyCall(k kong.PDK, r *request) (exited bool) {
	if p.rules == nil {
		return false
	}
	if r.bodyUnread { // the body, not Mcp-Name, is what the server runs
		p.readBody(k, r)
	}
	// Judged on what the server will run, whatever the MCP markers: a body
	// the gateway cannot read (over envelope.max_body_bytes, invalid UTF-8
	// that Go's encoding/json would still decode) or that means two things
	// (duplicate members: the server takes the last) is refused.
	if r.rpc.Kind == envelope.Invalid || ambiguous(r.rpc) {
		logger.Info("body refused: access rules cannot judge it", "kind", r.rpc.Kind.String())
		p.reply(k, r, reasonUnjudgeable, "")
		return true
	}
	who := callerOf(k, r.headers)
	switch r.rpc.Kind {
	case envelope.Single:
		if kind := p.rules.forCall(r.rpc.Method); kind != nil && !allowed(kind.rules, who, r.rpc.Name) {
			logger.Info("call denied by access rules", "method", r.rpc.Method, "name", r.rpc.Name,
				"consumer", who.username)
			p.reply(k, r, kind.forbid, "")
			return true
		}
	case envelope.Batch:
		denied := false
		r.rpc.Elements(func(e envelope.Request) bool {
			kind := p.rules.forCall(e.Method)
			denied = kind != nil && !allowed(kind.rules, who, e.Name)
			return !denied
		})
		if denied {
			p.replyBatchDenied(k, r, who)
			return true
		}
	}
	return false
}

var reasonUnjudgeable = reason{"unverifiable_request", 400, envelope.CodeInvalidRequest,
	"Request body cannot be checked against access rules", false}

// ambiguous reports a message, or a batch element, that the gateway and the
// server could read differently.
func ambiguous(rpc envelope.Request) bool {
	if rpc.Kind == envelope.Single {
		return rpc.Ambiguous
	}
	found := false
	rpc.Elements(func(e envelope.Request) bool {
		found = e.Ambiguous
		return !found
	})
	return found
}

var reasonBatchRefused = reason{"batch_refused", 403, 0, "Batch refused: it holds a call not allowed", true}

// replyBatchDenied answers every request element of a batch (2025-03-26,
// legacy only) with its own error.
func (p *Plugin) replyBatchDenied(k kong.PDK, r *request, who *caller) {
	body := make([]byte, 0, 256)
	n := 0
	r.rpc.Elements(func(e envelope.Request) bool {
		if e.IsNotification() || e.IsResponse() {
			return true
		}
		why := reasonBatchRefused
		if kind := p.rules.forCall(e.Method); kind != nil && !allowed(kind.rules, who, e.Name) {
			why = kind.forbid
		}
		if n == 0 {
			body = append(body, '[')
		} else {
			body = append(body, ',')
		}
		n++
		body, _ = envelope.Append(body, e, envelope.Error{Code: p.cfg.Envelope.AuthCode, Message: why.message,
			Data: envelope.Data{Status: why.status, Reason: why.name}})
		envelopes.WithLabelValues(why.name).Inc()
		return true
	})
	status := 403
	if n > 0 {
		body = append(body, ']')
		status = p.policyStatus(r, 403, "")
	}
	p.serializeFields(k, r, reasonBatchRefused.name)
	k.Exit(status, body, jsonOnly)
}

// filterList removes what the caller may not use from a buffered 2xx
// answer (Response phase) and reports whether it answered. The answer may
// be JSON (one message or a batch) or an SSE stream Kong buffered; every
// JSON-RPC result holding a filtered list (result.tools, .prompts,
// .resources) is rewritten, each page alone (nextCursor is kept).
// Cost: one call for the body; the request headers when a rule depends on
// the caller and an entry may be denied; the exit when something is removed.
func (p *Plugin) filterList(k kong.PDK, status int) (read readHeaders, exited bool) {
	body, err := k.ServiceResponseBody()
	if err != nil {
		logger.Error("reading the upstream answer", "err", err)
		return nil, false
	}
	f := listFilter{p: p, k: k}
	out, changed := f.body(body)
	if f.unreadable {
		logger.Warn("list answer not readable as JSON or SSE: passed unfiltered (calls are still checked)")
	}
	if !changed {
		return f.headers, false
	}
	// The upstream's headers stay (Content-Type, Mcp-Session-Id ...); Kong
	// sets Content-Length for the new body.
	k.Exit(status, out, nil)
	return nil, true
}

// listFilter rewrites one answer body.
type listFilter struct {
	p          *Plugin
	k          kong.PDK
	who        *caller
	headers    readHeaders // the request headers, once read for the caller
	unreadable bool
}

func (f *listFilter) caller() *caller {
	if f.who == nil {
		f.who = &caller{}
		if f.p.rules.usesCallers {
			headers, err := f.k.RequestHeaders()
			if err != nil {
				logger.Error("reading request headers", "err", err)
			} else {
				f.headers = headers
			}
			f.who = callerOf(f.k, headers)
		}
	}
	return f.who
}

func (f *listFilter) body(b []byte) ([]byte, bool) {
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
func (f *listFilter) json(b []byte) ([]byte, bool) {
	s := unsafe.String(unsafe.SliceData(b), len(b))
	if !gjson.Valid(s) {
		f.unreadable = true
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
func (f *listFilter) message(b []byte) ([]byte, bool) {
	if !plainMember(gjson.Parse(view(b)), "result") {
		return f.messageSlow(b)
	}
	changed := false
	for i := range f.p.rules.kinds {
		kind := &f.p.rules.kinds[i]
		result := gjson.Get(view(b), "result")
		if !result.IsObject() {
			return b, changed
		}
		if !plainMember(result, kind.listKey) {
			out, c := f.messageSlow(b)
			return out, changed || c
		}
		list := result.Get(kind.listKey)
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
		hiddenEntries.WithLabelValues(kind.listKey).Add(float64(removed))
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
func (f *listFilter) denied(kind *primitive, e gjson.Result) bool {
	seen := false
	deny := false
	e.ForEach(func(k, v gjson.Result) bool {
		if strings.EqualFold(k.String(), kind.nameKey) {
			seen = true
			name := v.String()
			deny = mayDeny(kind.rules, name) && !allowed(kind.rules, f.caller(), name)
		}
		return !deny
	})
	if !seen {
		return mayDeny(kind.rules, "") && !allowed(kind.rules, f.caller(), "")
	}
	return deny
}

// messageSlow filters a message whose members are not spelled plainly:
// decoded (the last of duplicates wins, as for clients), every member
// named like result and like a list filtered, encoded again.
func (f *listFilter) messageSlow(b []byte) ([]byte, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		f.unreadable = true
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
		for i := range f.p.rules.kinds {
			kind := &f.p.rules.kinds[i]
			for lk, lv := range result {
				var list []json.RawMessage
				if !strings.EqualFold(lk, kind.listKey) || json.Unmarshal(lv, &list) != nil {
					continue
				}
				kept := list[:0]
				for _, e := range list {
					if !f.denied(kind, gjson.ParseBytes(e)) {
						kept = append(kept, e)
					}
				}
				if removed := len(list) - len(kept); removed > 0 {
					hiddenEntries.WithLabelValues(kind.listKey).Add(float64(removed))
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
func (f *listFilter) sse(b []byte) ([]byte, bool) {
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
			f.unreadable = false // an event that is not JSON is not ours to judge
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
