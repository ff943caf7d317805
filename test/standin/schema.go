package standin

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
)

// This file is a small but real copy of what Kong's schema library
// (kong/db/schema/init.lua) does to a plugin's configuration in the Admin
// API and the declarative loader: process_auto_fields("insert") fills in
// defaults (records recursively, nulls for the rest), validate checks types
// and the common validators, and process_auto_fields("select") is what the
// plugins iterator later reads (nulls removed). Values are what a YAML or JSON
// decoder produces: map[string]any, []any, string, int64, float64, bool and
// nil (JSON null).

// FieldError is one validation error; Path names the field, as Kong's
// flattened errors do ("config.session.store").
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// SchemaErrors are all the errors of one entity.
type SchemaErrors []FieldError

func (e SchemaErrors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// Validation error messages of validation_errors (kong/db/schema/init.lua).
const (
	errArray            = "expected an array"
	errSet              = "expected a set"
	errMap              = "expected a map"
	errRecord           = "expected a record"
	errString           = "expected a string"
	errNumber           = "expected a number"
	errBoolean          = "expected a boolean"
	errInteger          = "expected an integer"
	errRequired         = "required field missing"
	errUnknown          = "unknown field"
	errEq               = "value must be %s"
	errNe               = "value must not be %s"
	errGt               = "value must be greater than %s"
	errBetween          = "value should be between %d and %d"
	errLenEq            = "length must be %d"
	errLenMin           = "length must be at least %d"
	errLenMax           = "length must be at most %d"
	errMatch            = "invalid value: %s"
	errStartsWith       = "should start with: %s"
	errOneOf            = "expected one of: %s"
	errNotOneOf         = "must not be one of: %s"
	errUUID             = "expected a valid UUID"
	errAtLeastOneOf     = "at least one of these fields must be non-empty: %s"
	errOnlyOneOf        = "exactly one of these fields must be non-empty: %s"
	errMutuallyRequired = "all or none of these fields must be set: %s"
	errMutuallyExcl     = "only one or none of these fields must be set: %s"
	errMutuallyExclSets = "these sets are mutually exclusive: %s"
	errConditional      = "failed conditional validation given value of field '%s'"
)

type schemaField struct {
	name string
	def  map[string]any
}

// recordFields returns the ordered fields of a record (or schema) definition.
func recordFields(def map[string]any) []schemaField {
	raw, _ := def["fields"].([]any)
	out := make([]schemaField, 0, len(raw))
	for _, item := range raw {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		for name, d := range m {
			dm, _ := d.(map[string]any)
			if dm == nil {
				dm = map[string]any{}
			}
			out = append(out, schemaField{name: name, def: dm})
		}
	}
	return out
}

func fieldType(def map[string]any) string { s, _ := def["type"].(string); return s }
func fieldBool(def map[string]any, k string) bool {
	b, _ := def[k].(bool)
	return b
}

// deepCopy copies a decoded JSON/YAML value.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}

// normalizeValue turns YAML's and JSON's number types into int64/float64 and
// map[any]any into map[string]any.
func normalizeValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeValue(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = normalizeValue(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = normalizeValue(e)
		}
		return v
	case int:
		return int64(v)
	case int32:
		return int64(v)
	case uint64:
		return int64(v)
	case float32:
		return float64(v)
	}
	return v
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int64:
		return float64(v), true
	case int:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// handleMissing is handle_missing_field: the default (a copy), else null
// when the field is not required; a required record without default is
// expanded from {}; a required field otherwise stays absent (and fails
// validation).
func handleMissing(def map[string]any) (any, bool) {
	if d, ok := def["default"]; ok && d != nil {
		return deepCopy(d), true
	}
	if fieldBool(def, "nilable") {
		return nil, false
	}
	if !fieldBool(def, "required") {
		return nil, true // null
	}
	if fieldType(def) == "record" {
		return processAutoFieldsInsert(def, map[string]any{}), true
	}
	return nil, false
}

// processAutoFieldsInsert is process_auto_fields(data, "insert") for a record.
func processAutoFieldsInsert(def map[string]any, data map[string]any) map[string]any {
	out := make(map[string]any, len(data))
	for k, v := range data {
		out[k] = v
	}
	for _, f := range recordFields(def) {
		v, present := out[f.name]
		v, present = adjustField(f.def, v, present)
		if present {
			out[f.name] = v
		} else {
			delete(out, f.name)
		}
	}
	return out
}

// adjustField is adjust_field_for_context(field, value, "insert").
func adjustField(def map[string]any, v any, present bool) (any, bool) {
	if fieldBool(def, "abstract") {
		return v, present
	}
	switch fieldType(def) {
	case "record":
		// should_recurse_record: value ~= null and (value ~= nil or required)
		if (present && v != nil) || (!present && fieldBool(def, "required")) {
			if !present {
				v, present = handleMissing(def)
			}
			if m, ok := v.(map[string]any); ok {
				return processAutoFieldsInsert(def, m), true
			}
		}
	case "array", "set":
		if s, ok := v.([]any); ok {
			if fieldType(def) == "set" {
				s = dedupe(s)
			}
			if el, ok := def["elements"].(map[string]any); ok {
				for i, e := range s {
					s[i], _ = adjustField(el, e, true)
				}
			}
			v = s
		}
	case "map":
		if m, ok := v.(map[string]any); ok {
			if vals, ok := def["values"].(map[string]any); ok {
				for k, e := range m {
					m[k], _ = adjustField(vals, e, true)
				}
			}
		}
	}
	if !present {
		return handleMissing(def)
	}
	return v, true
}

// dedupe is make_set: duplicates dropped, first occurrence kept.
func dedupe(s []any) []any {
	out := make([]any, 0, len(s))
	seen := map[string]bool{}
	for _, e := range s {
		k := fmt.Sprintf("%T:%v", e, e)
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

// removeNulls is what process_auto_fields(data, "select") without nulls does
// to a stored record: null fields are dropped, recursively through records.
func removeNulls(def map[string]any, data map[string]any) map[string]any {
	for _, f := range recordFields(def) {
		v, ok := data[f.name]
		if !ok {
			continue
		}
		if v == nil {
			delete(data, f.name)
			continue
		}
		if fieldType(f.def) == "string" {
			if s, ok := v.(string); ok && s == "" && lenMin(f.def) > 0 {
				delete(data, f.name)
				continue
			}
		}
		if fieldType(f.def) == "record" {
			if m, ok := v.(map[string]any); ok {
				data[f.name] = removeNulls(f.def, m)
			}
		}
	}
	return data
}

func lenMin(def map[string]any) int64 {
	if f, ok := toFloat(def["len_min"]); ok {
		return int64(f)
	}
	return 1 // kong/db/schema/init.lua: strings default to len_min = 1
}

type validator struct {
	errs *SchemaErrors
}

func (v *validator) add(path, msg string) {
	*v.errs = append(*v.errs, FieldError{Path: path, Message: msg})
}

func joinPath(base, name string) string {
	if base == "" {
		return name
	}
	return base + "." + name
}

// validateRecord is Schema:validate for a record definition: unknown fields,
// required fields, each field's validators, then the entity checks.
func (v *validator) validateRecord(def map[string]any, data map[string]any, path string) {
	fields := recordFields(def)
	known := map[string]bool{}
	for _, f := range fields {
		known[f.name] = true
	}
	var unknown []string
	for k := range data {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		v.add(joinPath(path, k), errUnknown)
	}
	for _, f := range fields {
		val, present := data[f.name]
		p := joinPath(path, f.name)
		if !present || val == nil {
			if fieldBool(f.def, "required") {
				v.add(p, errRequired)
			}
			continue
		}
		v.validateField(f.def, val, p)
	}
	if checks, ok := def["entity_checks"].([]any); ok {
		for _, c := range checks {
			if cm, ok := c.(map[string]any); ok {
				v.entityCheck(cm, data, path)
			}
		}
	}
}

func (v *validator) validateField(def map[string]any, val any, path string) {
	switch fieldType(def) {
	case "string":
		s, ok := val.(string)
		if !ok {
			v.add(path, errString)
			return
		}
		if fieldBool(def, "referenceable") && strings.HasPrefix(s, "{vault://") {
			return
		}
	case "integer":
		f, ok := toFloat(val)
		if !ok || f != math.Floor(f) || math.IsInf(f, 0) {
			v.add(path, errInteger)
			return
		}
	case "number":
		if _, ok := toFloat(val); !ok {
			v.add(path, errNumber)
			return
		}
	case "boolean":
		if _, ok := val.(bool); !ok {
			v.add(path, errBoolean)
			return
		}
	case "array", "set":
		s, ok := val.([]any)
		if !ok {
			if m, isMap := val.(map[string]any); isMap && len(m) == 0 {
				s = []any{} // an empty JSON object is an empty Lua table
			} else if fieldType(def) == "set" {
				v.add(path, errSet)
				return
			} else {
				v.add(path, errArray)
				return
			}
		}
		if el, ok := def["elements"].(map[string]any); ok {
			for i, e := range s {
				ep := fmt.Sprintf("%s[%d]", path, i+1)
				if e == nil {
					v.add(ep, errRequired)
					continue
				}
				v.validateField(el, e, ep)
			}
		}
	case "map":
		m, ok := val.(map[string]any)
		if !ok {
			v.add(path, errMap)
			return
		}
		keys, _ := def["keys"].(map[string]any)
		vals, _ := def["values"].(map[string]any)
		for k, e := range m {
			if keys != nil {
				v.validateField(keys, k, joinPath(path, k))
			}
			if vals != nil && e != nil {
				v.validateField(vals, e, joinPath(path, k))
			}
		}
	case "record":
		m, ok := val.(map[string]any)
		if !ok {
			v.add(path, errRecord)
			return
		}
		v.validateRecord(def, processAutoFieldsInsert(def, m), path)
		return
	}
	if msg := runValidators(def, val); msg != "" {
		v.add(path, msg)
	}
}

func luaString(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return v
	case float64:
		if v == math.Floor(v) && math.Abs(v) < 1e15 {
			return fmt.Sprintf("%d", int64(v))
		}
		return fmt.Sprintf("%.14g", v)
	}
	return fmt.Sprint(v)
}

func listStrings(l any) []string {
	raw, _ := l.([]any)
	out := make([]string, len(raw))
	for i, e := range raw {
		out[i] = luaString(e)
	}
	return out
}

func valueLen(val any) (int, bool) {
	switch val := val.(type) {
	case string:
		return len(val), true
	case []any:
		return len(val), true
	case map[string]any:
		return len(val), true
	}
	return 0, false
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// runValidators runs the validators a field declares, in
// Schema.validators_order, and returns the first failure.
func runValidators(def map[string]any, val any) string {
	eqVal := func(a, b any) bool {
		fa, oka := toFloat(a)
		fb, okb := toFloat(b)
		if oka && okb {
			return fa == fb
		}
		return fmt.Sprint(a) == fmt.Sprint(b)
	}
	if e, ok := def["eq"]; ok {
		if e == nil || !eqVal(val, e) {
			return fmt.Sprintf(errEq, luaString(e))
		}
	}
	if e, ok := def["ne"]; ok && eqVal(val, e) {
		return fmt.Sprintf(errNe, luaString(e))
	}
	if l, ok := def["not_one_of"]; ok {
		for _, e := range l.([]any) {
			if eqVal(val, e) {
				return fmt.Sprintf(errNotOneOf, strings.Join(listStrings(l), ", "))
			}
		}
	}
	if l, ok := def["one_of"].([]any); ok {
		found := false
		for _, e := range l {
			if eqVal(val, e) {
				found = true
			}
		}
		if !found {
			return fmt.Sprintf(errOneOf, strings.Join(listStrings(l), ", "))
		}
	}
	if g, ok := toFloat(def["gt"]); ok {
		if f, ok := toFloat(val); ok && !(f > g) {
			return fmt.Sprintf(errGt, luaString(g))
		}
	}
	if fieldBool(def, "uuid") {
		if s, ok := val.(string); !ok || !uuidRe.MatchString(s) {
			return errUUID
		}
	}
	if b, ok := def["between"].([]any); ok && len(b) == 2 {
		lo, _ := toFloat(b[0])
		hi, _ := toFloat(b[1])
		if f, ok := toFloat(val); ok && (f < lo || f > hi) {
			return fmt.Sprintf(errBetween, int64(lo), int64(hi))
		}
	}
	n, hasLen := valueLen(val)
	if hasLen {
		if e, ok := toFloat(def["len_eq"]); ok && float64(n) != e {
			return fmt.Sprintf(errLenEq, int64(e))
		}
		minLen := int64(-1)
		if fieldType(def) == "string" {
			minLen = lenMin(def)
		} else if e, ok := toFloat(def["len_min"]); ok {
			minLen = int64(e)
		}
		if minLen >= 0 && int64(n) < minLen {
			return fmt.Sprintf(errLenMin, minLen)
		}
		if e, ok := toFloat(def["len_max"]); ok && float64(n) > e {
			return fmt.Sprintf(errLenMax, int64(e))
		}
	}
	if s, ok := val.(string); ok {
		if p, ok := def["starts_with"].(string); ok && !strings.HasPrefix(s, p) {
			return fmt.Sprintf(errStartsWith, p)
		}
		if p, ok := def["not_match"].(string); ok {
			if re := luaPattern(p); re != nil && re.MatchString(s) {
				return fmt.Sprintf(errMatch, s)
			}
		}
		if p, ok := def["match"].(string); ok {
			if re := luaPattern(p); re != nil && !re.MatchString(s) {
				return fmt.Sprintf(errMatch, s)
			}
		}
	}
	return ""
}

// isNonempty is is_nonempty of kong/db/schema/init.lua.
func isNonempty(v any, present bool) bool {
	if !present || v == nil {
		return false
	}
	switch v := v.(type) {
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

func (v *validator) entityCheck(c map[string]any, data map[string]any, path string) {
	ep := joinPath(path, "@entity")
	for name, arg := range c {
		switch name {
		case "at_least_one_of":
			fs := listStrings(arg)
			ok := false
			for _, f := range fs {
				val, present := data[f]
				ok = ok || isNonempty(val, present)
			}
			if !ok {
				v.add(ep, fmt.Sprintf(errAtLeastOneOf, strings.Join(fs, ", ")))
			}
		case "only_one_of":
			fs := listStrings(arg)
			n := 0
			for _, f := range fs {
				val, present := data[f]
				if isNonempty(val, present) {
					n++
				}
			}
			if n != 1 {
				v.add(ep, fmt.Sprintf(errOnlyOneOf, strings.Join(fs, ", ")))
			}
		case "mutually_required":
			fs := listStrings(arg)
			n := 0
			for _, f := range fs {
				val, present := data[f]
				if isNonempty(val, present) {
					n++
				}
			}
			if n != 0 && n != len(fs) {
				v.add(ep, fmt.Sprintf(errMutuallyRequired, strings.Join(fs, ", ")))
			}
		case "mutually_exclusive":
			fs := listStrings(arg)
			n := 0
			for _, f := range fs {
				val, present := data[f]
				if isNonempty(val, present) {
					n++
				}
			}
			if n > 1 {
				v.add(ep, fmt.Sprintf(errMutuallyExcl, strings.Join(fs, ", ")))
			}
		case "mutually_exclusive_sets":
			m, _ := arg.(map[string]any)
			s1, s2 := listStrings(m["set1"]), listStrings(m["set2"])
			any1, any2 := false, false
			for _, f := range s1 {
				val, present := data[f]
				any1 = any1 || isNonempty(val, present)
			}
			for _, f := range s2 {
				val, present := data[f]
				any2 = any2 || isNonempty(val, present)
			}
			if any1 && any2 {
				v.add(ep, fmt.Sprintf(errMutuallyExclSets, strings.Join(append(s1, s2...), ", ")))
			}
		case "conditional":
			m, _ := arg.(map[string]any)
			ifField, _ := m["if_field"].(string)
			thenField, _ := m["then_field"].(string)
			ifMatch, _ := m["if_match"].(map[string]any)
			thenMatch, _ := m["then_match"].(map[string]any)
			iv, ipresent := data[ifField]
			if !conditionMatches(ifMatch, iv, ipresent) {
				continue
			}
			tv, tpresent := data[thenField]
			if !conditionMatches(thenMatch, tv, tpresent) {
				v.add(joinPath(path, thenField), fmt.Sprintf(errConditional, ifField))
			}
		}
	}
}

// conditionMatches evaluates an if_match/then_match table of a conditional
// entity check (the validators of the field schema, and `required`).
func conditionMatches(match map[string]any, val any, present bool) bool {
	if match == nil {
		return true
	}
	if fieldBool(match, "required") && (!present || val == nil) {
		return false
	}
	if !present || val == nil {
		if e, ok := match["eq"]; ok {
			return e == nil
		}
		return !fieldBool(match, "required")
	}
	return runValidators(match, val) == ""
}

// processPluginConfig is what Kong does to a plugin entity's configuration
// before storing it: process_auto_fields("insert") with the dumped schema,
// then validate, then the "select" view (nulls removed) that the plugins
// iterator reads. The top-level config record is always expanded, as Kong
// does for a plugin created without config.
func processPluginConfig(schema map[string]any, config map[string]any) (map[string]any, error) {
	var cdef map[string]any
	for _, f := range recordFields(schema) {
		if f.name == "config" {
			cdef = f.def
		}
	}
	if cdef == nil {
		return nil, SchemaErrors{{Path: "config", Message: "plugin schema has no config field"}}
	}
	if config == nil {
		config = map[string]any{}
	}
	config = normalizeValue(deepCopy(config)).(map[string]any)
	processed := processAutoFieldsInsert(cdef, config)
	var errs SchemaErrors
	v := &validator{errs: &errs}
	v.validateRecord(cdef, processed, "config")
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Path < errs[j].Path })
		return nil, errs
	}
	return removeNulls(cdef, processed), nil
}

// pluginTopField returns a top-level field definition of a plugin schema
// (protocols, consumer, route, service).
func pluginTopField(schema map[string]any, name string) map[string]any {
	for _, f := range recordFields(schema) {
		if f.name == name {
			return f.def
		}
	}
	return nil
}
