// Command demo is `make run`: demo MCP replicas (stateful mcp-go servers,
// legacy protocol), each its own process, on the targets of the deck file's
// upstream, and one Kong stand-in node in front of them running the
// mcp-relay plugin with its default in-memory session store. It is for
// trying the plugin without Docker; production runs the plugin inside Kong.
//
//	go run ./test/cmd/demo -plugin bin/mcp-relay -deck kong/kong.yaml -listen 127.0.0.1:8000 \
//	    -replicas 127.0.0.1:9101,127.0.0.1:9102 -metrics-addr 127.0.0.1:9542
//
// Every address is checked before anything starts, so a busy port fails
// with its name before any URL is advertised. Each replica's pid is in the
// banner: kill one to watch the plugin move its sessions' clients to the
// other. Ctrl-C (SIGINT) or SIGTERM stops everything and exits 0.
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
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

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
	if err := run(*plugin, *deck, *listen, *replicas, *metrics); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// addrUse is one address the demo needs, with the make variable that sets it.
type addrUse struct{ addr, what, variable string }

func run(plugin, deckFile, listen, replicaList, metrics string) error {
	var targets []string
	for _, a := range strings.Split(replicaList, ",") {
		if a = strings.TrimSpace(a); a != "" {
			targets = append(targets, a)
		}
	}
	if len(targets) == 0 {
		return errors.New("no replica addresses (-replicas / REPLICAS)")
	}
	uses := []addrUse{{listen, "the Kong stand-in's proxy", "LISTEN"}}
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

	opts := standin.Options{Plugin: plugin, Deck: deckFile, Listen: listen, Log: os.Stderr,
		Targets: map[string][]string{upstream: targets},
		OnRecord: func(r standin.RequestRecord) {
			fmt.Fprintf(os.Stdout, "%s %s\n", time.Now().Format("15:04:05.000"), r)
		}}
	if metrics != "" {
		opts.Env = []string{"MCP_RELAY_METRICS_ADDR=" + metrics}
	}
	node, err := standin.Start(ctx, opts)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nKong stand-in with mcp-relay on %s/mcp (apikey: demo-key), plugin pid %d\n", node.URL(), node.PluginPID())
	for _, c := range children {
		fmt.Fprintf(&b, "demo MCP replica %s on http://%s/mcp, pid %d\n", c.name, c.addr, c.cmd.Process.Pid)
	}
	if metrics != "" {
		fmt.Fprintf(&b, "plugin metrics on http://%s/metrics\n", metrics)
	}
	fmt.Fprintf(&b, "Kill a replica (kill <pid>) to watch the plugin send its sessions' clients to another.\n")
	fmt.Fprintf(&b, "This is a stand-in for trying the plugin; production runs it inside Kong. Ctrl-C stops.\n\n")
	fmt.Fprint(os.Stderr, b.String())
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "demo: stopping")
	_ = node.Close()
	return nil
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
