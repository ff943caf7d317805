package schema

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one invalid setting.
type FieldError struct {
	// Path names the setting as Kong users write it, from config down:
	// "config.session.redis.port", "config.upstream.rewrite_statuses[2]"
	// (array indexes count from 0).
	Path string
	// Msg says what is wrong and what is allowed, in lower case:
	// `must be one of "auto", "keep", "200" (got "301")`.
	Msg string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// Errors is every problem found in one configuration, in the order of the
// fields. Parse and Validate return it (as error) when it is not empty.
type Errors []*FieldError

func (e Errors) Error() string {
	msgs := make([]string, len(e))
	for i, fe := range e {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap lets errors.As find each *FieldError.
func (e Errors) Unwrap() []error {
	out := make([]error, len(e))
	for i, fe := range e {
		out[i] = fe
	}
	return out
}

func (e *Errors) add(path, format string, args ...any) {
	*e = append(*e, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Validate checks every setting against its allowed values and the rules
// across settings. It returns nil or an Errors value. Empty strings and nil
// slices are how Go spells "unset": they are valid for settings that have no
// default. Parse calls Validate; call it yourself for a Config built in Go.
func (c Config) Validate() error {
	var errs Errors
	validate(&errs, root.name, root, reflect.ValueOf(c))
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func validate(errs *Errors, path string, f *field, v reflect.Value) {
	switch f.typ {
	case kString:
		s := v.String()
		if s == "" {
			if f.required && !f.allowEmpty {
				errs.add(path, "must not be empty")
			}
			return
		}
		if f.oneOf != nil && !slices.Contains(f.oneOf, s) {
			errs.add(path, "must be one of %s (got %q)", quoteAll(f.oneOf), s)
		}
		if f.noControl && strings.IndexFunc(s, isControl) >= 0 {
			errs.add(path, "must not contain control characters (got %q)", s)
		}
		if m := f.match; m != nil && !m.re.MatchString(s) {
			errs.add(path, "must be %s (got %q)", m.what, s)
		}

	case kInteger:
		n := int(v.Int())
		if b := f.between; b != nil && (n < b[0] || n > b[1]) {
			errs.add(path, "must be between %d and %d (got %d)", b[0], b[1], n)
		}
		if b := f.notBetween; b != nil && n >= b[0] && n <= b[1] {
			errs.add(path, "must be outside %d..%d (got %d)", b[0], b[1], n)
		}

	case kBoolean:

	case kArray, kSet:
		for i := range v.Len() {
			validate(errs, path+"["+strconv.Itoa(i)+"]", f.elements, v.Index(i))
		}

	case kRecord:
		for _, sub := range f.fields {
			validate(errs, path+"."+sub.name, sub, v.FieldByIndex(sub.index))
		}
		for _, c := range f.checks {
			c.validate(errs, path, f, v)
		}
	}
}

// validate applies the check to record v, described by f.
func (c check) validate(errs *Errors, path string, f *field, v reflect.Value) {
	isSet := func(name string) bool {
		for _, sub := range f.fields {
			if sub.name == name {
				// Checks only name strings and arrays (a test makes sure):
				// set means not "" and not empty, as in Kong.
				return v.FieldByIndex(sub.index).Len() > 0
			}
		}
		return false
	}
	if names := c.mutuallyRequired; names != nil {
		var set, unset []string
		for _, n := range names {
			if isSet(n) {
				set = append(set, n)
			} else {
				unset = append(unset, n)
			}
		}
		if len(set) > 0 {
			for _, n := range unset {
				errs.add(path+"."+n, "must be set when %s is set", strings.Join(set, " and "))
			}
		}
	}
	if sets := c.exclusiveSets; sets != nil {
		var in1, in2 []string
		for _, n := range sets[0] {
			if isSet(n) {
				in1 = append(in1, n)
			}
		}
		for _, n := range sets[1] {
			if isSet(n) {
				in2 = append(in2, n)
			}
		}
		if len(in1) > 0 && len(in2) > 0 {
			errs.add(path+"."+in1[0], "cannot be combined with %s", strings.Join(in2, " and "))
		}
	}
	if w := c.whenSet; w != nil && isSet(w.ifSet) {
		for _, sub := range f.fields {
			if sub.name != w.then {
				continue
			}
			if n := int(v.FieldByIndex(sub.index).Int()); n != w.equals {
				errs.add(path+"."+w.then, "must be %d when %s is set: %s (got %d)", w.equals, w.ifSet, w.why, n)
			}
		}
	}
}

// isControl matches what Lua's %c pattern class matches: ASCII control
// characters.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// quoteAll renders allowed values as `"a", "b", "c"`.
func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
