package schema

import (
	"fmt"
	"strconv"
	"strings"
)

// MarkdownReference renders the configuration reference of docs/configuration.md: one
// table per record (field path, type, default, allowed values, meaning),
// from the same field table as the defaults, validation and Kong schema.
// docs/configuration.md holds it between the lines `<!-- config:begin -->` and
// `<!-- config:end -->`; `go test ./schema -update` rewrites it there.
func MarkdownReference() string {
	var b strings.Builder
	b.WriteString("<!-- generated from schema/fields.go by `go test ./schema -update`: edit the field table, not this section -->\n\n")
	b.WriteString("Kong fills in every default, so a plugin entry needs only the fields that differ. " +
		"\"unset\" means the field has no default (null in Kong). " +
		"Kong checks everything below before it sends a configuration to the plugin. " +
		"A configuration that reaches the plugin invalid all the same (one stored before a plugin upgrade: " +
		"Kong checks plugin configuration when it is written, not when it is read) starts an instance " +
		"that answers every request with a 500 naming the fields (reason `config_invalid`) " +
		"and logs the error once, at error level.\n")
	markdownRecord(&b, root.name, root)
	b.WriteString("\n") // a blank line ends the last table before the end marker
	return b.String()
}

func markdownRecord(b *strings.Builder, path string, f *field) {
	fmt.Fprintf(b, "\n### `%s`\n\n%s\n\n", path, cell(f.doc))
	b.WriteString("| Field | Type | Default | Allowed values | Description |\n")
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	for _, sub := range f.fields {
		p := path + "." + sub.name
		fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s |\n",
			p, typeName(sub), defaultText(sub), cell(allowedText(p, sub)), cell(sub.doc))
	}
	for _, c := range f.checks {
		if names := c.mutuallyRequired; names != nil {
			fmt.Fprintf(b, "\nRule: %s are set together or not at all.\n", codeList(names, " and "))
		}
		if sets := c.exclusiveSets; sets != nil {
			fmt.Fprintf(b, "\nRule: %s cannot be combined with %s.\n", codeList(sets[0], ", "), codeList(sets[1], ", "))
		}
		if w := c.whenSet; w != nil {
			fmt.Fprintf(b, "\nRule: `%s` must be %d when `%s` is set (%s).\n", w.then, w.equals, w.ifSet, w.why)
		}
	}
	for _, sub := range f.fields {
		p := path + "." + sub.name
		switch {
		case sub.typ == kRecord:
			markdownRecord(b, p, sub)
		case sub.elements != nil && sub.elements.typ == kRecord:
			e := *sub.elements
			e.doc = "Each element of `" + p + "`."
			markdownRecord(b, p+"[]", &e)
		}
	}
}

func typeName(f *field) string {
	switch f.typ {
	case kArray, kSet:
		noun := map[kind]string{kArray: "array", kSet: "set"}[f.typ]
		return noun + " of " + string(f.elements.typ) + "s"
	}
	return string(f.typ)
}

func defaultText(f *field) string {
	switch d := f.def.(type) {
	case nil:
		if f.typ == kRecord {
			return "per field"
		}
		return "unset"
	case string:
		return "`" + strconv.Quote(d) + "`"
	case []string:
		return "`[" + quoteAll(d) + "]`"
	case []int:
		s := make([]string, len(d))
		for i, n := range d {
			s[i] = strconv.Itoa(n)
		}
		return "`[" + strings.Join(s, ", ") + "]`"
	default:
		return fmt.Sprintf("`%v`", d)
	}
}

// allowedText describes what Validate and Kong accept for f.
func allowedText(path string, f *field) string {
	var parts []string
	switch f.typ {
	case kRecord:
		return "see `" + path + "`"
	case kArray, kSet:
		if f.elements.typ == kRecord {
			return "see `" + path + "[]`"
		}
		if a := allowedText(path+"[]", f.elements); a != "" {
			return "each " + a
		}
		return "any"
	case kBoolean:
		return "`true`, `false`"
	case kString:
		switch {
		case f.oneOf != nil:
			parts = append(parts, codeList(quoteEach(f.oneOf), ", "))
		case f.allowEmpty:
			parts = append(parts, "any")
		default:
			parts = append(parts, "non-empty") // Kong's len_min 1; unset is null
		}
		if f.noControl {
			parts = append(parts, "no control characters")
		}
		if f.match != nil {
			parts = append(parts, f.match.what)
		}
		if f.referenceable {
			parts = append(parts, "or a vault reference")
		}
	case kInteger:
		if b := f.between; b != nil {
			parts = append(parts, fmt.Sprintf("%d to %d", b[0], b[1]))
		}
		if b := f.notBetween; b != nil {
			parts = append(parts, fmt.Sprintf("outside %d to %d", b[0], b[1]))
		}
	}
	return strings.Join(parts, ", ")
}

func quoteEach(list []string) []string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return q
}

func codeList(list []string, sep string) string {
	c := make([]string, len(list))
	for i, s := range list {
		c[i] = "`" + s + "`"
	}
	return strings.Join(c, sep)
}

// cell keeps text inside one Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
