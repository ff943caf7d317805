package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
