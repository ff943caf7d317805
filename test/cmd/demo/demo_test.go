package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/freeport"
)

// build builds the plugin (under its plugin name) and the demo.
func build(t *testing.T) (plugin, demo string) {
	t.Helper()
	dir := t.TempDir()
	plugin, demo = filepath.Join(dir, "mcp-relay"), filepath.Join(dir, "demo")
	for out, pkg := range map[string]string{plugin: "../../../plugin", demo: "."} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return plugin, demo
}

// Every port can be chosen, the banner names each replica's pid (a
// process of its own), the proxy answers on the chosen port, and SIGINT
// (Ctrl-C) ends the demo with exit status 0 and no replica left behind.
func TestDemoPortsAndCleanExit(t *testing.T) {
	plugin, demo := build(t)
	a := freeport.Addrs(t, 4)
	listen, replicas, metrics := a[0], a[1]+","+a[2], a[3]
	cmd := exec.Command(demo, "-plugin", plugin, "-deck", "../../../kong/kong.yaml",
		"-listen", listen, "-replicas", replicas, "-metrics-addr", metrics)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var log strings.Builder
	pids := map[string]int{}
	banner := regexp.MustCompile(`^demo MCP replica (replica-[ab]) on http://(\S+)/mcp, pid (\d+)$`)
	sc := bufio.NewScanner(stderr)
	ready := false
	for !ready && sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if m := banner.FindStringSubmatch(line); m != nil {
			pids[m[2]], _ = strconv.Atoi(m[3])
		}
		ready = strings.HasPrefix(line, "This is a stand-in")
	}
	if !ready {
		t.Fatalf("no banner:\n%s", log.String())
	}
	later := make(chan string, 1000)
	go func() {
		for sc.Scan() {
			select {
			case later <- sc.Text():
			default:
			}
		}
		close(later)
	}()
	if !strings.Contains(log.String(), "Kong stand-in with mcp-relay on http://"+listen+"/mcp") ||
		!strings.Contains(log.String(), "plugin metrics on http://"+metrics+"/metrics") {
		t.Errorf("banner does not name the chosen addresses:\n%s", log.String())
	}
	if len(pids) != 2 || pids[a[1]] == 0 || pids[a[2]] == 0 || pids[a[1]] == cmd.Process.Pid {
		t.Fatalf("replica pids %v (demo pid %d):\n%s", pids, cmd.Process.Pid, log.String())
	}

	// The proxy answers on the chosen port (no key: the auth envelope).
	resp, err := http.Post("http://"+listen+"/mcp", "application/json",
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"reason":"unauthorized"`) {
		t.Errorf("proxy answered %d %s", resp.StatusCode, body)
	}
	if resp, err := http.Get("http://" + metrics + "/metrics"); err != nil || resp.StatusCode != 200 {
		t.Errorf("metrics on %s: %v", metrics, err)
	} else {
		resp.Body.Close()
	}

	// Killing one replica leaves the demo running and says so.
	killed := pids[a[2]]
	if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("demo: replica replica-b (pid %d) exited", killed)
	timeout := time.After(30 * time.Second)
	for seen := false; !seen; {
		select {
		case line, ok := <-later:
			if !ok {
				t.Fatal("the demo ended when a replica was killed")
			}
			seen = strings.HasPrefix(line, want)
		case <-timeout:
			t.Fatalf("no %q line within 30 s", want)
		}
	}
	if resp, err := http.Post("http://"+listen+"/mcp", "application/json",
		strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)); err != nil {
		t.Fatalf("the proxy stopped answering after a replica was killed: %v", err)
	} else {
		resp.Body.Close()
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo ended with %v after SIGINT, want exit status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo still running 30 s after SIGINT")
	}
	for addr, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("replica on %s (pid %d) still running after the demo ended: %v", addr, pid, err)
		}
	}
}

// A busy port fails at once, naming the address and the make variable,
// before anything starts or any URL is advertised.
func TestDemoBusyPortFailsFirst(t *testing.T) {
	plugin, demo := build(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	a := freeport.Addrs(t, 3)
	for _, tc := range []struct{ flag, variable string }{
		{"-metrics-addr", "METRICS"}, {"-listen", "LISTEN"}, {"-replicas", "REPLICAS"},
	} {
		t.Run(tc.variable, func(t *testing.T) {
			args := map[string]string{"-listen": a[0], "-replicas": a[1], "-metrics-addr": a[2]}
			args[tc.flag] = busy.Addr().String()
			cmd := exec.Command(demo, "-plugin", plugin, "-deck", "../../../kong/kong.yaml",
				"-listen", args["-listen"], "-replicas", args["-replicas"], "-metrics-addr", args["-metrics-addr"])
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("want exit status 1, got %v:\n%s", err, out)
			}
			if s := string(out); !strings.Contains(s, busy.Addr().String()) || !strings.Contains(s, "make run "+tc.variable+"=") ||
				strings.Contains(s, "http://") {
				t.Errorf("output:\n%s", s)
			}
		})
	}
}
