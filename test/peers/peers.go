// Package peers starts the real MCP peers of mcp-relay's end-to-end tests as
// separate processes on loopback, and stops them when the test ends:
//
//   - StartLegacy: a stateful legacy-era mcp-go replica
//     (test/peers/cmd/legacyserver) that counts misrouted requests;
//   - StartBad: an upstream that answers a bare 401, or never answers
//     (test/peers/cmd/badserver);
//   - StartEverything: the reference server @modelcontextprotocol/server-everything
//     (node, streamable HTTP);
//   - RunNodeClient: the TypeScript SDK client script test/node/client.mjs.
//
// The Go peers are built once per test binary. The node peers need
// `cd test/node && npm ci`; without it (or without node) the helpers fail the
// test, in CI and locally alike: they never skip.
package peers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/peers/bad"
	"github.com/mcp-relay/mcp-relay/test/peers/legacy"
)

// Kinds of peer.
const (
	KindLegacy     = "legacy"
	KindBad        = "bad"
	KindEverything = "everything"
)

// Bad upstream modes, for StartBad.
const (
	ModeBare401 = bad.ModeBare401
	ModeSilent  = bad.ModeSilent
)

// Bounded waits.
const (
	buildTimeout   = 3 * time.Minute
	startTimeout   = 20 * time.Second
	stopTimeout    = 5 * time.Second
	statsTimeout   = 5 * time.Second
	maxLogBytes    = 64 << 10
	listeningToken = "listening "
)

// Replica is one peer process listening on loopback.
type Replica struct {
	t    testing.TB
	kind string
	name string
	args []string // arguments after the address flag, for restarts
	bin  string
	dir  string
	env  []string

	mu   sync.Mutex
	addr string
	proc *process
}

// Kind returns KindLegacy, KindBad or KindEverything.
func (r *Replica) Kind() string { return r.kind }

// Name returns the replica's name (the -name of a legacy replica, the mode
// of a bad one, "everything").
func (r *Replica) Name() string { return r.name }

// Addr returns "127.0.0.1:port".
func (r *Replica) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Host returns "127.0.0.1".
func (r *Replica) Host() string {
	h, _, _ := net.SplitHostPort(r.Addr())
	return h
}

// Port returns the port number.
func (r *Replica) Port() int {
	_, p, _ := net.SplitHostPort(r.Addr())
	var n int
	_, _ = fmt.Sscanf(p, "%d", &n)
	return n
}

// BaseURL returns "http://127.0.0.1:port".
func (r *Replica) BaseURL() string { return "http://" + r.Addr() }

// URL returns the MCP endpoint, "http://127.0.0.1:port/mcp".
func (r *Replica) URL() string { return r.BaseURL() + legacy.Path }

// Running reports whether the process is alive.
func (r *Replica) Running() bool {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Logs returns what the process wrote (stdout and stderr, the last 64 KiB),
// across restarts.
func (r *Replica) Logs() string {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return ""
	}
	return p.log.String()
}

// Stats reads GET /stats of a legacy replica.
func (r *Replica) Stats() (legacy.Stats, error) {
	var s legacy.Stats
	if r.kind != KindLegacy {
		return s, fmt.Errorf("peers: %s replica has no /stats", r.kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.BaseURL()+"/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("peers: stats of %s: %w", r.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("peers: stats of %s: HTTP %d", r.name, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("peers: stats of %s: %w", r.name, err)
	}
	return s, nil
}

// MustStats is Stats that fails the test on error. Call it from the test's
// goroutine.
func (r *Replica) MustStats(t testing.TB) legacy.Stats {
	t.Helper()
	s, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ResetStats zeroes the counters of a legacy replica (POST /stats/reset).
func (r *Replica) ResetStats() error {
	if r.kind != KindLegacy {
		return fmt.Errorf("peers: %s replica has no /stats", r.kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.BaseURL()+"/stats/reset", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("peers: reset stats of %s: %w", r.name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("peers: reset stats of %s: HTTP %d", r.name, resp.StatusCode)
	}
	return nil
}

// SetToolDescription makes a legacy replica describe the named tool with
// description from its next tools/list on.
func (r *Replica) SetToolDescription(name, description string) error {
	c := &http.Client{Timeout: statsTimeout}
	resp, err := c.Post(r.BaseURL()+"/tools/"+url.PathEscape(name)+"/description", "text/plain", strings.NewReader(description))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: set the description of %s: %s %s", r.name, name, resp.Status, b)
	}
	return nil
}

// Kill stops the process at once (SIGKILL), as a crash would, and waits for
// it to exit. Connections to it break; nothing listens on its port until
// Restart.
func (r *Replica) Kill() {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Stop stops the process gracefully (SIGTERM, then SIGKILL after 5 s) and
// waits for it to exit.
func (r *Replica) Stop() {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Restart kills the process if it still runs and starts a fresh one on the
// same address. A restarted legacy replica has forgotten every session and
// every counter, as a replaced pod would. Call it from the test's goroutine.
func (r *Replica) Restart() {
	r.t.Helper()
	r.RestartAfter(0)
}

// RestartAfter is Restart with a pause between the kill and the start, as
// a service manager makes (systemd's RestartSec, 100 ms by default).
func (r *Replica) RestartAfter(pause time.Duration) {
	r.t.Helper()
	r.Kill()
	time.Sleep(pause)
	addr := r.Addr()
	deadline := time.Now().Add(startTimeout)
	for {
		err := r.start(addr)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("peers: restart %s on %s: %v", r.name, addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs the process; addr is the address to listen on ("" picks one).
func (r *Replica) start(addr string) error {
	switch r.kind {
	case KindEverything:
		return r.startEverything(addr)
	default:
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		args := append([]string{"-listen", addr}, r.args...)
		p, err := startProcess(r.bin, args, r.dir, r.env)
		if err != nil {
			return err
		}
		got, err := p.waitListening(startTimeout)
		if err != nil {
			p.kill()
			return fmt.Errorf("%w\n--- %s output ---\n%s", err, r.name, p.log.String())
		}
		r.mu.Lock()
		r.addr, r.proc = got, p
		r.mu.Unlock()
		return nil
	}
}

// StartLegacy starts a legacy stateful mcp-go replica named name (its whoami
// answer) as a separate process on a free loopback port, and stops it when
// the test ends.
func StartLegacy(t testing.TB, name string) *Replica {
	t.Helper()
	bins := goBinaries(t)
	r := &Replica{t: t, kind: KindLegacy, name: name, bin: bins.legacy, args: []string{"-name", name}}
	if err := r.start(""); err != nil {
		t.Fatalf("peers: start legacy replica %s: %v", name, err)
	}
	t.Cleanup(r.Stop)
	return r
}

// StartLegacyOn starts a legacy replica, as StartLegacy, on addr (a port
// chosen earlier, for example one a Kong upstream already lists); it
// retries while the port is busy.
func StartLegacyOn(t testing.TB, name, addr string) *Replica {
	t.Helper()
	bins := goBinaries(t)
	r := &Replica{t: t, kind: KindLegacy, name: name, bin: bins.legacy, args: []string{"-name", name}}
	for deadline := time.Now().Add(startTimeout); ; time.Sleep(100 * time.Millisecond) {
		err := r.start(addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers: start legacy replica %s on %s: %v", name, addr, err)
		}
	}
	t.Cleanup(r.Stop)
	return r
}

// StartLegacyHostChecked starts a legacy replica, as StartLegacy, that
// answers 403 to any request whose Host is not its own "ip:port": what Kong
// sends when it balances to a target given by IP, or only host when given.
func StartLegacyHostChecked(t testing.TB, name string, host ...string) *Replica {
	t.Helper()
	bins := goBinaries(t)
	args := []string{"-name", name, "-check-host"}
	if len(host) > 0 {
		args = append(args, "-allow-host", host[0])
	}
	r := &Replica{t: t, kind: KindLegacy, name: name, bin: bins.legacy, args: args}
	if err := r.start(""); err != nil {
		t.Fatalf("peers: start legacy replica %s: %v", name, err)
	}
	t.Cleanup(r.Stop)
	return r
}

// StartBad starts an upstream that misbehaves as mode says (ModeBare401 or
// ModeSilent), and stops it when the test ends.
func StartBad(t testing.TB, mode string) *Replica {
	t.Helper()
	if _, err := bad.Handler(mode); err != nil {
		t.Fatalf("peers: %v", err)
	}
	bins := goBinaries(t)
	r := &Replica{t: t, kind: KindBad, name: mode, bin: bins.bad, args: []string{"-mode", mode}}
	if err := r.start(""); err != nil {
		t.Fatalf("peers: start bad upstream %s: %v", mode, err)
	}
	t.Cleanup(r.Stop)
	return r
}

// --- building the Go peers ---

type binaries struct {
	legacy, bad string
}

var (
	buildOnce sync.Once
	buildDir  string
	built     binaries
	buildErr  error
)

// RemoveBinaries deletes the Go peers built by this test binary. Call it from
// TestMain after m.Run, when every peer has stopped; without it they stay in
// the system's temporary directory.
func RemoveBinaries() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// goBinaries builds legacyserver and badserver once per test binary.
func goBinaries(t testing.TB) binaries {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "mcp-relay-peers-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
			"./test/peers/cmd/legacyserver", "./test/peers/cmd/badserver")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build of the Go peers in %s: %v\n%s", root, err, out)
			return
		}
		built = binaries{legacy: filepath.Join(dir, "legacyserver"), bad: filepath.Join(dir, "badserver")}
	})
	if buildErr != nil {
		t.Fatalf("peers: %v", buildErr)
	}
	return built
}

// modulePath is this repository's Go module path.
const modulePath = "github.com/mcp-relay/mcp-relay"

// peersDir is the directory of this package's source: test/peers. It is
// taken from the compiled-in source path, or, when that is not on this
// machine (a -trimpath build), found by walking up from the working
// directory (a test's is its package directory) to the module's go.mod.
func peersDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Dir(file)
		if _, err := os.Stat(filepath.Join(dir, "peers.go")); err == nil {
			return dir, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(mod), "module "+modulePath+"\n") {
			return filepath.Join(dir, "test", "peers"), nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("peers: cannot find the %s module above %s", modulePath, wd)
		}
	}
}

// moduleRoot is the repository root, two levels above test/peers.
func moduleRoot() (string, error) {
	dir, err := peersDir()
	if err != nil {
		return "", err
	}
	root := filepath.Clean(filepath.Join(dir, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("peers: no go.mod at %s: %w", root, err)
	}
	return root, nil
}

// --- processes ---

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit error, valid after done
	log  *tailBuffer

	firstLine chan string
	stopOnce  sync.Once
}

func startProcess(bin string, args []string, dir string, env []string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	// Its own process group, so that ^C on the test does not reach it first
	// and so that it can be signalled by pid alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: &tailBuffer{max: maxLogBytes}, firstLine: make(chan string, 1)}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		first := true
		for sc.Scan() {
			line := sc.Text()
			if first {
				p.firstLine <- line
				first = false
			}
			_, _ = p.log.Write([]byte(line + "\n"))
		}
		_, _ = io.Copy(p.log, stdout)
	}()
	go func() {
		<-copied
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitListening reads the "listening host:port" line.
func (p *process) waitListening(timeout time.Duration) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line := <-p.firstLine:
		addr, ok := strings.CutPrefix(line, listeningToken)
		if !ok {
			return "", fmt.Errorf("first line %q, want %q", line, listeningToken+"<addr>")
		}
		return strings.TrimSpace(addr), nil
	case <-p.done:
		return "", fmt.Errorf("exited before listening: %v", p.err)
	case <-timer.C:
		return "", fmt.Errorf("not listening after %s", timeout)
	}
}

func (p *process) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL and waits.
func (p *process) kill() {
	p.stopOnce.Do(func() {
		p.signal(syscall.SIGKILL)
	})
	<-p.done
}

// stop sends SIGTERM, waits up to stopTimeout, then kills.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.signal(syscall.SIGTERM)
		timer := time.NewTimer(stopTimeout)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			p.signal(syscall.SIGKILL)
		}
	})
	<-p.done
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
