package toolpin

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

// The examples of RFC 8785 (sections 3.2.2, 3.2.3 and appendix B).
func TestCanonicalRFC8785(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"the RFC's example", `{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{"sorting by UTF-16 code units", `{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh",` +
			`"1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\"," +
				"\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{"nested objects sort too", `{ "b" : [ { "z":1, "a":2 } ], "a" : {} }`, `{"a":{},"b":[{"a":2,"z":1}]}`},
		{"controls", `"\u0000\u001f\b\t\n\f\r\u007f"`, `"\u0000\u001f\b\t\n\f\r` + "\x7f" + `"`},
		{"U+2028 stays literal", `"\u2028"`, "\"\u2028\""},
		{"empty", ` [ ] `, `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendCanonical(nil, []byte(tt.in))
			if err != nil || string(got) != tt.want {
				t.Errorf("AppendCanonical = %s, %v\nwant %s", got, err, tt.want)
			}
		})
	}
}

// Appendix B of RFC 8785: IEEE 754 values and their ECMAScript form.
func TestNumberRFC8785(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	for _, tt := range tests {
		f := math.Float64frombits(tt.bits)
		if got := string(AppendNumber(nil, f)); got != tt.want {
			t.Errorf("%#016x (%v): %s, want %s", tt.bits, f, got, tt.want)
		}
		// And through the parser, from Go's own spelling of the value.
		in := []byte(string(AppendNumber(nil, f)))
		if got, err := AppendCanonical(nil, in); err != nil || string(got) != tt.want {
			t.Errorf("AppendCanonical(%s) = %s, %v", in, got, err)
		}
	}
}

func TestCanonicalNumbersSpelledDifferently(t *testing.T) {
	for _, in := range []string{"1", "1.0", "1e0", "10E-1", "0.1e1", "1.000000000000000000000001"} {
		if got, err := AppendCanonical(nil, []byte(in)); err != nil || string(got) != "1" {
			t.Errorf("%s: %s, %v", in, got, err)
		}
	}
	if got, _ := AppendCanonical(nil, []byte("-0.0")); string(got) != "0" {
		t.Errorf("-0.0: %s", got)
	}
}

func TestCanonicalRefuses(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{`{"a":1,"a":2}`, ErrDuplicate},
		{`{"a":1,"\u0061":2}`, ErrDuplicate},
		{`{"x":{"b":1,"c":{"d":1,"d":1}}}`, ErrDuplicate},
		{`"\ud800"`, ErrString},
		{`"\udc00\ud800"`, ErrString},
		{`"\ud800\u0041"`, ErrString},
		{"\"\xff\"", ErrString},
		{`1e400`, ErrNumber},
		{`-1e400`, ErrNumber},
		{`01`, ErrSyntax},
		{`1.`, ErrSyntax},
		{`.5`, ErrSyntax},
		{`+1`, ErrSyntax},
		{`{"a":1,}`, ErrSyntax},
		{`[1,]`, ErrSyntax},
		{`{"a" 1}`, ErrSyntax},
		{`[1] [2]`, ErrSyntax},
		{"\"a\tb\"", ErrSyntax},
		{`"\x41"`, ErrSyntax},
		{`nul`, ErrSyntax},
		{``, ErrSyntax},
		{`{`, ErrSyntax},
		{`"abc`, ErrSyntax},
		{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), ErrDepth},
	}
	for _, tt := range tests {
		if got, err := AppendCanonical(nil, []byte(tt.in)); !errors.Is(err, tt.want) {
			t.Errorf("%q: %s, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if _, err := AppendCanonical(nil, []byte(strings.Repeat("[", maxDepth)+strings.Repeat("]", maxDepth))); err != nil {
		t.Errorf("nesting of %d: %v", maxDepth, err)
	}
}

// FuzzCanonical: whatever the input, a canonical form is valid JSON, its
// own canonical form, and means what the input meant to encoding/json.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`{"b":[1,2.50,{"y":null,"x":true}],"a":"\u00e9\n"}`, `-0`, `1e21`, `1e-7`, `123456789012345678901234567890`,
		`"\ud83d\ude00"`, `{"a":1,"a":2}`, `[[[]]]`, `"\u0000"`, ` {"":""} `, `{"A":1,"a":2}`, `0.1`, `5e-324`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := AppendCanonical(nil, in)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%q: canonical form %q is not JSON", in, out)
		}
		again, err := AppendCanonical(nil, out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("%q: canonical form %q canonicalizes to %q, %v", in, out, again, err)
		}
		var a, b any
		if json.Unmarshal(in, &a) != nil {
			t.Fatalf("%q: canonicalized, but encoding/json refuses it", in)
		}
		if err := json.Unmarshal(out, &b); err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("%q: means %#v, its canonical form %q means %#v", in, a, out, b)
		}
	})
}

func TestCompareUTF16(t *testing.T) {
	words := []string{"", "a", "ab", "b", "\r", "1", "\u0080", "ö", "€", "\ufb33", "\uffff", "\ue000", "😀", "😁", "\U0010ffff", "a😀", "a\uffff", "aa"}
	for _, a := range words {
		for _, b := range words {
			want := slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
			if got := compareUTF16(a, b); got != want {
				t.Errorf("compareUTF16(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}
