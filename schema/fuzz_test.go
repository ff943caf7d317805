package schema

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics; what it accepts is valid and survives a
// round trip through JSON unchanged; and what the simulated Kong accepts
// (the emitted Kong schema's rules), Parse accepts too, but for the rules
// only the plugin checks. The seed corpus is in testdata/fuzz/FuzzParse; run
// with go test ./schema -fuzz FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add(kongDefaultsJSON(f))
	f.Add([]byte(`{}`))
	cf := kongConfigField(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		var user any
		if json.Unmarshal(data, &user) == nil {
			if _, ok := user.(map[string]any); ok && len(kongValidate("config", cf, kongFill(cf, user, true))) == 0 {
				if err != nil {
					t.Fatalf("Kong accepts what Parse rejects: %v\n%s", err, data)
				}
			}
		}
		if err != nil {
			if _, ok := err.(Errors); !ok {
				t.Fatalf("Parse error is %T, want Errors: %v", err, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v\n%s", err, data)
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := Parse(again)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(x))): %v\n%s", err, again)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}

// BenchmarkParse is what each plugin instance start costs in the Go process
// (Kong starts one per route and rebuilds it after 60 s idle).
func BenchmarkParse(b *testing.B) {
	data := kongDefaultsJSON(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDefaults(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Defaults()
	}
}
