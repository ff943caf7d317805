package kong

import (
	"slices"
	"sort"
	"testing"
)

// TestStringList: kong.ctx.shared.authenticated_groups as go-pdk decodes
// the Lua value: an array, a table with string keys, a string, or nil.
func TestStringList(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want []string
	}{
		{"array", []any{"ops", "dev"}, []string{"dev", "ops"}},
		{"array with other values", []any{"ops", 1.0, nil, true}, []string{"ops"}},
		{"table", map[string]any{"1": "ops", "2": "dev"}, []string{"dev", "ops"}},
		{"string", "ops", []string{"ops"}},
		{"nil", nil, nil},
		{"number", 3.0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := stringList(tt.in)
			sort.Strings(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("stringList(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
