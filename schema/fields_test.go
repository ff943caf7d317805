package schema

import (
	"flag"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// update rewrites the golden files and docs/configuration.md's configuration reference:
//
//	go test ./schema -update
var update = flag.Bool("update", false, "rewrite testdata/*.golden and the reference in ../docs/configuration.md")

// walk calls fn for every descriptor under f (f included) with its path.
func walk(path string, f *field, fn func(path string, f *field)) {
	fn(path, f)
	for _, sub := range f.fields {
		walk(path+"."+sub.name, sub, fn)
	}
	if f.elements != nil {
		walk(path+"[]", f.elements, fn)
	}
}

// TestFieldTableMatchesGoTypes checks, by reflection, that every field of the
// Go Config types has exactly one descriptor with the same JSON name and a
// compatible type, and that no descriptor lacks a Go field.
func TestFieldTableMatchesGoTypes(t *testing.T) {
	var check func(path string, f *field, typ reflect.Type)
	check = func(path string, f *field, typ reflect.Type) {
		want := map[kind]reflect.Kind{
			kString: reflect.String, kInteger: reflect.Int, kBoolean: reflect.Bool,
			kArray: reflect.Slice, kSet: reflect.Slice, kRecord: reflect.Struct,
		}[f.typ]
		if typ.Kind() != want {
			t.Errorf("%s: descriptor type %s, Go type %s", path, f.typ, typ)
			return
		}
		switch f.typ {
		case kArray, kSet:
			check(path+"[]", f.elements, typ.Elem())
		case kRecord:
			seen := map[string]int{}
			for _, sub := range f.fields {
				seen[sub.name]++
			}
			for name, n := range seen {
				if n > 1 {
					t.Errorf("%s: %d descriptors named %q", path, n, name)
				}
			}
			for i := range typ.NumField() {
				sf := typ.Field(i)
				name := jsonName(sf)
				if !sf.IsExported() || name == "-" {
					continue
				}
				if name == "" {
					t.Errorf("%s: Go field %s.%s has no json name", path, typ, sf.Name)
					continue
				}
				if seen[name] == 0 {
					t.Errorf("%s.%s: Go field %s.%s has no descriptor", path, name, typ, sf.Name)
				}
			}
			for _, sub := range f.fields {
				sf, ok := structField(typ, sub.name)
				if !ok {
					t.Errorf("%s.%s: descriptor has no Go field in %s", path, sub.name, typ)
					continue
				}
				check(path+"."+sub.name, sub, sf.Type)
			}
		}
	}
	check(root.name, root, reflect.TypeFor[Config]())
}

// TestDefaultsMatchTable decodes the defaults into Config and compares each
// Go value with what its descriptor says (zero value for "no default").
func TestDefaultsMatchTable(t *testing.T) {
	for name, c := range map[string]Config{
		"Defaults()":   Defaults(),
		"Parse({})":    mustParse(t, `{}`),
		"Parse(null)":  mustParse(t, `null`),
		"Parse(nulls)": mustParse(t, string(kongDefaultsJSON(t))),
	} {
		t.Run(name, func(t *testing.T) {
			var check func(path string, f *field, v reflect.Value)
			check = func(path string, f *field, v reflect.Value) {
				if f.typ == kRecord {
					for _, sub := range f.fields {
						check(path+"."+sub.name, sub, v.FieldByIndex(sub.index))
					}
					return
				}
				want := reflect.Zero(v.Type()).Interface()
				if f.def != nil {
					want = f.def
				}
				if !reflect.DeepEqual(v.Interface(), want) {
					t.Errorf("%s = %#v, descriptor default %#v", path, v.Interface(), want)
				}
			}
			check(root.name, root, reflect.ValueOf(c))
		})
	}
}

func TestDefaultsAreFresh(t *testing.T) {
	a := Defaults()
	a.Upstream.RewriteStatuses[0] = 999
	a.Upstream.BufferMethods[0] = "changed"
	b := Defaults()
	if b.Upstream.RewriteStatuses[0] != 401 || b.Upstream.BufferMethods[0] != "initialize" {
		t.Fatalf("Defaults shares slices between calls: %v %v", b.Upstream.RewriteStatuses, b.Upstream.BufferMethods)
	}
}

// TestFieldTableRules checks the conventions the table relies on.
func TestFieldTableRules(t *testing.T) {
	walk(root.name, root, func(path string, f *field) {
		isElement := strings.HasSuffix(path, "[]")
		if !isElement {
			if n := len(f.doc); n < 10 || n > 500 {
				t.Errorf("%s: doc is %d characters; Kong's description takes 10 to 500", path, n)
			}
			if f.doc != "" && !strings.HasSuffix(f.doc, ".") {
				t.Errorf("%s: doc is not a full sentence: %q", path, f.doc)
			}
			if f.doc != strings.TrimSpace(f.doc) || strings.Contains(f.doc, "  ") {
				t.Errorf("%s: doc has stray spaces: %q", path, f.doc)
			}
		}
		if f.typ == kRecord && !f.required {
			t.Errorf("%s: records must be required so that Kong fills in their defaults", path)
		}
		if f.def != nil && !f.required {
			t.Errorf("%s: a setting with a default must be required (Kong then always holds a value)", path)
		}
		if isElement && !f.required {
			t.Errorf("%s: array elements must be required (Kong requires them)", path)
		}
		if f.typ == kSet && f.elements.typ != kString && f.elements.typ != kInteger {
			t.Errorf("%s: set members must be strings or integers (dedupe compares them)", path)
		}
		if (f.oneOf != nil || f.allowEmpty || f.noControl || f.referenceable || f.encrypted) && f.typ != kString {
			t.Errorf("%s: string attribute on a %s", path, f.typ)
		}
		if (f.between != nil || f.notBetween != nil) && f.typ != kInteger {
			t.Errorf("%s: between on a %s", path, f.typ)
		}
		if b := f.between; b != nil && b[0] > b[1] {
			t.Errorf("%s: between %d..%d is empty", path, b[0], b[1])
		}
		if (f.elements != nil) != (f.typ == kArray || f.typ == kSet) {
			t.Errorf("%s: elements must be given exactly for arrays and sets", path)
		}
		if (f.fields != nil) != (f.typ == kRecord) {
			t.Errorf("%s: fields must be given exactly for records", path)
		}
		for _, c := range f.checks {
			names := slices.Clone(c.mutuallyRequired)
			if c.exclusiveSets != nil {
				names = append(names, c.exclusiveSets[0]...)
				names = append(names, c.exclusiveSets[1]...)
			}
			if w := c.whenSet; w != nil {
				names = append(names, w.ifSet)
				i := slices.IndexFunc(f.fields, func(s *field) bool { return s.name == w.then })
				if i < 0 || f.fields[i].typ != kInteger {
					t.Errorf("%s: whenSet names %q, not an integer field", path, w.then)
				} else if d, ok := f.fields[i].def.(int); ok && d != w.equals {
					t.Errorf("%s: %s's default %d breaks its own whenSet rule", path, w.then, d)
				}
				if w.why == "" {
					t.Errorf("%s: whenSet on %s says no reason", path, w.then)
				}
				names = append(names, w.then) // counted with ifSet: two fields
			}
			if len(names) < 2 {
				t.Errorf("%s: check names fewer than two fields", path)
			}
			for _, n := range names {
				if w := c.whenSet; w != nil && n == w.then {
					continue // checked above
				}
				i := slices.IndexFunc(f.fields, func(s *field) bool { return s.name == n })
				if i < 0 {
					t.Errorf("%s: check names unknown field %q", path, n)
					continue
				}
				// "set" means not "" and not empty, the same in Go and in Kong,
				// only for strings and arrays (0 and false are set in Kong).
				if s := f.fields[i]; s.typ != kString && s.typ != kArray && s.typ != kSet || s.def != nil {
					t.Errorf("%s: check field %q must be a string or array without default", path, n)
				}
			}
		}
	})
}

func mustParse(t testing.TB, js string) Config {
	t.Helper()
	c, err := Parse([]byte(js))
	if err != nil {
		t.Fatalf("Parse(%s): %v", js, err)
	}
	return c
}
