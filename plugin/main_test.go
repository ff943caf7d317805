package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestDumpIsWhatKongReads builds the executable under its plugin name and
// checks that `-dump` prints the schema package's golden dump: what Kong's
// query_cmd reads at start-up.
func TestDumpIsWhatKongReads(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mcp-relay")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-dump", "-kong-prefix", "/usr/local/kong").Output()
	if err != nil {
		t.Fatalf("-dump: %v", err)
	}
	want, err := os.ReadFile("../schema/testdata/dump.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(out), bytes.TrimSpace(want)) {
		t.Errorf("-dump differs from schema/testdata/dump.golden:\n%s", out)
	}
	var info struct {
		Protocol string
		Plugins  []struct {
			Name     string
			Phases   []string
			Priority int
		}
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Protocol != "ProtoBuf:1" || len(info.Plugins) != 1 ||
		info.Plugins[0].Name != "mcp-relay" || info.Plugins[0].Priority != Priority {
		t.Errorf("dump: %v %+v", err, info)
	}
}

// TestDumpLogPhase: Kong sends Log events only to a plugin whose -dump lists
// the phase: -log-phase (or MCP_RELAY_LOG_PHASE=on) adds it.
func TestDumpLogPhase(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mcp-relay")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	phases := func(env []string, args ...string) []string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-dump"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("-dump %v: %v", args, err)
		}
		var info struct{ Plugins []struct{ Phases []string } }
		if err := json.Unmarshal(out, &info); err != nil || len(info.Plugins) != 1 {
			t.Fatalf("dump: %v %s", err, out)
		}
		return info.Plugins[0].Phases
	}
	for _, tt := range []struct {
		env  []string
		args []string
		want []string
	}{
		{[]string{LogPhaseEnv + "="}, nil, []string{"access", "response"}},
		{[]string{LogPhaseEnv + "="}, []string{"-log-phase"}, []string{"access", "response", "log"}},
		{[]string{LogPhaseEnv + "=on"}, nil, []string{"access", "response", "log"}},
		{[]string{LogPhaseEnv + "=on"}, []string{"-log-phase=false"}, []string{"access", "response"}},
	} {
		if got := phases(tt.env, tt.args...); !slices.Equal(got, tt.want) {
			t.Errorf("%v -dump %v: phases %v, want %v", tt.env, tt.args, got, tt.want)
		}
	}
}
