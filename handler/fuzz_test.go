package handler

import (
	"strings"
	"testing"
)

// FuzzValidSessionID: the check that runs before any store call accepts
// exactly the spec's visible ASCII, within the length bound, and never panics.
func FuzzValidSessionID(f *testing.F) {
	for _, s := range []string{"", "a", "mcp-session-9693471b-ac12-438d-b7b5-6ec69f50555d", "a b", "a\x01b", "sésame", "\x7f", "~!", strings.Repeat("x", 257)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		ok := validSessionID(id, 256)
		want := len(id) > 0 && len(id) <= 256
		for i := 0; i < len(id) && want; i++ {
			want = id[i] >= 0x21 && id[i] <= 0x7e
		}
		if ok != want {
			t.Fatalf("validSessionID(%q) = %v, want %v", id, ok, want)
		}
	})
}

// FuzzReadServed: the Log phase reads kong.log.serialize() JSON; whatever
// Kong (or a broken pluginserver) sends, it must not panic, and a target is
// only ever a host:port.
func FuzzReadServed(f *testing.F) {
	f.Add([]byte(serialized("POST", 200, "", "new-sess", "alice", "127.0.0.1", 9101)))
	f.Add([]byte(serialized("DELETE", 404, "s", "", "", "", 0)))
	f.Add([]byte(`{"request":{"headers":{"mcp-session-id":["a","b"]}},"tries":[{"ip":"::1","port":1}]}`))
	f.Add([]byte(`{"tries":[{"ip":1,"port":"x"}],"response":{"status":"200"}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		f := readServed(data)
		if f.target != "" && !strings.Contains(f.target, ":") {
			t.Fatalf("target %q is not host:port", f.target)
		}
	})
}
