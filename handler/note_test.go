package handler

import "testing"

func TestNoteRoundTrip(t *testing.T) {
	for _, n := range []note{
		{kind: noteLearn, consumer: "4fa3c1de-0000-4000-8000-000000000001", initKey: 1<<63 | 12345},
		{kind: noteLearn},
		{kind: noteEnd, consumer: "alice", session: "a|b:c;d~!"},
	} {
		if got := decodeNote(n.encode()); got != n {
			t.Errorf("decode(encode(%+v)) = %+v", n, got)
		}
	}
	for _, s := range []string{"", "l", "x\n\n\n0", "l\nonly-two\n", "e\na\nb\nnot-base36!", "true"} {
		if got := decodeNote(s); got.kind != 0 {
			t.Errorf("decodeNote(%q) = %+v, want no note", s, got)
		}
	}
}

func FuzzDecodeNote(f *testing.F) {
	f.Add(note{kind: noteEnd, consumer: "c", session: "s"}.encode())
	f.Add("l\n\n\n0")
	f.Fuzz(func(t *testing.T, s string) {
		n := decodeNote(s)
		if n.kind != 0 && decodeNote(n.encode()) != n {
			t.Errorf("%q: %+v does not survive its own encoding", s, n)
		}
	})
}

func TestSplitUpstreamHost(t *testing.T) {
	tests := []struct {
		in      string
		host    string
		port    int
		hasPort bool
	}{
		{"10.0.0.1:8080", "10.0.0.1", 8080, true},
		{"10.0.0.1", "10.0.0.1", 0, false},
		{"[fd00::1]:443", "fd00::1", 443, true},
		{"[fd00::1]", "fd00::1", 0, false},
		{"fd00::1", "fd00::1", 0, false},
		{"mcp.internal:9000", "mcp.internal", 9000, true},
		{"mcp.internal", "mcp.internal", 0, false},
		{"", "", 0, false},
		{"10.0.0.1:0", "", 0, false},
		{"10.0.0.1:99999", "", 0, false},
		{":80", "", 0, false},
		{"a:b:c", "", 0, false},
	}
	for _, tt := range tests {
		host, port, hasPort := splitUpstreamHost(tt.in)
		if host != tt.host || port != tt.port || hasPort != tt.hasPort {
			t.Errorf("splitUpstreamHost(%q) = %q %d %v, want %q %d %v", tt.in, host, port, hasPort, tt.host, tt.port, tt.hasPort)
		}
	}
}
