// Command demo is `make run`: demo MCP replicas (stateful mcp-go servers,
// legacy protocol), each its own process, on the targets of the deck file's
// upstream, and one Kong node in front of them running the mcp-relay plugin
// with its default in-memory session store: real Kong 3.9.1 through the
// realkong harness where it can run (../shared/realkong next to the
// checkout, or $MCP_RELAY_REALKONG), the Kong stand-in (test/standin)
// otherwise. The banner says which, with every pid. It is for trying the
// plugin; production runs it inside Kong (the project's Dockerfile).
//
//	go run ./test/cmd/demo -plugin bin/mcp-relay -deck kong/kong.yaml -listen 127.0.0.1:8000 \
//	    -replicas 127.0.0.1:9101,127.0.0.1:9102 -metrics-addr 127.0.0.1:9542 [-gateway auto|kong|standin]
//
// Every address is checked before anything starts, so a busy port fails
// with its name before any URL is advertised. Each replica's pid is in the
// banner: kill one to watch the plugin move its sessions' clients to the
// other. Ctrl-C, SIGINT or SIGTERM to the demo stops everything and exits
// 0; so does the end of its parent (make), through PR_SET_PDEATHSIG.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/realkong"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

func main() {
	var (
		plugin   = flag.String("plugin", "bin/mcp-relay", "plugin executable")
		deck     = flag.String("deck", "kong/kong.yaml", "decK file")
		listen   = flag.String("listen", "127.0.0.1:8000", "proxy listen address (make run LISTEN=...)")
		replicas = flag.String("replicas", "127.0.0.1:9101,127.0.0.1:9102", "addresses of the demo replicas, comma-separated; they replace the targets of the deck file's upstream (make run REPLICAS=...)")
		metrics  = flag.String("metrics-addr", "127.0.0.1:9542", "plugin metrics address, empty: off (make run METRICS=...)")
		replica  = flag.String("serve-replica", "", "internal: serve one demo replica named NAME=ADDR (the demo starts itself so)")
		gateway  = flag.String("gateway", "auto", "kong (real Kong through the realkong harness), standin (the Kong stand-in), or auto: kong where it can run (make run GATEWAY=...)")
	)
	flag.Parse()
	if *replica != "" {
		name, addr, _ := strings.Cut(*replica, "=")
		if err := serveReplica(name, addr); err != nil {
			fmt.Fprintf(os.Stderr, "demo replica %s: %v\n", name, err)
			os.Exit(1)
		}
		return
	}
	// make's end (a SIGINT or SIGTERM to its pid) must stop the demo too:
	// the kernel sends it SIGTERM when its parent exits. Its output may be
	// a pipe that ended with the parent: a write there must not kill the
	// demo (Go's default for stdout and stderr) before it stopped the rest.
	signal.Ignore(syscall.SIGPIPE)
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
	if os.Getppid() == 1 {
		os.Exit(1) // the parent ended before the line above
	}
	if err := run(*plugin, *deck, *listen, *replicas, *metrics, *gateway); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// addrUse is one address the demo needs, with the make variable that sets it.
type addrUse struct{ addr, what, variable string }

func run(plugin, deckFile, listen, replicaList, metrics, gateway string) error {
	var targets []string
	for _, a := range strings.Split(replicaList, ",") {
		if a = strings.TrimSpace(a); a != "" {
			targets = append(targets, a)
		}
	}
	if len(targets) == 0 {
		return errors.New("no replica addresses (-replicas / REPLICAS)")
	}
	kong, why, err := chooseGateway(gateway)
	if err != nil {
		return err
	}
	uses := []addrUse{{listen, "the Kong node's proxy", "LISTEN"}}
	for _, a := range targets {
		uses = append(uses, addrUse{a, "a demo replica", "REPLICAS"})
	}
	if metrics != "" {
		uses = append(uses, addrUse{metrics, "the plugin's metrics", "METRICS"})
	}
	if err := checkFree(uses); err != nil {
		return err
	}
	upstream, err := deckUpstream(deckFile)
	if err != nil {
		return err
	}
	plugin, err = filepath.Abs(plugin)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var children []*child
	defer func() { stopChildren(children) }()
	for i, addr := range targets {
		c, err := startReplica(self, fmt.Sprintf("replica-%c", 'a'+i), addr)
		if err != nil {
			return err
		}
		children = append(children, c)
	}

	var args []string // the plugin's flags, in Kong's start command
	if metrics != "" {
		args = append(args, "-metrics-addr", metrics)
	}
	var node gatewayNode
	if kong {
		node, err = startKong(ctx, plugin, deckFile, listen, upstream, targets, args)
	} else {
		node, err = startStandin(ctx, plugin, deckFile, listen, upstream, targets, args)
	}
	if err != nil {
		return err
	}
	defer node.Close()
	var b strings.Builder
	if kong {
		fmt.Fprintf(&b, "\nKong %s (real Kong, through the realkong harness) with mcp-relay on %s/mcp (apikey: demo-key)\n", realkong.Version, node.URL())
	} else {
		fmt.Fprintf(&b, "\nKong stand-in with mcp-relay on %s/mcp (apikey: demo-key) (%s)\n", node.URL(), why)
	}
	fmt.Fprintf(&b, "%s; plugin pid %d\n", node.Describe(), node.PluginPID())
	for _, c := range children {
		fmt.Fprintf(&b, "demo MCP replica %s on http://%s/mcp, pid %d\n", c.name, c.addr, c.cmd.Process.Pid)
	}
	if metrics != "" {
		fmt.Fprintf(&b, "plugin metrics on http://%s/metrics\n", metrics)
	}
	fmt.Fprintf(&b, "Kill a replica (kill <pid>) to watch the plugin send its sessions' clients to another.\n")
	if kong {
		fmt.Fprintf(&b, "This is real Kong for trying the plugin; production runs Kong's own image with the plugin (Dockerfile). Ctrl-C stops.\n\n")
	} else {
		fmt.Fprintf(&b, "This is a stand-in for trying the plugin; production runs it inside Kong (Dockerfile). Ctrl-C stops.\n\n")
	}
	fmt.Fprint(os.Stderr, b.String())
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "demo: stopping")
	return nil
}

// chooseGateway decides between real Kong and the stand-in; why says why
// the stand-in, when it is chosen.
func chooseGateway(gateway string) (kong bool, why string, err error) {
	switch gateway {
	case "standin":
		return false, "chosen with -gateway standin", nil
	case "kong", "auto":
		if _, perr := realkong.Prepare(); perr != nil {
			if gateway == "kong" {
				return false, "", perr
			}
			first, _, _ := strings.Cut(perr.Error(), "\n")
			return false, "real Kong cannot run here: " + first, nil
		}
		return true, "", nil
	}
	return false, "", fmt.Errorf("-gateway %q: want auto, kong or standin (make run GATEWAY=...)", gateway)
}

// gatewayNode is the Kong node the demo runs.
type gatewayNode interface {
	URL() string
	PluginPID() int
	Describe() string // the gateway's own process and where its logs go
	Close() error
}

type kongNode struct {
	*realkong.Node
	stopLogs context.CancelFunc
	logs     sync.WaitGroup
}

// startKong starts a real Kong node; Kong's access log goes to stdout (a
// line per request) and its error log to stderr as they are written.
func startKong(ctx context.Context, plugin, deckFile, listen, upstream string, targets, args []string) (*kongNode, error) {
	deck, err := os.ReadFile(deckFile)
	if err != nil {
		return nil, err
	}
	o := realkong.Options{Plugin: plugin, DeckYAML: deck, Listen: listen,
		Targets: map[string][]string{upstream: targets}, PluginArgs: args}
	// Kong's own 502/504 as JSON-RPC errors, as the README configures it.
	if tmpl, err := filepath.Abs(filepath.Join(filepath.Dir(deckFile), "error_template.json")); err == nil {
		if _, err := os.Stat(tmpl); err == nil {
			o.ErrorTemplateJSON = tmpl
		}
	}
	n, err := realkong.Start(ctx, o)
	if err != nil {
		return nil, err
	}
	k := &kongNode{Node: n}
	lctx, cancel := context.WithCancel(context.Background())
	k.stopLogs = cancel
	k.logs.Add(2)
	go func() { defer k.logs.Done(); n.Follow(lctx, "logs/access.log", os.Stdout) }()
	go func() { defer k.logs.Done(); n.Follow(lctx, "logs/error.log", os.Stderr) }()
	return k, nil
}

func (k *kongNode) Describe() string {
	return fmt.Sprintf("Kong's nginx master pid %d (prefix %s: logs/error.log, logs/access.log)", k.NginxPID(), k.Prefix())
}

func (k *kongNode) Close() error {
	err := k.Node.Close()
	k.stopLogs()
	k.logs.Wait()
	return err
}

type standinNode struct {
	*standin.Node
}

// startStandin starts a stand-in node in this process; each request's
// record (its events and PDK calls) goes to stdout.
func startStandin(ctx context.Context, plugin, deckFile, listen, upstream string, targets, args []string) (*standinNode, error) {
	prefix, err := os.MkdirTemp("", "kong-")
	if err != nil {
		return nil, err
	}
	start := shellQuote(plugin) + " -kong-prefix " + shellQuote(prefix)
	for _, a := range args {
		start += " " + shellQuote(a)
	}
	n, err := standin.Start(ctx, standin.Options{Plugin: plugin, Deck: deckFile, Listen: listen, Log: os.Stderr,
		Prefix: prefix, StartCmd: start, Targets: map[string][]string{upstream: targets},
		OnRecord: func(r standin.RequestRecord) {
			fmt.Fprintf(os.Stdout, "%s %s\n", time.Now().Format("15:04:05.000"), r)
		}})
	if err != nil {
		_ = os.RemoveAll(prefix)
		return nil, err
	}
	return &standinNode{Node: n}, nil
}

func (s *standinNode) Describe() string {
	return fmt.Sprintf("the stand-in runs in the demo's own process, pid %d (its log on stderr)", os.Getpid())
}

func (s *standinNode) Close() error {
	err := s.Node.Close()
	_ = os.RemoveAll(s.Prefix())
	return err
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkFree fails, naming the address, its use and its make variable, when
// an address cannot be listened on: before anything starts or is advertised.
func checkFree(uses []addrUse) error {
	for _, u := range uses {
		ln, err := net.Listen("tcp", u.addr)
		if err != nil {
			return fmt.Errorf("%s cannot listen on %s: %v (choose another address: make run %s=...)", u.what, u.addr, err, u.variable)
		}
		_ = ln.Close()
	}
	return nil
}

// deckUpstream names the deck file's upstream, whose targets the replicas
// replace.
func deckUpstream(file string) (string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	var doc struct {
		Upstreams []struct{ Name string } `yaml:"upstreams"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("%s: %v", file, err)
	}
	if len(doc.Upstreams) != 1 {
		return "", fmt.Errorf("%s: want exactly one upstream for the demo replicas, found %d", file, len(doc.Upstreams))
	}
	return doc.Upstreams[0].Name, nil
}

// child is one replica process.
type child struct {
	name, addr string
	cmd        *exec.Cmd
	done       chan struct{}
}

// startReplica runs this executable as one replica, in its own process
// group (so Ctrl-C reaches the demo, which stops the replicas in order),
// and waits for its "listening" line.
func startReplica(self, name, addr string) (*child, error) {
	cmd := exec.Command(self, "-serve-replica", name+"="+addr)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: name, addr: addr, cmd: cmd, done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() && strings.HasPrefix(sc.Text(), "listening ") {
			ready <- nil
		} else {
			ready <- fmt.Errorf("demo replica %s on %s did not start", name, addr)
		}
		_, _ = io.Copy(io.Discard, out)
		err := cmd.Wait()
		select {
		case <-stopping:
		default:
			fmt.Fprintf(os.Stderr, "demo: replica %s (pid %d) exited: %v\n", name, cmd.Process.Pid, exitText(err))
		}
		close(c.done)
	}()
	select {
	case err := <-ready:
		if err != nil {
			<-c.done
			return nil, err
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-c.done
		return nil, fmt.Errorf("demo replica %s on %s: no answer within 10 s", name, addr)
	}
	return c, nil
}

var (
	stopping     = make(chan struct{})
	stoppingOnce sync.Once
)

// stopChildren ends the replicas (SIGTERM, SIGKILL after 5 s) and waits.
func stopChildren(cs []*child) {
	stoppingOnce.Do(func() { close(stopping) })
	for _, c := range cs {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range cs {
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
