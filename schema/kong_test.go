package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./schema -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output; if the change is intended, run go test ./schema -update\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestDumpGolden pins the exact bytes `mcp-relay -dump` prints.
func TestDumpGolden(t *testing.T) {
	out, err := DumpInfo("mcp-relay", "0.1.0", 1000, []string{"access", "response"}, "/usr/local/kong/mcp-relay.socket")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "dump.golden", append(out, '\n'))
}

// TestKongSchemaGolden keeps an indented copy of the Kong schema, so that a
// change to the table shows as a readable diff in review.
func TestKongSchemaGolden(t *testing.T) {
	out, err := json.MarshalIndent(KongSchema(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kong-schema.golden", append(out, '\n'))
}

// TestDumpShape checks the shape go-pdk v0.11.2 prints (server/os.go
// serverInfo, server/rpc.go pluginInfo): the keys, their order, compact JSON.
func TestDumpShape(t *testing.T) {
	out, err := DumpInfo("x", "1.2.3", 7, nil, "/p/x.socket")
	if err != nil {
		t.Fatal(err)
	}
	prefix := `{"Protocol":"ProtoBuf:1","SocketPath":"/p/x.socket","Plugins":[{"Name":"x","Phases":[],"Version":"1.2.3","Priority":7,"Schema":{`
	if !bytes.HasPrefix(out, []byte(prefix)) {
		t.Errorf("dump starts with\n%.200s\nwant\n%s", out, prefix)
	}
	if bytes.ContainsAny(out, "\n\t") || !json.Valid(out) {
		t.Errorf("dump is not one line of valid JSON")
	}
	var info struct {
		Plugins []struct{ Schema map[string]any }
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if got := info.Plugins[0].Schema["name"]; got != "x" {
		t.Errorf("schema name = %v, want the plugin name", got)
	}
}

// kongJSON returns the Kong schema as Kong sees it: decoded from JSON.
func kongJSON(t testing.TB) map[string]any {
	t.Helper()
	b, err := json.Marshal(KongSchema())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// kongConfigField returns the `config` record of the Kong schema.
func kongConfigField(t testing.TB) map[string]any {
	c := kongFieldAt(kongJSON(t), "config")
	if c == nil {
		t.Fatal("no config field")
	}
	return c
}

// kongFieldAt follows names down the fields of a decoded Kong schema.
func kongFieldAt(s map[string]any, names ...string) map[string]any {
	for _, name := range names {
		var next map[string]any
		list, _ := s["fields"].([]any)
		for _, item := range list {
			if f, ok := item.(map[string]any)[name]; ok {
				next, _ = f.(map[string]any)
			}
		}
		if next == nil {
			return nil
		}
		s = next
	}
	return s
}

// ---- A checker of the Kong schema subset mcp-relay emits ----
//
// Written from Kong 3.9.3's kong/db/schema/metaschema.lua (MetaSubSchema,
// field_schema, validators, attribute_types, required_attributes),
// kong/db/schema/init.lua (Schema.new_subschema, compatible_fields) and
// kong/db/schema/entities/plugins.lua (the fields a plugin subschema may
// specialize).

// kongFieldAttributes are the attribute names metaschema.lua's field_schema
// accepts (the plain attributes, the validators, and the recursive ones).
var kongFieldAttributes = set(
	// field_schema
	"type", "required", "reference", "description", "examples", "auto", "unique",
	"unique_across_ws", "on_delete", "default", "abstract", "generate_admin_api",
	"immutable", "err", "encrypted", "referenceable", "json_schema", "transient", "deprecation",
	// validators
	"between", "eq", "ne", "gt", "len_eq", "len_min", "len_max", "match", "not_match",
	"match_all", "match_none", "match_any", "starts_with", "one_of", "not_one_of", "contains",
	"is_regex", "timestamp", "uuid", "custom_validator", "mutually_exclusive_subsets",
	// recursive
	"elements", "keys", "values", "fields", "entity_checks", "shorthand_fields",
)

// kongLuaPatterns are the Lua patterns the schema uses, each as the Go
// regular expression Lua's string.find matches the same strings with.
var kongLuaPatterns = map[string]*regexp.Regexp{
	"^sha256:%x+$": regexp.MustCompile(`^sha256:[0-9A-Fa-f]+$`),
}

// kongTypes are Schema.valid_types, minus function (not expressible in JSON).
var kongTypes = set("array", "set", "string", "number", "boolean", "integer", "foreign", "map", "record", "json")

// kongRequiredAttributes is metaschema.lua's required_attributes.
var kongRequiredAttributes = map[string][]string{
	"array": {"elements"}, "set": {"elements"}, "map": {"keys", "values"},
	"record": {"fields"}, "json": {"json_schema"},
}

// kongAttributeTypes is metaschema.lua's attribute_types: attributes only
// some types may carry.
var kongAttributeTypes = map[string]map[string]bool{
	"between":          set("integer", "number"),
	"len_eq":           set("array", "set", "string", "map"),
	"match":            set("string"),
	"one_of":           set("string", "number", "integer"),
	"contains":         set("array", "set"),
	"is_regex":         set("string"),
	"timestamp":        set("number", "integer"),
	"uuid":             set("string"),
	"unique":           set("string", "number", "integer", "foreign"),
	"unique_across_ws": set("string", "number", "integer", "foreign"),
	"abstract":         set("string", "number", "integer", "record", "array", "set", "map"),
	"json_schema":      set("json"),
	"transient":        set("string", "number", "integer", "array", "set", "boolean"),
}

// kongEntityCheckers are the entity checkers of Schema.entity_checkers.
var kongEntityCheckers = set("at_least_one_of", "conditional_at_least_one_of", "only_one_of",
	"distinct", "conditional", "custom_entity_check", "mutually_required",
	"mutually_exclusive", "mutually_exclusive_sets")

// kongPluginFields are the fields of Kong's plugins entity, with their types:
// a plugin subschema may only specialize these, keeping the type.
var kongPluginFields = map[string]string{
	"id": "string", "name": "string", "instance_name": "string", "created_at": "integer",
	"updated_at": "integer", "route": "foreign", "service": "foreign", "consumer": "foreign",
	"config": "record", "protocols": "set", "enabled": "boolean", "tags": "set",
}

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// checkKongSchema returns every problem Kong's metaschema would report.
func checkKongSchema(s map[string]any) []string {
	var errs []string
	bad := func(path, format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	for k := range s {
		if !set("name", "fields", "entity_checks", "shorthand_fields", "transformations")[k] {
			bad("schema", "attribute %q is not in MetaSubSchema", k)
		}
	}
	if name, _ := s["name"].(string); name == "" {
		bad("schema", "name must be a non-empty string")
	}
	fields, ok := s["fields"].([]any)
	if !ok {
		bad("schema", "fields must be an array")
		return errs
	}
	var checkField func(path string, f map[string]any)
	checkFields := func(path string, list any) []string {
		items, ok := list.([]any)
		if !ok {
			bad(path, "fields must be an array")
			return nil
		}
		var names []string
		for _, item := range items {
			m, ok := item.(map[string]any)
			if !ok || len(m) != 1 {
				bad(path, "each entry in fields must be a table with one key (got %v)", item)
				continue
			}
			for name, def := range m {
				names = append(names, name)
				d, ok := def.(map[string]any)
				if !ok {
					bad(path+"."+name, "must be a table")
					continue
				}
				checkField(path+"."+name, d)
			}
		}
		return names
	}
	checkField = func(path string, f map[string]any) {
		typ, _ := f["type"].(string)
		if !kongTypes[typ] {
			bad(path, "type %q is not one of Kong's types", f["type"])
			return
		}
		for attr := range f {
			if !kongFieldAttributes[attr] {
				bad(path, "attribute %q is not in Kong's metaschema", attr)
			}
			if allowed, ok := kongAttributeTypes[attr]; ok && !allowed[typ] {
				bad(path, "field of type '%s' cannot have attribute '%s'", typ, attr)
			}
		}
		for _, req := range kongRequiredAttributes[typ] {
			if _, ok := f[req]; !ok {
				bad(path, "field of type '%s' must declare '%s'", typ, req)
			}
		}
		for _, attr := range []string{"required", "encrypted", "referenceable", "unique", "auto", "immutable"} {
			if v, ok := f[attr]; ok {
				if _, isBool := v.(bool); !isBool {
					bad(path, "%s must be a boolean", attr)
				}
			}
		}
		if v, ok := f["description"]; ok {
			if d, _ := v.(string); len(d) < 10 || len(d) > 500 {
				bad(path, "description must be a string of 10 to 500 characters (got %d)", len(d))
			}
		}
		if v, ok := f["between"]; ok {
			b, _ := v.([]any)
			if len(b) != 2 || !isNumber(b[0]) || !isNumber(b[1]) {
				bad(path, "between must be two numbers (got %v)", v)
			}
		}
		if v, ok := f["one_of"]; ok {
			if _, isArray := v.([]any); !isArray {
				bad(path, "one_of must be an array")
			}
		}
		if v, ok := f["len_min"]; ok {
			if n, isNum := v.(float64); !isNum || n != math.Trunc(n) {
				bad(path, "len_min must be an integer")
			}
		}
		for _, attr := range []string{"not_match", "match", "reference"} {
			if v, ok := f[attr]; ok {
				if _, isString := v.(string); !isString {
					bad(path, "%s must be a string", attr)
				}
			}
		}
		if typ == "foreign" {
			if r, _ := f["reference"].(string); r == "" {
				bad(path, "foreign field needs a reference")
			}
		}
		if e, ok := f["elements"]; ok {
			if em, isMap := e.(map[string]any); isMap {
				checkField(path+"[]", em)
			} else {
				bad(path, "'elements' must be a table")
			}
		}
		var names []string
		if list, ok := f["fields"]; ok {
			names = checkFields(path, list)
		}
		if v, ok := f["entity_checks"]; ok {
			checks, _ := v.([]any)
			for i, c := range checks {
				cm, _ := c.(map[string]any)
				if len(cm) != 1 {
					bad(path, "entity check %d must have exactly one checker", i)
					continue
				}
				for name, arg := range cm {
					if !kongEntityCheckers[name] {
						bad(path, "unknown entity checker %q", name)
					}
					for _, n := range entityCheckNames(arg) {
						if !slices.Contains(names, n) {
							bad(path, "entity check %s names unknown field %q", name, n)
						}
					}
				}
			}
		}
		// metaschema: default = { type = "self" }: the default must pass the
		// field's own validation.
		if d, ok := f["default"]; ok {
			for _, e := range kongValidate(path, f, d) {
				bad(path, "default is invalid: %s", e)
			}
		}
	}
	names := checkFields("schema", fields)
	for _, item := range fields {
		for name, def := range item.(map[string]any) {
			want, ok := kongPluginFields[name]
			if !ok {
				bad("schema."+name, "cannot create a new field (not a field of Kong's plugins entity)")
				continue
			}
			if got, _ := def.(map[string]any)["type"].(string); got != want {
				bad("schema."+name, "cannot change type in a specialized field (%s, Kong has %s)", got, want)
			}
		}
	}
	if !slices.Contains(names, "config") {
		bad("schema", "no config field")
	}
	return errs
}

func isNumber(v any) bool { _, ok := v.(float64); return ok }

// entityCheckNames lists the field names an entity check argument mentions.
func entityCheckNames(arg any) []string {
	var out []string
	switch a := arg.(type) {
	case []any:
		for _, n := range a {
			s, _ := n.(string)
			out = append(out, s)
		}
	case map[string]any:
		for _, k := range []string{"set1", "set2"} {
			out = append(out, entityCheckNames(a[k])...)
		}
		for _, k := range []string{"if_field", "then_field"} { // conditional
			if s, ok := a[k].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// kongConditionalAttributes are the attributes metaschema.lua's entity
// checker table allows a conditional check (if_match and then_match hold
// conditional_validators: required, the validators, elements, keys, values).
var kongConditionalAttributes = set("if_field", "if_match", "then_field", "then_match", "then_err")

// kongConditional is Schema.entity_checkers.conditional (Kong 3.9
// kong/db/schema/init.lua): if_match and then_match are validated as field
// definitions whose missing attributes come from the named field's own
// definition (setmetatable __index); then_match runs only when if_match
// passes; a failure is reported on then_field and, with then_err, as an
// entity error formatted with if_field.
func kongConditional(path string, arg map[string]any, defs map[string]map[string]any, m map[string]any) []string {
	var errs []string
	for k := range arg {
		if !kongConditionalAttributes[k] {
			errs = append(errs, fmt.Sprintf("%s: conditional has unknown attribute %q", path, k))
		}
	}
	ifField, _ := arg["if_field"].(string)
	thenField, _ := arg["then_field"].(string)
	inherit := func(match any, field string) map[string]any {
		def := map[string]any{}
		for k, v := range defs[field] {
			def[k] = v
		}
		for k, v := range match.(map[string]any) {
			def[k] = v
		}
		return def
	}
	ifValue, present := m[ifField]
	if !present { // run_with_missing_fields = false: required if_field missing
		return append(errs, fmt.Sprintf("%s.%s: field required for entity check", path, ifField))
	}
	if len(kongValidate(path+"."+ifField, inherit(arg["if_match"], ifField), ifValue)) > 0 {
		return errs
	}
	thenErrs := kongValidate(path+"."+thenField, inherit(arg["then_match"], thenField), m[thenField])
	if len(thenErrs) == 0 {
		return errs
	}
	errs = append(errs, thenErrs...)
	if e, ok := arg["then_err"].(string); ok {
		errs = append(errs, path+": "+strings.Replace(e, "%s", ifField, 1))
	} else {
		errs = append(errs, fmt.Sprintf("%s: failed conditional validation given value of field '%s'", path, ifField))
	}
	return errs
}

// ---- A simulation of how Kong processes and validates a plugin config ----

// kongFill applies Kong's defaults the way Schema:process_auto_fields does on
// insert (adjust_field_for_context, handle_missing_field): a missing field
// gets its default; else a required record is built from its fields'
// defaults; else it becomes null. Present nulls stay null; sets lose their
// duplicates.
func kongFill(f map[string]any, v any, present bool) any {
	v = asLuaTable(f, v)
	if !present {
		if d, ok := f["default"]; ok {
			return d
		}
		if f["type"] == "record" && f["required"] == true {
			v, present = map[string]any{}, true
		} else {
			return nil
		}
	}
	switch f["type"] {
	case "record":
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		out := map[string]any{}
		for k, x := range m {
			out[k] = x
		}
		for _, item := range f["fields"].([]any) {
			for name, def := range item.(map[string]any) {
				x, ok := m[name]
				out[name] = kongFill(def.(map[string]any), x, ok)
			}
		}
		return out
	case "array", "set":
		items, ok := v.([]any)
		elemField, hasElems := f["elements"].(map[string]any)
		if !ok || !hasElems {
			return v
		}
		var out []any
		for _, x := range items {
			x = kongFill(elemField, x, true)
			if f["type"] == "set" && slices.ContainsFunc(out, func(y any) bool { return reflect.DeepEqual(x, y) }) {
				continue
			}
			out = append(out, x)
		}
		if out == nil {
			out = []any{}
		}
		return out
	}
	return v
}

// kongValidate validates v against field f as Schema:validate_field does,
// for the attributes mcp-relay emits. It returns Kong-like messages.
func kongValidate(path string, f map[string]any, v any) []string {
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	v = asLuaTable(f, v)
	if v == nil {
		if eq, ok := f["eq"]; ok && eq != nil {
			bad("value must be %v", eq) // Schema.validate_field, before required
		} else if f["required"] == true {
			bad("required field missing")
		}
		return errs
	}
	if eq, ok := f["eq"]; ok && eq == nil {
		bad("value must be null")
		return errs
	}
	switch f["type"] {
	case "string":
		s, ok := v.(string)
		if !ok {
			bad("%s", kongTypeErrors["string"])
			return errs
		}
		if n, ok := f["len_eq"].(float64); ok && float64(len(s)) != n {
			bad("length must be %d", int64(n)) // Schema.validators.len_eq; the first failing validator wins
			return errs
		}
		lenMin := 1.0 // Kong's default for strings
		if n, ok := f["len_min"].(float64); ok {
			lenMin = n
		}
		if float64(len(s)) < lenMin {
			bad("length must be at least %d", int64(lenMin))
		}
		if oneOf, ok := f["one_of"].([]any); ok && !slices.Contains(oneOf, any(s)) {
			bad("expected one of: %s", luaConcat(oneOf))
		}
		if p, ok := f["not_match"].(string); ok {
			if p != "%c" {
				bad("the test does not know the Lua pattern %q", p)
			} else if strings.IndexFunc(s, isControl) >= 0 {
				bad("invalid value: %s", s)
			}
		}
		if p, ok := f["match"].(string); ok {
			re, known := kongLuaPatterns[p]
			if !known {
				bad("the test does not know the Lua pattern %q", p)
			} else if !re.MatchString(s) {
				bad("invalid value: %s", s) // Schema.validators.match
			}
		}
	case "integer", "number":
		n, ok := v.(float64)
		if !ok || (f["type"] == "integer" && n != math.Trunc(n)) {
			bad("%s", kongTypeErrors[f["type"].(string)])
			return errs
		}
		if b, ok := f["between"].([]any); ok && (n < b[0].(float64) || n > b[1].(float64)) {
			bad("value should be between %d and %d", int64(b[0].(float64)), int64(b[1].(float64)))
		}
		if oneOf, ok := f["one_of"].([]any); ok && !slices.Contains(oneOf, any(n)) {
			bad("expected one of: %s", luaConcat(oneOf))
		}
		if gt, ok := f["gt"].(float64); ok && !(n > gt) {
			bad("value must be greater than %v", gt) // Schema.validators.gt
		}
		if eq, ok := f["eq"].(float64); ok && n != eq {
			bad("value must be %v", eq) // Schema.validators.eq
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("%s", kongTypeErrors["boolean"])
		}
	case "array", "set":
		items, ok := v.([]any)
		if !ok {
			bad("%s", kongTypeErrors[f["type"].(string)])
			return errs
		}
		if n, ok := f["len_min"].(float64); ok && float64(len(items)) < n {
			bad("length must be at least %d", int64(n)) // Schema.validators.len_min
		}
		elemField, ok := f["elements"].(map[string]any)
		if !ok {
			// Kong's validate_elements indexes field.elements and raises;
			// the metaschema's default check (a "self" field) catches that.
			bad("error in schema prevents from validating this field")
			return errs
		}
		elem := map[string]any{}
		for k, x := range elemField {
			elem[k] = x
		}
		elem["required"] = true // validate_elements
		for i, x := range items {
			errs = append(errs, kongValidate(fmt.Sprintf("%s[%d]", path, i), elem, x)...)
		}
	case "record":
		m, ok := v.(map[string]any)
		if !ok {
			bad("%s", kongTypeErrors["record"])
			return errs
		}
		known := map[string]bool{}
		for _, item := range f["fields"].([]any) {
			for name, def := range item.(map[string]any) {
				known[name] = true
				errs = append(errs, kongValidate(path+"."+name, def.(map[string]any), m[name])...)
			}
		}
		for k := range m {
			if !known[k] {
				errs = append(errs, path+"."+k+": unknown field")
			}
		}
		defs := map[string]map[string]any{}
		for _, item := range f["fields"].([]any) {
			for name, def := range item.(map[string]any) {
				defs[name] = def.(map[string]any)
			}
		}
		checks, _ := f["entity_checks"].([]any)
		for _, c := range checks {
			for name, arg := range c.(map[string]any) {
				// run_entity_check: not run when one of its fields has errors.
				invalid := slices.ContainsFunc(entityCheckNames(arg), func(n string) bool {
					return slices.ContainsFunc(errs, func(e string) bool {
						return strings.HasPrefix(e, path+"."+n+": ") || strings.HasPrefix(e, path+"."+n+".") || strings.HasPrefix(e, path+"."+n+"[")
					})
				})
				if !invalid {
					errs = append(errs, kongEntityCheck(path, name, arg, m, defs)...)
				}
			}
		}
	case "foreign":
	default:
		bad("the test does not know type %v", f["type"])
	}
	sort.Strings(errs)
	return errs
}

// kongTypeErrors are validation_errors' type messages (kong/db/schema/init.lua).
var kongTypeErrors = map[string]string{
	"array": "expected an array", "set": "expected a set", "record": "expected a record",
	"string": "expected a string", "number": "expected a number", "boolean": "expected a boolean",
	"integer": "expected an integer",
}

// asLuaTable gives v the shape Kong sees after decoding JSON into a Lua
// table, where an object and an array are both a table: an array where a
// record is expected is a record keyed 1..n ([] is {}), and an empty object
// where an array or set is expected is an empty sequence.
func asLuaTable(f map[string]any, v any) any {
	switch f["type"] {
	case "record":
		if items, ok := v.([]any); ok {
			m := make(map[string]any, len(items))
			for i, x := range items {
				m[strconv.Itoa(i+1)] = x
			}
			return m
		}
	case "array", "set":
		if m, ok := v.(map[string]any); ok && len(m) == 0 {
			return []any{}
		}
	}
	return v
}

// luaString is tostring(v) for the JSON values a schema holds: Lua prints
// numbers with "%.14g" (67108864, not 6.7108864e+07).
func luaString(v any) string {
	if n, ok := v.(float64); ok {
		return fmt.Sprintf("%.14g", n)
	}
	return fmt.Sprint(v)
}

// luaConcat is table.concat(list, ", ").
func luaConcat(list []any) string {
	parts := make([]string, len(list))
	for i, x := range list {
		parts[i] = luaString(x)
	}
	return strings.Join(parts, ", ")
}

// quotedList is init.lua's quoted_list: 'a', 'b'.
func quotedList(names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = "'" + n + "'"
	}
	return strings.Join(parts, ", ")
}

// kongNonempty is Kong's is_nonempty.
func kongNonempty(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// kongEntityCheck runs one of Schema.entity_checkers over record m, with
// validation_errors' messages (mutually_required names every field of the
// check, mutually_exclusive_sets only the non-empty ones of each set).
func kongEntityCheck(path, name string, arg any, m map[string]any, fieldDefs map[string]map[string]any) []string {
	nonempty := func(names []any) (out []string) {
		for _, x := range names {
			if kongNonempty(m[x.(string)]) {
				out = append(out, x.(string))
			}
		}
		return out
	}
	switch name {
	case "mutually_required":
		names := arg.([]any)
		if n := len(nonempty(names)); n != 0 && n != len(names) {
			all := make([]string, len(names))
			for i, x := range names {
				all[i] = x.(string)
			}
			return []string{fmt.Sprintf("%s: all or none of these fields must be set: %s", path, quotedList(all))}
		}
	case "mutually_exclusive_sets":
		a := arg.(map[string]any)
		n1, n2 := nonempty(a["set1"].([]any)), nonempty(a["set2"].([]any))
		if len(n1) > 0 && len(n2) > 0 {
			return []string{fmt.Sprintf("%s: these sets are mutually exclusive: (%s), (%s)", path, quotedList(n1), quotedList(n2))}
		}
	case "conditional":
		return kongConditional(path, arg.(map[string]any), fieldDefs, m)
	default:
		return []string{path + ": the test does not know entity checker " + name}
	}
	return nil
}

// kongSends simulates what Kong sends the plugin for a user's config: its
// defaults filled in, plus Kong's own keys.
func kongSends(t testing.TB, userConfig string) (sent []byte, kongErrs []string) {
	t.Helper()
	var user any
	if err := json.Unmarshal([]byte(userConfig), &user); err != nil {
		t.Fatalf("bad test config %s: %v", userConfig, err)
	}
	cf := kongConfigField(t)
	filled := kongFill(cf, user, true)
	kongErrs = kongValidate("config", cf, filled)
	if m, ok := filled.(map[string]any); ok {
		m["__key__"] = "plugins:mcp-relay:7f0e3b8e-0000-4000-8000-000000000001::::ws"
		m["__seq__"] = 3
		m["__plugin_id__"] = "4f7bc8a2-0000-4000-8000-000000000002"
	}
	sent, err := json.Marshal(filled)
	if err != nil {
		t.Fatal(err)
	}
	return sent, kongErrs
}

// kongDefaultsJSON is what Kong sends for `config: {}`: every default, and
// null for every optional field.
func kongDefaultsJSON(t testing.TB) []byte {
	sent, errs := kongSends(t, `{}`)
	if len(errs) > 0 {
		t.Fatalf("Kong would reject its own defaults: %v", errs)
	}
	return sent
}

// TestKongSchemaIsValid runs the metaschema checker over the emitted schema.
func TestKongSchemaIsValid(t *testing.T) {
	for _, e := range checkKongSchema(kongJSON(t)) {
		t.Error(e)
	}
}

// TestKongSchemaChecker makes sure the checker catches what it is for.
func TestKongSchemaChecker(t *testing.T) {
	base := func() map[string]any { return kongJSON(t) }
	envelope := func(s map[string]any) map[string]any { return kongFieldAt(s, "config", "envelope", "status") }
	tests := []struct {
		name   string
		mutate func(s map[string]any)
		want   string
	}{
		{"unknown attribute", func(s map[string]any) { envelope(s)["nilable"] = true }, `attribute "nilable" is not in Kong's metaschema`},
		{"unknown type", func(s map[string]any) { envelope(s)["type"] = "text" }, `type "text" is not one of Kong's types`},
		{"between on a string", func(s map[string]any) { envelope(s)["between"] = []any{1.0, 2.0} }, `cannot have attribute 'between'`},
		{"invalid default", func(s map[string]any) { envelope(s)["default"] = "301" }, `default is invalid`},
		{"empty string default", func(s map[string]any) { envelope(s)["default"] = ""; delete(envelope(s), "one_of") }, `length must be at least 1`},
		{"short description", func(s map[string]any) { envelope(s)["description"] = "short" }, `description must be a string of 10 to 500`},
		{"new top-level field", func(s map[string]any) {
			s["fields"] = append(s["fields"].([]any), map[string]any{"extra": map[string]any{"type": "string"}})
		}, `cannot create a new field`},
		{"top-level attribute", func(s map[string]any) { s["nilable"] = true }, `not in MetaSubSchema`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.mutate(s)
			errs := checkKongSchema(s)
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.want) }) {
				t.Errorf("checker missed %q; it said %v", tt.want, errs)
			}
		})
	}
}

// TestKongDefaultsParse: what Kong sends for an empty config parses to
// Defaults (nulls mean default, Kong's own keys are ignored).
func TestKongDefaultsParse(t *testing.T) {
	sent := kongDefaultsJSON(t)
	if !bytes.Contains(sent, []byte(`"anonymous":null`)) || !bytes.Contains(sent, []byte(`"__seq__"`)) {
		t.Fatalf("the simulation does not send nulls and Kong's keys: %s", sent)
	}
	c, err := Parse(sent)
	if err != nil {
		t.Fatalf("Parse(%s): %v", sent, err)
	}
	if !reflect.DeepEqual(c, Defaults()) {
		t.Errorf("Parse(Kong's defaults) = %+v\nwant %+v", c, Defaults())
	}
}

// TestKongModelMessages: the simulated Kong answers as Kong 3.9.1 does
// (kong/db/schema/init.lua validation_errors, quoted_list, the entity
// checkers; a JSON array and object are both a Lua table): each config's
// exact errors, none for a config Kong accepts.
func TestKongModelMessages(t *testing.T) {
	sentinel := `"sentinel_master":"m","sentinel_nodes":[{"host":"h","port":26379}]`
	tests := []struct {
		name, config string
		want         []string
	}{
		{"empty array is an empty record", `[]`, nil},
		{"array as the config record", `[1]`, []string{"config.1: unknown field"}},
		{"empty object is an empty set", `{"upstream":{"rewrite_statuses":{}}}`, nil},
		{"one_of of strings", `{"envelope":{"status":"x"}}`, []string{"config.envelope.status: expected one of: auto, keep, 200"}},
		{"one_of of another field", `{"session":{"store":"disk"}}`, []string{"config.session.store: expected one of: memory, redis, off"}},
		{"between prints integers", `{"envelope":{"max_body_bytes":1}}`, []string{"config.envelope.max_body_bytes: value should be between 1024 and 67108864"}},
		{"between of set elements", `{"upstream":{"rewrite_statuses":[401,200]}}`, []string{"config.upstream.rewrite_statuses[1]: value should be between 400 and 599"}},
		{"not a set", `{"upstream":{"rewrite_statuses":"401"}}`, []string{"config.upstream.rewrite_statuses: expected a set"}},
		{"not an array", `{"session":{"redis":{"cluster_nodes":"a"}}}`, []string{"config.session.redis.cluster_nodes: expected an array"}},
		{"not an integer", `{"session":{"ttl":1.5}}`, []string{"config.session.ttl: expected an integer"}},
		{"not a boolean", `{"session":{"bind_consumer":"yes"}}`, []string{"config.session.bind_consumer: expected a boolean"}},
		{"not a string", `{"auth":{"anonymous":7}}`, []string{"config.auth.anonymous: expected a string"}},
		{"not a record", `{"auth":"x"}`, []string{"config.auth: expected a record"}},
		{"empty string", `{"auth":{"anonymous":""}}`, []string{"config.auth.anonymous: length must be at least 1"}},
		{"not_match shows the value", `{"upstream":{"host_header":"a\u0001b"}}`, []string{"config.upstream.host_header: invalid value: a\u0001b"}},
		{"digest of another length", `{"tools":{"pin":{"approved":[{"name":"x","digest":"sha256:abc"}]}}}`,
			[]string{"config.tools.pin.approved[0].digest: length must be 71"}},
		{"digest not matching", `{"tools":{"pin":{"approved":[{"name":"x","digest":"sha256:` + strings.Repeat("g", 64) + `"}]}}}`,
			[]string{"config.tools.pin.approved[0].digest: invalid value: sha256:" + strings.Repeat("g", 64)}},
		{"digest upper case", `{"tools":{"pin":{"approved":[{"name":"x","digest":"sha256:` + strings.Repeat("A", 64) + `"}]}}}`, nil},
		{"unknown field", `{"envelope":{"colour":"red"}}`, []string{"config.envelope.colour: unknown field"}},
		{"required field null", `{"envelope":{"status":null}}`, []string{"config.envelope.status: required field missing"}},
		{"mutually_required names every field", `{"session":{"redis":{"sentinel_master":"m"}}}`,
			[]string{"config.session.redis: all or none of these fields must be set: 'sentinel_master', 'sentinel_nodes'"}},
		{"mutually_exclusive_sets names the non-empty fields", `{"session":{"redis":{"cluster_nodes":[{"ip":"a","port":1}],` + sentinel + `}}}`,
			[]string{"config.session.redis: these sets are mutually exclusive: ('cluster_nodes'), ('sentinel_master', 'sentinel_nodes')"}},
		{"cluster has only database 0", `{"session":{"redis":{"database":1,"cluster_nodes":[{"ip":"a","port":1}]}}}`,
			[]string{"config.session.redis.database: value must be 0",
				"config.session.redis: 'database' must be 0 when 'cluster_nodes' is set: Redis Cluster has only database 0"}},
		{"no cluster rule without cluster nodes", `{"session":{"redis":{"database":1,"cluster_nodes":[]}}}`, nil},
		{"no entity check over an invalid field", `{"session":{"redis":{"sentinel_master":5}}}`,
			[]string{"config.session.redis.sentinel_master: expected a string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := kongSends(t, tt.config)
			if !slices.Equal(errs, tt.want) {
				t.Errorf("Kong's errors\n%q\nwant\n%q", errs, tt.want)
			}
		})
	}
	t.Run("empty array sends the defaults", func(t *testing.T) {
		if sent, _ := kongSends(t, `[]`); !bytes.Equal(sent, kongDefaultsJSON(t)) {
			t.Errorf("Kong sends for []:\n%s\nfor {}:\n%s", sent, kongDefaultsJSON(t))
		}
	})
	t.Run("number", func(t *testing.T) {
		want := []string{"x: expected a number"}
		if errs := kongValidate("x", map[string]any{"type": "number"}, "1"); !slices.Equal(errs, want) {
			t.Errorf("%q, want %q", errs, want)
		}
	})
}

// TestKongModelSetWithoutElements: a set or array field without elements
// is a schema error, as Kong's metaschema reports it (required_attributes;
// its default, a "self" field, cannot be validated), not a panic.
func TestKongModelSetWithoutElements(t *testing.T) {
	for _, typ := range []string{"set", "array"} {
		t.Run(typ, func(t *testing.T) {
			s := kongJSON(t)
			protocols := kongFieldAt(s, "protocols")
			protocols["type"] = typ
			delete(protocols, "elements")
			errs := checkKongSchema(s)
			for _, want := range []string{
				"schema.protocols: field of type '" + typ + "' must declare 'elements'",
				"schema.protocols: default is invalid: schema.protocols: error in schema prevents from validating this field",
			} {
				if !slices.Contains(errs, want) {
					t.Errorf("checker said %q, want %q among them", errs, want)
				}
			}
			f := map[string]any{"type": typ}
			if got := kongFill(f, []any{1.0}, true); !reflect.DeepEqual(got, []any{1.0}) {
				t.Errorf("kongFill = %v, want the value as it is", got)
			}
			want := []string{"x: error in schema prevents from validating this field"}
			if errs := kongValidate("x", f, []any{1.0}); !slices.Equal(errs, want) {
				t.Errorf("kongValidate = %q, want %q", errs, want)
			}
		})
	}
}

// JSON-RPC and MCP reserve -32768..-32000: Kong itself must refuse a
// modern_auth_code in that range (the conditional entity check), at both
// edges, and accept the codes just outside.
func TestKongRejectsReservedModernAuthCode(t *testing.T) {
	for _, code := range []int{-32768, -32001, -32000} {
		_, errs := kongSends(t, fmt.Sprintf(`{"envelope":{"modern_auth_code":%d}}`, code))
		want := []string{
			"config.envelope.modern_auth_code: value must be greater than -32000",
			"config.envelope: 'modern_auth_code' must lie outside -32768..-32000",
		}
		for _, w := range want {
			if !slices.Contains(errs, w) {
				t.Errorf("code %d: Kong's errors %q lack %q", code, errs, w)
			}
		}
	}
	for _, code := range []int{-32769, -31999, -31001, 0, minInt32, maxInt32} {
		if _, errs := kongSends(t, fmt.Sprintf(`{"envelope":{"modern_auth_code":%d}}`, code)); len(errs) > 0 {
			t.Errorf("code %d: Kong rejects it: %v", code, errs)
		}
	}
}

// TestPatternsAgree: a pattern field accepts in Go exactly what Kong accepts
// with its Lua pattern and length (as the test's Kong model reads them).
func TestPatternsAgree(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	samples := []string{
		"sha256:" + hex, "sha256:" + strings.ToUpper(hex), "sha256:" + hex[:63], "sha256:" + hex + "0",
		"sha256:" + hex[:63] + "g", "SHA256:" + hex, "sha512:" + hex, " sha256:" + hex[:63], "sha256:" + hex[:63] + "\n",
		"sha256:", "", "sha256:" + strings.Repeat("z", 64),
	}
	walk(root.name, root, func(path string, f *field) {
		if f.match == nil {
			return
		}
		re, known := kongLuaPatterns[f.match.lua]
		if !known {
			t.Fatalf("%s: the test does not know the Lua pattern %q", path, f.match.lua)
		}
		for _, s := range samples {
			kong := re.MatchString(s) && (f.match.length == 0 || len(s) == f.match.length)
			if goes := f.match.re.MatchString(s); goes != kong {
				t.Errorf("%s: %q: Go accepts %v, Kong %v", path, s, goes, kong)
			}
		}
	})
}
