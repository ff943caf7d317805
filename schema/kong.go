package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// PluginName is the name Kong knows the plugin by (the executable's name).
const PluginName = "mcp-relay"

// protocols are the route protocols the plugin may be enabled for. MCP's
// Streamable HTTP is plain HTTP; grpc, grpcs and the stream protocols make
// no sense for it.
var protocols = []string{"http", "https"}

// KongSchema returns the plugin schema Kong enforces, in the form Kong reads
// it from `mcp-relay -dump` (the Lua schema table, as JSON). Kong validates
// plugin configuration against it in the Admin API, decK and declarative
// files, fills in the defaults, and sends the result to the plugin.
//
// Beside config it declares:
//   - protocols: only http and https;
//   - consumer: always null, like Kong's auth plugins (typedefs.no_consumer).
//     The plugin must see every request of a route, in particular the
//     anonymous ones, so it cannot be scoped to a consumer.
//
// The result is a fresh value of maps and slices; encoding/json marshals it
// deterministically (map keys sorted).
func KongSchema() map[string]any { return kongSchema(PluginName) }

func kongSchema(name string) map[string]any {
	return map[string]any{
		"name": name,
		"fields": []any{
			map[string]any{"consumer": map[string]any{
				"type": "foreign", "reference": "consumers", "eq": nil,
				"description": "Always null: mcp-relay cannot be scoped to a consumer, because it must see anonymous requests.",
			}},
			map[string]any{"protocols": map[string]any{
				"type": "set", "required": true, "default": slices.Clone(protocols),
				"elements":    map[string]any{"type": "string", "one_of": slices.Clone(protocols)},
				"description": "Protocols of the routes mcp-relay runs on: MCP Streamable HTTP is HTTP.",
			}},
			map[string]any{root.name: kongField(root)},
		},
	}
}

// kongField writes one descriptor with the attribute names of Kong's
// metaschema (kong/db/schema/metaschema.lua).
func kongField(f *field) map[string]any {
	m := map[string]any{"type": string(f.typ)}
	if f.doc != "" {
		m["description"] = f.doc
	}
	if f.required {
		m["required"] = true
	}
	if f.def != nil {
		m["default"] = cloneDefault(f.def)
	}
	if f.oneOf != nil {
		m["one_of"] = slices.Clone(f.oneOf)
	}
	if f.between != nil {
		m["between"] = []int{f.between[0], f.between[1]}
	}
	if f.typ == kString && f.allowEmpty {
		m["len_min"] = 0
	}
	if f.noControl {
		m["not_match"] = "%c" // Lua pattern: any control character
	}
	if f.match != nil {
		m["match"] = f.match.lua
		if f.match.length > 0 {
			m["len_eq"] = f.match.length
		}
	}
	if f.referenceable {
		m["referenceable"] = true
	}
	if f.encrypted {
		m["encrypted"] = true
	}
	if f.elements != nil {
		m["elements"] = kongField(f.elements)
	}
	if f.typ == kRecord {
		fields := make([]any, len(f.fields))
		for i, sub := range f.fields {
			fields[i] = map[string]any{sub.name: kongField(sub)}
		}
		m["fields"] = fields
	}
	if checks := kongChecks(f); len(checks) > 0 {
		m["entity_checks"] = checks
	}
	return m
}

// kongChecks writes a record's entity checks: its cross-field rules, and a
// conditional check for each member with a forbidden range.
func kongChecks(f *field) []any {
	var checks []any
	if f.typ != kRecord {
		return nil
	}
	for _, c := range f.checks {
		if c.mutuallyRequired != nil {
			checks = append(checks, map[string]any{"mutually_required": slices.Clone(c.mutuallyRequired)})
		}
		if c.exclusiveSets != nil {
			checks = append(checks, map[string]any{"mutually_exclusive_sets": map[string]any{
				"set1": slices.Clone(c.exclusiveSets[0]), "set2": slices.Clone(c.exclusiveSets[1]),
			}})
		}
		if c.whenSet != nil {
			checks = append(checks, whenSetCheck(*c.whenSet))
		}
	}
	for _, sub := range f.fields {
		if sub.notBetween != nil {
			checks = append(checks, notBetweenCheck(sub.name, *sub.notBetween))
		}
	}
	return checks
}

// notBetweenCheck expresses "outside lo..hi" in Kong's schema language, which
// has no such validator: Kong's `conditional` entity checker
// (kong/db/schema/init.lua Schema.entity_checkers.conditional) validates
// then_match only when if_match passes, so "if between lo and hi, then
// greater than hi" fails exactly inside the range (the `gt` validator,
// Schema.validators.gt). Kong then reports the field ("value must be greater
// than hi") and then_err, formatted with the field's name.
func notBetweenCheck(name string, r [2]int) map[string]any {
	return map[string]any{"conditional": map[string]any{
		"if_field":   name,
		"if_match":   map[string]any{"between": []int{r[0], r[1]}},
		"then_field": name,
		"then_match": map[string]any{"gt": r[1]},
		"then_err":   fmt.Sprintf("'%%s' must lie outside %d..%d", r[0], r[1]),
	}}
}

// whenSetCheck is a conditional entity check that runs then_match only while
// if_field is set: if_match requires a non-empty value (a null fails
// `required`, an empty string or array fails `len_min`), then_match is the
// `eq` validator (Schema.validators.eq). Kong reports the field ("value must
// be N") and then_err, formatted with the if_field's name.
func whenSetCheck(w condition) map[string]any {
	return map[string]any{"conditional": map[string]any{
		"if_field":   w.ifSet,
		"if_match":   map[string]any{"required": true, "len_min": 1},
		"then_field": w.then,
		"then_match": map[string]any{"eq": w.equals},
		"then_err":   fmt.Sprintf("'%s' must be %d when '%%s' is set: %s", w.then, w.equals, w.why),
	}}
}

// cloneDefault copies slice defaults so that callers cannot change the table.
func cloneDefault(d any) any {
	switch d := d.(type) {
	case []int:
		return slices.Clone(d)
	case []string:
		return slices.Clone(d)
	}
	return d
}

// The shape go-pdk's server prints for -dump (server/os.go serverInfo and
// server/rpc.go pluginInfo, whose ModTime and LoadTime are omitted when
// zero, as they always are there). Kong's plugin_servers/process.lua reads
// Protocol and Plugins[1].{Name, Priority, Version, Schema, Phases}.
type dumpServer struct {
	Protocol   string
	SocketPath string
	Plugins    []dumpPlugin
}

type dumpPlugin struct {
	Name     string
	Phases   []string
	Version  string
	Priority int
	Schema   map[string]any
}

// DumpInfo returns what `mcp-relay -dump` prints (the caller adds the final
// newline): go-pdk's dump, byte for byte in shape, with KongSchema instead
// of go-pdk's reflected schema. socketPath is <kong prefix>/<name>.socket.
func DumpInfo(name, version string, priority int, phases []string, socketPath string) ([]byte, error) {
	if phases == nil {
		phases = []string{} // go-pdk prints [] for a plugin without phases
	}
	info := dumpServer{
		Protocol:   "ProtoBuf:1",
		SocketPath: socketPath,
		Plugins: []dumpPlugin{{
			Name: name, Phases: phases, Version: version, Priority: priority,
			Schema: kongSchema(name),
		}},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(info); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
