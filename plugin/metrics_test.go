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

// pluginStderr runs the plugin with its metrics on addr and collects its
// stderr lines.
type pluginStderr struct {
	t     *testing.T
	lines chan string
	log   strings.Builder
}

func startPluginWithMetrics(t *testing.T, addr string) *pluginStderr {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "mcp-relay")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-kong-prefix", dir, "-metrics-addr", addr)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &pluginStderr{t: t, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

// waitFor reads stderr until every one of subs has appeared (at most 30 s).
func (p *pluginStderr) waitFor(subs ...string) string {
	p.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(p.log.String(), s)
		}
		if all {
			return p.log.String()
		}
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("the plugin exited:\n%s", p.log.String())
			}
			p.log.WriteString(l + "\n")
		case <-timeout:
			p.t.Fatalf("no %q within 30 s:\n%s", subs, p.log.String())
		}
	}
}

// A metrics port that stays busy is an error naming the address, never a
// "listening" line, and the plugin still serves its socket (exiting would
// make Kong restart it every second, failing every request). Its first
// seconds busy are only an info line: a Kong reload's previous plugin
// process holds the port until it hands over.
func TestBusyMetricsPortIsAnError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p := startPluginWithMetrics(t, busy.Addr().String())
	// The error waits for a request to take it to Kong's log; with none,
	// it reaches stderr after logging.EchoDelay.
	s := p.waitFor("Listening on socket", "metrics listener failed")
	if !strings.Contains(s, "level=INFO") || !strings.Contains(s, "metrics port busy") {
		t.Errorf("no info line for the busy port before the error:\n%s", s)
	}
	if !strings.Contains(s, "level=ERROR") || !strings.Contains(s, busy.Addr().String()) || strings.Contains(s, "metrics listening") {
		t.Errorf("stderr:\n%s", s)
	}
}

// A metrics port freed within seconds, as a Kong reload's previous plugin
// process frees it, is served once free, and is no error.
func TestMetricsPortFreedByPreviousProcess(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	p := startPluginWithMetrics(t, addr)
	p.waitFor("Listening on socket", "metrics port busy")
	_ = busy.Close()
	s := p.waitFor("metrics listening")
	if strings.Contains(s, "level=ERROR") {
		t.Errorf("an error for a port freed within seconds:\n%s", s)
	}
	resp, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("metrics not served on %s: %v", addr, err)
	}
	_ = resp.Close()
}
