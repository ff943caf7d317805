package main

import (
	"bufio"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A busy metrics port is an error naming the address, never a "listening"
// line, and the plugin still serves its socket (exiting would make Kong
// restart it every second, failing every request).
func TestBusyMetricsPortIsAnError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	bin := filepath.Join(dir, "mcp-relay")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-kong-prefix", dir, "-metrics-addr", busy.Addr().String())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var log strings.Builder
	timeout := time.After(30 * time.Second)
	// The error waits for a request to take it to Kong's log; with none,
	// it reaches stderr after logging.EchoDelay.
	for !strings.Contains(log.String(), "Listening on socket") || !strings.Contains(log.String(), "metrics listener failed") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the plugin exited:\n%s", log.String())
			}
			log.WriteString(l + "\n")
		case <-timeout:
			t.Fatalf("no socket and error line within 30 s:\n%s", log.String())
		}
	}
	s := log.String()
	if !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "metrics listener failed") ||
		!strings.Contains(s, busy.Addr().String()) || strings.Contains(s, "metrics listening") {
		t.Errorf("stderr:\n%s", s)
	}
}
