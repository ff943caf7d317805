// Package redistest runs real redis-server processes for tests: a single
// server, a Cluster, or a Sentinel. Servers listen on free loopback ports,
// keep nothing on disk beyond a temp dir, and are stopped in t.Cleanup.
// Missing binaries fail the test: these tests must not pass by skipping.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/freeport"
)

const install = "apt-get install -y redis-server"

// Bin returns the path of a Redis binary or fails t with the package to
// install.
func Bin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("redistest: %s not found in PATH; install it: %s (Debian/Ubuntu; it ships redis-server and redis-cli)", name, install)
	}
	return p
}

// Option changes how StartServer starts redis-server.
type Option func(*config)

type config struct {
	args []string
}

// WithArgs adds redis-server arguments, e.g. WithArgs("--requirepass", "pw").
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is one redis-server process (or sentinel).
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// StartServer starts redis-server on a free loopback port with no
// persistence. Stop, Start, Pause and Resume simulate outages.
func StartServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	return start(t, func(port int) []string { return c.args })
}

func start(t testing.TB, extra func(port int) []string) *Server {
	t.Helper()
	bin := Bin(t, "redis-server")
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	var err error
	// A free port can be taken between probing and binding: retry a little.
	for attempt := 0; attempt < 5; attempt++ {
		s.port = freeport.Port(t)
		s.args = append([]string{
			"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", s.dir,
			"--protected-mode", "no",
		}, extra(s.port)...)
		if err = s.launch(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: redis-server did not start: %v", err)
	return nil
}

// launch runs the process and waits (bounded) until it answers PING.
func (s *Server) launch() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = logf, logf, s.dir
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.paused = cmd, exited, false
	s.mu.Unlock()
	for i := 0; i < 200; i++ { // up to ~10 s
		select {
		case <-exited:
			return fmt.Errorf("exited early: %s", s.logTail())
		default:
		}
		// Any reply will do: NOAUTH means up, with a password.
		var re ReplyError
		if _, err := Do(s.Addr(), "PING"); err == nil || errors.As(err, &re) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("no PONG within 10s: %s", s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Host is "127.0.0.1".
func (s *Server) Host() string { return "127.0.0.1" }

// Port is the server's port; it survives Stop and Start.
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory.
func (s *Server) Dir() string { return s.dir }

// Running tells whether the process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 5 s) and waits for it.
// Data is lost: there is no persistence. Stopping twice is fine.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL, as a crash would.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited, paused := s.cmd, s.exited, s.paused
	s.cmd, s.paused = nil, false
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Start restarts a stopped server on the same port (empty: no persistence).
func (s *Server) Start() {
	s.t.Helper()
	if s.Running() {
		return
	}
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the port may linger briefly
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart on port %d failed: %v", s.port, err)
}

// Pause freezes the process (SIGSTOP): connections stay open, nothing answers.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && !s.paused {
		_ = s.cmd.Process.Signal(syscall.SIGSTOP)
		s.paused = true
	}
}

// Resume undoes Pause (SIGCONT).
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.paused {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
		s.paused = false
	}
}

// Do runs one command on this server (see the package-level Do).
func (s *Server) Do(args ...string) (string, error) { return Do(s.Addr(), args...) }

// Info returns one field of INFO, e.g. Info("memory", "used_memory").
func (s *Server) Info(section, field string) (string, error) {
	r, err := s.Do("INFO", section)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(r, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("redistest: no %s in INFO %s", field, section)
}

// Do sends one command to addr over a fresh connection and returns the
// reply as text: simple and bulk strings as they are, integers in decimal,
// arrays one element per line, nil as "". Error replies become errors. It is
// for set-up and inspection, not for the code under test.
func Do(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(c))
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", ReplyError(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		parts := make([]string, 0, n)
		for i := 0; i < n; i++ {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

// ReplyError is an error reply from the server (as opposed to a network
// failure).
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// Cluster is a Redis Cluster: masters, and replicas when started with
// StartClusterWithReplicas.
type Cluster struct {
	t     testing.TB
	nodes []*Server
}

// StartCluster starts masters (at least 3) redis-server nodes in cluster mode,
// joins them with redis-cli --cluster create, and waits (bounded) until
// every node reports cluster_state:ok. There are no replicas: a master that
// dies takes its slots down until it is started again. opts add
// redis-server arguments to every node, e.g.
// WithArgs("--cluster-require-full-coverage", "no").
func StartCluster(t testing.TB, masters int, opts ...Option) *Cluster {
	t.Helper()
	return startCluster(t, masters, 0, opts)
}

// StartClusterWithReplicas starts masters (at least 3) masters with replicas
// replicas each: nodes 0 to masters-1 are the masters (redis-cli --cluster
// create takes the first addresses), the others their replicas (ReplicasOf
// tells which). It waits (bounded) until the cluster is ok and every replica
// is in sync with its master. A master killed with KillMaster is replaced by
// one of its replicas once the cluster notices (cluster-node-timeout is 2 s).
func StartClusterWithReplicas(t testing.TB, masters, replicas int, opts ...Option) *Cluster {
	t.Helper()
	if replicas < 1 {
		t.Fatalf("redistest: StartClusterWithReplicas needs at least 1 replica per master, got %d", replicas)
	}
	return startCluster(t, masters, replicas, opts)
}

func startCluster(t testing.TB, masters, replicas int, opts []Option) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a cluster needs at least 3 masters, got %d", masters)
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	cli := Bin(t, "redis-cli")
	c := &Cluster{t: t}
	for i := 0; i < masters*(1+replicas); i++ {
		busPort := freeport.Port(t)
		c.nodes = append(c.nodes, start(t, func(port int) []string {
			return append([]string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "2000",
				"--cluster-port", strconv.Itoa(busPort),
			}, cfg.args...)
		}))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK()
	if replicas > 0 {
		c.waitReplicas(masters)
	}
	return c
}

// waitReplicas waits (up to 20 s) until nodes masters onwards are replicas
// whose link to their master is up and whose initial sync is done.
func (c *Cluster) waitReplicas(masters int) {
	c.t.Helper()
	var last string
	for i := 0; i < 200; i++ {
		ok := true
		for j := masters; j < len(c.nodes) && ok; j++ {
			info, err := c.nodes[j].Do("INFO", "replication")
			if err != nil || !strings.Contains(info, "role:slave") ||
				!strings.Contains(info, "master_link_status:up") || !strings.Contains(info, "master_sync_in_progress:0") {
				ok, last = false, fmt.Sprintf("node %d: %s %v", j, info, err)
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("redistest: replicas not in sync after 20s: %s", last)
}

// ReplicasOf lists the nodes that replicate node i, as CLUSTER NODES on a
// running node tells.
func (c *Cluster) ReplicasOf(i int) []int {
	c.t.Helper()
	byPort := map[string]int{}
	for j, n := range c.nodes {
		byPort[strconv.Itoa(n.port)] = j
	}
	var table string
	for _, n := range c.nodes {
		if r, err := n.Do("CLUSTER", "NODES"); err == nil {
			table = r
			break
		}
	}
	ids := map[string]int{} // node id -> index
	var lines [][]string
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		hostPort, _, _ := strings.Cut(f[1], "@")
		_, port, _ := net.SplitHostPort(hostPort)
		if j, ok := byPort[port]; ok {
			ids[f[0]] = j
			lines = append(lines, f)
		}
	}
	var out []int
	for _, f := range lines {
		if m, ok := ids[f[3]]; ok && m == i && strings.Contains(f[2], "slave") {
			out = append(out, ids[f[0]])
		}
	}
	if table == "" {
		c.t.Fatalf("redistest: no node answered CLUSTER NODES")
	}
	return out
}

// Role is "master" or "slave" for a running node (ROLE), "" otherwise.
func (c *Cluster) Role(i int) string {
	r, err := c.nodes[i].Do("ROLE")
	if err != nil {
		return ""
	}
	role, _, _ := strings.Cut(r, "\n")
	return role
}

// WaitOK waits (up to 20 s) until every running node reports
// cluster_state:ok and all slots assigned.
func (c *Cluster) WaitOK() {
	c.t.Helper()
	var last string
	for i := 0; i < 200; i++ {
		ok := true
		for _, n := range c.nodes {
			if !n.Running() {
				continue
			}
			info, err := n.Do("CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				ok, last = false, info
				if err != nil {
					last = err.Error()
				}
				break
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("redistest: cluster not ok after 20s: %s", last)
}

// Addrs lists the nodes' "127.0.0.1:port".
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		a[i] = n.Addr()
	}
	return a
}

// Node returns node i, e.g. to Start it again after KillMaster.
func (c *Cluster) Node(i int) *Server { return c.nodes[i] }

// KillMaster kills node i with SIGKILL. With no replicas its slots go
// down until it is started again (Node(i).Start(): empty, with its slots);
// with replicas one of them takes over once the cluster notices, and the
// node started again rejoins as a replica.
func (c *Cluster) KillMaster(i int) { c.nodes[i].Kill() }

// StartSentinel starts one Sentinel (redis-server --sentinel) watching
// masterAddr under name master, with a quorum of 1, and waits (bounded)
// until it knows the master.
func StartSentinel(t testing.TB, master, masterAddr string) *Server {
	t.Helper()
	host, port, err := net.SplitHostPort(masterAddr)
	if err != nil {
		t.Fatalf("redistest: master address: %v", err)
	}
	bin := Bin(t, "redis-server")
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	for attempt := 0; attempt < 5; attempt++ {
		s.port = freeport.Port(t)
		conf := filepath.Join(s.dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"+
			"sentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 2000\n",
			s.port, s.dir, master, host, port, master, master)
		if err = os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.args = []string{conf, "--sentinel"}
		if err = s.launch(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: sentinel did not start: %v", err)
	}
	for i := 0; i < 100; i++ {
		if r, err := s.Do("SENTINEL", "get-master-addr-by-name", master); err == nil && r != "" {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("redistest: sentinel does not know master %s: %s", master, s.logTail())
	return nil
}
