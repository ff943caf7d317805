package realkong

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

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

// TestPluginFilesAfterPidWraparound: a reload's new worker may have a
// smaller pid than the old one (pids wrap around); its plugin process is
// still the newest, and its output comes last.
func TestPluginFilesAfterPidWraparound(t *testing.T) {
	prefix := t.TempDir()
	for _, d := range []string{"pids", "logs"} {
		if err := os.Mkdir(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	oldProc := exec.Command("sleep", "30")
	if err := oldProc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = oldProc.Process.Kill(); _ = oldProc.Wait() })
	n := &Node{prefix: prefix, name: "mcp-relay"}
	spawn := func(worker, count, pid int, out string) {
		tag := filepath.Join(prefix, "%s", fmt.Sprintf("pluginserver-mcp-relay-%d-%d", worker, count))
		if err := os.WriteFile(fmt.Sprintf(tag, "pids")+".pid", []byte(fmt.Sprintln(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fmt.Sprintf(tag, "logs")+".log", []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spawn(32640, 1, oldProc.Process.Pid, "old worker's process\n")
	if got := n.PluginPID(); got != oldProc.Process.Pid {
		t.Fatalf("before the reload: plugin pid %d, want %d", got, oldProc.Process.Pid)
	}
	spawn(377, 1, os.Getpid(), "new worker's process\n") // the old one serves its streams on
	if got := n.PluginPID(); got != os.Getpid() {
		t.Errorf("after the reload: plugin pid %d, want the new worker's %d", got, os.Getpid())
	}
	if got, want := string(n.PluginOutput()), "old worker's process\nnew worker's process\n"; got != want {
		t.Errorf("plugin output %q, want %q", got, want)
	}
}
