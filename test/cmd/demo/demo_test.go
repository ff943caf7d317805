package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/realkong"
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

// demoRun is a started demo and what its banner said.
type demoRun struct {
	cmd      *exec.Cmd
	banner   string
	replicas map[string]int // address -> pid
	gateway  int            // the gateway's own pid
	plugin   int
	later    chan string // stderr lines after the banner
}

var (
	replicaLine = regexp.MustCompile(`(?m)^demo MCP replica (replica-[ab]) on http://(\S+)/mcp, pid (\d+)$`)
	kongLine    = regexp.MustCompile(`(?m)^Kong's nginx master pid (\d+) .*; plugin pid (\d+)$`)
	standinLine = regexp.MustCompile(`(?m)^the stand-in runs in the demo's own process, pid (\d+) .*; plugin pid (\d+)$`)
)

// startDemo runs the demo (through wrap, e.g. a shell, when set) and reads
// its banner.
func startDemo(t *testing.T, gateway string, addrs []string, wrap ...string) *demoRun {
	t.Helper()
	plugin, demo := build(t)
	listen, replicas, metrics := addrs[0], addrs[1]+","+addrs[2], addrs[3]
	args := []string{demo, "-gateway", gateway, "-plugin", plugin, "-deck", "../../../kong/kong.yaml",
		"-listen", listen, "-replicas", replicas, "-metrics-addr", metrics}
	args = append(wrap, args...)
	cmd := exec.Command(args[0], args[1:]...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Stdout to /dev/null: a pipe would make Wait wait for whoever holds it.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	d := &demoRun{cmd: cmd, replicas: map[string]int{}, later: make(chan string, 1000)}
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if strings.HasPrefix(line, "This is ") {
			break
		}
	}
	d.banner = log.String()
	for _, m := range replicaLine.FindAllStringSubmatch(d.banner, -1) {
		d.replicas[m[2]], _ = strconv.Atoi(m[3])
	}
	gw := kongLine
	if gateway == "standin" {
		gw = standinLine
	}
	if m := gw.FindStringSubmatch(d.banner); m != nil {
		d.gateway, _ = strconv.Atoi(m[1])
		d.plugin, _ = strconv.Atoi(m[2])
	}
	if !strings.Contains(d.banner, "This is ") || d.gateway == 0 || d.plugin == 0 {
		t.Fatalf("no banner with the gateway's and the plugin's pids:\n%s", d.banner)
	}
	go func() {
		for sc.Scan() {
			select {
			case d.later <- sc.Text():
			default:
			}
		}
		close(d.later)
	}()
	return d
}

// running tells whether pid runs (a zombie does not: its parent may be an
// init that reaps late).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// gone waits (bounded) until none of pids runs.
func gone(t *testing.T, what string, pids map[string]int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for name, pid := range pids {
		for running(pid) {
			if time.Now().After(deadline) {
				t.Errorf("%s: %s (pid %d) still runs", what, name, pid)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Every port can be chosen, the banner says which gateway runs and names
// its pid, the plugin's and each replica's (a process of its own), the
// proxy answers on the chosen port, and SIGINT (Ctrl-C) ends the demo with
// exit status 0 and nothing left behind: with real Kong (the harness must
// be there: the demo's default) and with the stand-in.
func TestDemoPortsAndCleanExit(t *testing.T) {
	for _, gateway := range []string{"kong", "standin"} {
		t.Run(gateway, func(t *testing.T) {
			if gateway == "kong" {
				if _, err := realkong.Script(); err != nil {
					t.Fatal(err) // never a silent pass: say how to get real Kong
				}
			}
			a := freeport.Addrs(t, 4)
			d := startDemo(t, gateway, a)
			listen, metrics := a[0], a[3]
			want := "Kong stand-in with mcp-relay on http://" + listen + "/mcp"
			if gateway == "kong" {
				want = "Kong " + realkong.Version + " (real Kong, through the realkong harness) with mcp-relay on http://" + listen + "/mcp"
			}
			if !strings.Contains(d.banner, want) || !strings.Contains(d.banner, "plugin metrics on http://"+metrics+"/metrics") {
				t.Errorf("banner does not say %q or name the chosen addresses:\n%s", want, d.banner)
			}
			if gateway == "standin" && d.gateway != d.cmd.Process.Pid {
				t.Errorf("stand-in pid %d, want the demo's %d", d.gateway, d.cmd.Process.Pid)
			}
			if len(d.replicas) != 2 || d.replicas[a[1]] == 0 || d.replicas[a[2]] == 0 || d.replicas[a[1]] == d.cmd.Process.Pid {
				t.Fatalf("replica pids %v (demo pid %d):\n%s", d.replicas, d.cmd.Process.Pid, d.banner)
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
			killed := d.replicas[a[2]]
			if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			wantLine := fmt.Sprintf("demo: replica replica-b (pid %d) exited", killed)
			timeout := time.After(30 * time.Second)
			for seen := false; !seen; {
				select {
				case line, ok := <-d.later:
					if !ok {
						t.Fatal("the demo ended when a replica was killed")
					}
					seen = strings.HasPrefix(line, wantLine)
				case <-timeout:
					t.Fatalf("no %q line within 30 s", wantLine)
				}
			}
			if resp, err := http.Post("http://"+listen+"/mcp", "application/json",
				strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)); err != nil {
				t.Fatalf("the proxy stopped answering after a replica was killed: %v", err)
			} else {
				resp.Body.Close()
			}

			if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- d.cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("demo ended with %v after SIGINT, want exit status 0", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("demo still running 30 s after SIGINT")
			}
			left := map[string]int{"the plugin": d.plugin, "the gateway": d.gateway}
			for addr, pid := range d.replicas {
				left["replica on "+addr] = pid
			}
			gone(t, "after the demo ended", left)
		})
	}
}

// The end of the demo's parent (make, stopped by a SIGINT or SIGTERM to its
// pid) stops the demo and everything it started.
func TestDemoStopsWithItsParent(t *testing.T) {
	if _, err := realkong.Script(); err != nil {
		t.Fatal(err)
	}
	a := freeport.Addrs(t, 4)
	// A shell as the parent, as make is: it waits for the demo.
	d := startDemo(t, "auto", a, "bash", "-c", `"$@" & wait`, "bash")
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	left := map[string]int{"the plugin": d.plugin, "the gateway": d.gateway}
	for addr, pid := range d.replicas {
		left["replica on "+addr] = pid
	}
	gone(t, "after the demo's parent ended", left)
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
