package realkong

import "testing"

// TestSocketRaceOnly: a reload the harness calls failed only because a
// request met the new worker before its plugin socket existed is waited
// for; any other serious line stays a failure.
func TestSocketRaceOnly(t *testing.T) {
	race := "2026/12/07 01:36:16 [crit] 3606#3606: *1938 connect() to unix:/tmp/rk1/mcp-relay.socket failed (2: No such file or directory), client: 127.0.0.1"
	for _, c := range []struct {
		out  string
		want bool
	}{
		{"realkong: reload failed; the node keeps its previous configuration\n" + race + "\n[notice] x", true},
		{"realkong: reload failed; the node keeps its previous configuration\n" + race + "\n[emerg] bad directive", false},
		{"realkong: reload failed; the node keeps its previous configuration\n[crit] something else", false},
		{"realkong: reload failed; the node keeps its previous configuration\ninit_by_lua error\n" + race, false},
		{"realkong: reload not done after 30s\n" + race, false},
	} {
		if got := socketRaceOnly(c.out); got != c.want {
			t.Errorf("socketRaceOnly(%q) = %v, want %v", c.out, got, c.want)
		}
	}
}
