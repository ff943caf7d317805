package schema

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Defaults returns the configuration with every default applied: what an
// instance configured with `config: {}` runs with. Each call returns fresh
// slices, so callers may modify the result.
func Defaults() Config {
	var c Config
	setDefaults(root, reflect.ValueOf(&c).Elem())
	return c
}

// setDefaults stores f's default (or, for a record, its members' defaults)
// in v.
func setDefaults(f *field, v reflect.Value) {
	switch {
	case f.typ == kRecord:
		for _, sub := range f.fields {
			setDefaults(sub, v.FieldByIndex(sub.index))
		}
	case f.def != nil:
		d := reflect.ValueOf(f.def)
		if d.Kind() == reflect.Slice { // never share the table's slices
			c := reflect.MakeSlice(d.Type(), d.Len(), d.Len())
			reflect.Copy(c, d)
			d = c
		}
		v.Set(d)
	}
}

// Parse turns the configuration JSON Kong sends into a Config: it applies
// the defaults, decodes data over them and validates the result.
//
// Kong sends every field of the schema, with null for those that are not
// set: null (like a missing field) means the default, or unset for fields
// that have none. Fields Parse does not know, such as Kong's __key__, __seq__
// and __plugin_id__, are ignored. The error, an Errors value, lists every
// problem found, each naming its field path (config.session.redis.port).
func Parse(data []byte) (Config, error) {
	c := Defaults()
	var errs Errors
	decode(&errs, root.name, root, data, reflect.ValueOf(&c).Elem())
	// Report the other problems too, but not again those of values that
	// failed to decode (they hold their defaults or zero values).
	var more Errors
	validate(&more, root.name, root, reflect.ValueOf(&c).Elem())
	for _, e := range more {
		if !errs.covers(e.Path) {
			errs = append(errs, e)
		}
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int {
		return slices.Compare(fieldOrder(a.Path), fieldOrder(b.Path))
	})
	if len(errs) > 0 {
		return Config{}, errs
	}
	dedupe(root, reflect.ValueOf(&c).Elem())
	return c, nil
}

// dedupe drops repeated members of sets, keeping the first, as Kong does.
// It runs after validation so that error paths count JSON array indexes.
func dedupe(f *field, v reflect.Value) {
	switch f.typ {
	case kRecord:
		for _, sub := range f.fields {
			dedupe(sub, v.FieldByIndex(sub.index))
		}
	case kSet:
		seen := map[any]bool{}
		out := v.Slice(0, 0)
		for i := range v.Len() {
			e := v.Index(i).Interface() // set members are strings or integers
			if !seen[e] {
				seen[e] = true
				out = reflect.Append(out, v.Index(i))
			}
		}
		v.Set(out)
	}
}

// decode stores raw, a JSON value that is not null, in v according to f.
// Type mismatches are reported on errs and leave v unchanged.
func decode(errs *Errors, path string, f *field, raw []byte, v reflect.Value) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		errs.add(path, "must be a JSON value (got nothing)")
		return
	}
	if isNull(raw) {
		return
	}
	switch f.typ {
	case kString:
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			errs.add(path, "must be a string (got %s)", shortJSON(raw))
			return
		}
		v.SetString(s)

	case kInteger:
		n, ok := parseInt(raw)
		if !ok {
			if f.between != nil {
				errs.add(path, "must be an integer between %d and %d (got %s)", f.between[0], f.between[1], shortJSON(raw))
			} else {
				errs.add(path, "must be an integer (got %s)", shortJSON(raw))
			}
			return
		}
		v.SetInt(n)

	case kBoolean:
		switch string(raw) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			errs.add(path, "must be true or false (got %s)", shortJSON(raw))
		}

	case kArray, kSet:
		var items []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			errs.add(path, "must be an array (got %s)", shortJSON(raw))
			return
		}
		out := reflect.MakeSlice(v.Type(), 0, len(items))
		for i, item := range items {
			ipath := path + "[" + strconv.Itoa(i) + "]"
			if isNull(bytes.TrimSpace(item)) {
				errs.add(ipath, "must not be null")
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			setDefaults(f.elements, e)
			decode(errs, ipath, f.elements, item, e) // on error e is kept: its error is reported
			out = reflect.Append(out, e)
		}
		v.Set(out)

	case kRecord:
		var members map[string]json.RawMessage
		if raw[0] != '{' {
			errs.add(path, "must be an object (got %s)", shortJSON(raw))
			return
		}
		if err := json.Unmarshal(raw, &members); err != nil {
			errs.add(path, "is not valid JSON: %v", err)
			return
		}
		for _, sub := range f.fields {
			if m, ok := members[sub.name]; ok {
				decode(errs, path+"."+sub.name, sub, m, v.FieldByIndex(sub.index))
			}
		}
	}
}

// parseInt accepts a JSON number with an integral value that fits an int:
// 3600, -32001, and also 3600.0 or 1e6, which some encoders write.
func parseInt(raw []byte) (int64, bool) {
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false
	}
	if !json.Valid(raw) {
		return 0, false
	}
	s := string(raw)
	if n, err := strconv.ParseInt(s, 10, strconv.IntSize); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// fieldOrder turns a path into the positions of its steps in the table
// (array indexes as they are), so that errors sort in the table's order.
func fieldOrder(path string) []int {
	var order []int
	f := root
	rest := strings.TrimPrefix(path, root.name)
	for rest != "" {
		switch rest[0] {
		case '.':
			name := rest[1:]
			if i := strings.IndexAny(name, ".["); i >= 0 {
				name = name[:i]
			}
			rest = rest[1+len(name):]
			i := slices.IndexFunc(f.fields, func(s *field) bool { return s.name == name })
			if i < 0 {
				return order
			}
			order, f = append(order, i), f.fields[i]
		case '[':
			end := strings.IndexByte(rest, ']')
			n, err := strconv.Atoi(rest[1:max(end, 1)])
			if end < 0 || err != nil || f.elements == nil {
				return order
			}
			rest = rest[end+1:]
			order, f = append(order, n), f.elements
		default:
			return order
		}
	}
	return order
}

// covers reports whether path is, or lies inside, the path of one of e.
func (e Errors) covers(path string) bool {
	for _, fe := range e {
		p := fe.Path
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

func isNull(raw []byte) bool { return string(raw) == "null" }

// shortJSON quotes an offending JSON value in an error message, cut short
// so that a huge value cannot flood Kong's log.
func shortJSON(raw []byte) string {
	const limit = 40
	if len(raw) <= limit {
		return string(raw)
	}
	cut := raw[:limit]
	// Do not split a UTF-8 sequence: drop an incomplete last one.
	for i := len(cut) - 1; i >= 0 && i >= len(cut)-utf8.UTFMax; i-- {
		if utf8.RuneStart(cut[i]) {
			if !utf8.FullRune(cut[i:]) {
				cut = cut[:i]
			}
			break
		}
	}
	return string(cut) + "..."
}
