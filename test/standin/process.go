package standin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Log levels of nginx's error log (ngx.DEBUG ... ngx.EMERG).
const (
	lvlEmerg  = 1
	lvlAlert  = 2
	lvlCrit   = 3
	lvlErr    = 4
	lvlWarn   = 5
	lvlNotice = 6
	lvlInfo   = 7
	lvlDebug  = 8
)

var levelNames = map[int]string{lvlEmerg: "emerg", lvlAlert: "alert", lvlCrit: "crit", lvlErr: "error",
	lvlWarn: "warn", lvlNotice: "notice", lvlInfo: "info", lvlDebug: "debug"}

func parseLevel(s string) (int, error) {
	for l, n := range levelNames {
		if n == s || (s == "err" && l == lvlErr) {
			return l, nil
		}
	}
	if s == "" {
		return lvlNotice, nil // kong_defaults.lua: log_level = notice
	}
	return 0, fmt.Errorf("unknown log level %q", s)
}

// nodeLog is the node's error log (Kong's error.log): lines at or above the
// configured level are written.
type nodeLog struct {
	mu    sync.Mutex
	w     io.Writer
	level int
	node  string
}

func (l *nodeLog) logf(level int, format string, args ...any) {
	if l == nil || l.w == nil || level > l.level {
		return
	}
	line := fmt.Sprintf("%s [%s] %s%s\n", time.Now().Format("2006/01/02 15:04:05"), levelNames[level], l.node,
		fmt.Sprintf(format, args...))
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}

// pluginProcess supervises the plugin server process as worker 0 does in
// pluginserver_timer (kong/runloop/plugin_servers/process.lua): it spawns
// the start command as Kong does (`exec <start_cmd>` through the shell,
// verbatim: Kong adds no -kong-prefix), copies the output lines to the log,
// and respawns the process when it dies, at most once a second. A start
// command that cannot be executed is not respawned (Kong: exit 127).
type pluginProcess struct {
	startCmd string
	name     string
	prefix   string
	env      []string
	out      io.Writer
	log      *nodeLog

	mu       sync.Mutex
	cmd      *exec.Cmd
	pid      int
	starts   int
	stopping bool
	stop     chan struct{}
	done     chan struct{}
	started  chan struct{} // closed after the first spawn attempt
	startErr error
}

func newPluginProcess(startCmd, name, prefix string, env []string, out io.Writer, log *nodeLog) *pluginProcess {
	return &pluginProcess{startCmd: startCmd, name: name, prefix: prefix, env: env, out: out, log: log,
		stop: make(chan struct{}), done: make(chan struct{}), started: make(chan struct{})}
}

func (p *pluginProcess) run() {
	defer close(p.done)
	var nextSpawn time.Time
	first := true
	for {
		if d := time.Until(nextSpawn); d > 0 {
			select {
			case <-time.After(d):
			case <-p.stop:
				return
			}
		}
		select {
		case <-p.stop:
			return
		default:
		}
		p.log.logf(lvlNotice, "[pluginserver] starting pluginserver process for %s", p.name)
		cmd := exec.Command("/bin/sh", "-c", "exec "+p.startCmd)
		cmd.Env = workerEnv(p.env)
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw // merge_stderr = true
		err := cmd.Start()
		nextSpawn = time.Now().Add(time.Second)
		if err != nil {
			_ = pw.Close()
			p.log.logf(lvlErr, "[pluginserver] external pluginserver %q start command %q exited with \"command not found\": %v",
				p.name, p.startCmd, err)
			p.mu.Lock()
			p.startErr = err
			p.mu.Unlock()
			if first {
				close(p.started)
			}
			p.log.logf(lvlNotice, "[pluginserver] exiting: pluginserver '%s' not respawned.", p.name)
			return
		}
		p.mu.Lock()
		p.cmd, p.pid = cmd, cmd.Process.Pid
		p.starts++
		p.mu.Unlock()
		if first {
			close(p.started)
			first = false
		}
		p.log.logf(lvlNotice, "[pluginserver] started, pid %d", cmd.Process.Pid)
		logsDone := make(chan struct{})
		go p.grabLogs(pr, cmd.Process.Pid, logsDone)
		err = cmd.Wait()
		_ = pw.Close()
		<-logsDone
		p.mu.Lock()
		p.pid = 0
		stopping := p.stopping
		p.mu.Unlock()
		p.log.logf(lvlNotice, "external pluginserver '%s' terminated: %v", p.name, exitReason(err))
		if stopping {
			return
		}
	}
}

func exitReason(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("signal %d", ws.Signal())
		}
		return fmt.Sprintf("exit %d", ee.ExitCode())
	}
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// grabLogs is grab_logs: each output line goes to the log prefixed with
// "[name:pid] ". Kong logs them at info level, which its default
// log_level (notice) hides; the stand-in writes them to Options.PluginOutput
// whatever the level, so tests can see them.
func (p *pluginProcess) grabLogs(r io.Reader, pid int, done chan struct{}) {
	defer close(done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || p.out == nil {
			continue
		}
		_, _ = fmt.Fprintf(p.out, "%s [info] [%s:%d] %s\n", time.Now().Format("2006/01/02 15:04:05"), p.name, pid, line)
	}
	_, _ = io.Copy(io.Discard, r)
}

// PID returns the running plugin process's pid, 0 when none runs.
func (p *pluginProcess) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Starts counts how many times the process was spawned.
func (p *pluginProcess) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// kill sends SIGKILL to the running process (a crash, for fault tests).
func (p *pluginProcess) kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.pid == 0 {
		return errors.New("plugin process is not running")
	}
	return p.cmd.Process.Signal(syscall.SIGKILL)
}

// terminate sends SIGTERM to the running process, as stop_pluginservers
// does; the supervisor respawns it like after any other exit.
func (p *pluginProcess) terminate() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.pid == 0 {
		return errors.New("plugin process is not running")
	}
	return p.cmd.Process.Signal(syscall.SIGTERM)
}

// shutdown stops respawning and terminates the process as
// stop_pluginservers does (SIGTERM), then SIGKILL after a grace period.
func (p *pluginProcess) shutdown(grace time.Duration) {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.stopping = true
	close(p.stop)
	cmd, pid := p.cmd, p.pid
	p.mu.Unlock()
	if cmd != nil && pid != 0 {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		p.mu.Lock()
		if p.cmd != nil && p.pid != 0 {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
		}
		p.mu.Unlock()
		<-p.done
	}
}

// defaultStartCmd is the start_cmd a Kong whose prefix is not go-pdk's
// default (/usr/local/kong) needs: go-pdk finds its socket, and mcp-relay
// its sessions file, from -kong-prefix, which Kong does not pass.
func defaultStartCmd(plugin, prefix string) string {
	return shellQuote(plugin) + " -kong-prefix " + shellQuote(prefix)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// workerEnv is the environment of a process an nginx worker starts: nginx
// removes every variable it inherited but TZ, unless an `env` directive
// (kong.conf's nginx_main_env) keeps it; extra stands for those.
func workerEnv(extra []string) []string {
	var env []string
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return append(env, extra...)
}
