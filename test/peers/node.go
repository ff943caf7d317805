package peers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/freeport"
)

// Paths inside test/node.
const (
	everythingEntry = "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
	sdkPackage      = "node_modules/@modelcontextprotocol/sdk/package.json"
	clientScript    = "client.mjs"
)

const nodeFix = "cd test/node && npm ci"

// NodeDir returns the absolute path of test/node.
func NodeDir() (string, error) {
	dir, err := peersDir()
	if err != nil {
		return "", err
	}
	return filepath.Clean(filepath.Join(dir, "..", "node")), nil
}

// nodeSetup checks that node and test/node/node_modules are there, and fails
// the test loudly if not. It never skips: in CI (CI=true) a missing node peer
// is a broken pipeline, and locally it is a missing setup step.
func nodeSetup(t testing.TB) (node, dir string) {
	t.Helper()
	dir, err := NodeDir()
	if err != nil {
		t.Fatal(err)
	}
	where := "locally"
	if os.Getenv("CI") == "true" {
		where = "in CI (CI=true)"
	}
	node, err = exec.LookPath("node")
	if err != nil {
		t.Fatalf("\n*** peers: node is not installed (%v), %s.\n*** The node MCP peers need node >= 20; install it, then run:\n***     %s\n", err, where, nodeFix)
	}
	for _, f := range []string{everythingEntry, sdkPackage, clientScript} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("\n*** peers: %s is missing (%v), %s.\n*** Install the node MCP peers first:\n***     %s\n", filepath.Join(dir, f), err, where, nodeFix)
		}
	}
	return node, dir
}

// StartEverything starts @modelcontextprotocol/server-everything in
// streamable HTTP mode (stateful; endpoint /mcp; port from PORT) on a free
// loopback port, waits (bounded) until it accepts connections, and stops it
// when the test ends. It fails the test if node or test/node/node_modules is
// missing.
func StartEverything(t testing.TB) *Replica {
	t.Helper()
	node, dir := nodeSetup(t)
	r := &Replica{t: t, kind: KindEverything, name: "everything", bin: node, dir: dir,
		args: []string{everythingEntry, "streamableHttp"}}
	var err error
	// A port picked free may be taken before node binds it: retry.
	for range 3 {
		if err = r.start(""); err == nil {
			t.Cleanup(r.Stop)
			return r
		}
	}
	t.Fatalf("peers: start everything server: %v", err)
	return nil
}

func (r *Replica) startEverything(addr string) error {
	if addr == "" {
		free, err := freeport.Find(1)
		if err != nil {
			return err
		}
		addr = free[0]
	}
	_, port, _ := net.SplitHostPort(addr)
	env := append(os.Environ(), "PORT="+port)
	p, err := startProcess(r.bin, r.args, r.dir, env)
	if err != nil {
		return err
	}
	if err := waitDial(addr, p, startTimeout); err != nil {
		p.kill()
		return fmt.Errorf("%w\n--- everything output ---\n%s", err, p.log.String())
	}
	r.mu.Lock()
	r.addr, r.proc = addr, p
	r.mu.Unlock()
	return nil
}

// waitDial polls addr until it accepts a connection, the process exits, or
// timeout passes.
func waitDial(addr string, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before accepting connections on %s: %v", addr, p.err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing accepts connections on %s after %s: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --- the node client ---

// NodeClientOptions configure RunNodeClientWith.
type NodeClientOptions struct {
	// URL is the MCP endpoint.
	URL string
	// Headers are sent with every request (POST, GET and DELETE).
	Headers map[string]string
	// Args are extra client.mjs options, e.g. "--keep-session",
	// "--elicit-action", "decline", "--progress-steps", "5".
	Args []string
	// Timeout bounds each MCP request (client.mjs --timeout-ms); 0 means 15 s.
	Timeout time.Duration
	// Deadline bounds the whole run; the process is killed after it plus 5 s.
	// 0 means 50 s.
	Deadline time.Duration
}

// NodeResult is the JSON line client.mjs prints.
type NodeResult struct {
	OK                 bool            `json:"ok"`
	URL                string          `json:"url"`
	SessionID          string          `json:"sessionId"`
	ProtocolVersion    string          `json:"protocolVersion"`
	ServerInfo         *NodeServerInfo `json:"serverInfo"`
	ServerCapabilities json.RawMessage `json:"serverCapabilities"`
	Tools              []struct {
		Name string `json:"name"`
	} `json:"tools"`
	Steps          []NodeStep          `json:"steps"`
	ServerRequests []NodeServerRequest `json:"serverRequests"`
	Notifications  []NodeEvent         `json:"notifications"`
	Errors         []NodeError         `json:"errors"`
	AsyncErrors    []NodeError         `json:"asyncErrors"`
	LateProgress   []NodeEvent         `json:"lateProgress"`
	HTTP           []NodeHTTP          `json:"http"`
	Terminate      *struct {
		OK bool `json:"ok"`
		NodeError
	} `json:"terminate"`
	ElapsedMs  int64  `json:"elapsedMs"`
	UsageError string `json:"usageError"`

	// Raw is the line as printed; ExitCode is the script's exit status;
	// Stderr is what it wrote there.
	Raw      string `json:"-"`
	ExitCode int    `json:"-"`
	Stderr   string `json:"-"`
}

// NodeServerInfo is the server's implementation info.
type NodeServerInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Title   string `json:"title"`
}

// NodeStep is one scenario's outcome.
type NodeStep struct {
	Scenario string          `json:"scenario"`
	OK       bool            `json:"ok"`
	Tool     string          `json:"tool"`
	Args     json.RawMessage `json:"args"`
	Tools    []string        `json:"tools"`
	Result   json.RawMessage `json:"result"`
	Text     string          `json:"text"`
	IsError  bool            `json:"isError"`
	// ResultSeq is the result's place in the run's arrival order.
	ResultSeq  int                 `json:"resultSeq"`
	ResultAtMs int64               `json:"resultAtMs"`
	DurationMs int64               `json:"durationMs"`
	AnswerSeen bool                `json:"answerSeen"`
	Progress   []NodeEvent         `json:"progress"`
	Late       []NodeEvent         `json:"lateProgress"`
	InOrder    bool                `json:"progressBeforeResult"`
	ServerReqs []NodeServerRequest `json:"serverRequests"`
	Error      *NodeError          `json:"error"`
}

// NodeEvent is a notification (progress or other) with its arrival order.
type NodeEvent struct {
	Seq      int             `json:"seq"`
	AtMs     int64           `json:"atMs"`
	Method   string          `json:"method"`
	Progress float64         `json:"progress"`
	Total    float64         `json:"total"`
	Message  string          `json:"message"`
	Params   json.RawMessage `json:"params"`
}

// NodeServerRequest is a request the server sent to the client.
type NodeServerRequest struct {
	Seq      int             `json:"seq"`
	AtMs     int64           `json:"atMs"`
	Method   string          `json:"method"`
	Message  string          `json:"message"`
	Answered json.RawMessage `json:"answered"`
}

// NodeError is an error as the SDK surfaced it. Kind is "http" (a non-2xx
// answer: HTTPStatus, Body, WWWAuthenticate, and Code/RPCMessage/Data/ID
// when the body is a JSON-RPC envelope; ID is the string "<absent>" when the
// envelope has none), "jsonrpc" (a JSON-RPC error from the server: Code,
// Message, Data), "timeout" (the SDK's own request timeout, which it reports
// as -32001 "Request timed out"), "unauthorized", "deadline" (the whole run)
// or "other".
type NodeError struct {
	Scenario        string          `json:"scenario"`
	Kind            string          `json:"kind"`
	Message         string          `json:"message"`
	HTTPStatus      int             `json:"httpStatus"`
	Code            *int            `json:"code"`
	RPCMessage      string          `json:"rpcMessage"`
	Data            json.RawMessage `json:"data"`
	ID              json.RawMessage `json:"id"`
	Body            json.RawMessage `json:"body"`
	WWWAuthenticate string          `json:"wwwAuthenticate"`
}

// NodeHTTP is one HTTP exchange the client made.
type NodeHTTP struct {
	Seq             int             `json:"seq"`
	AtMs            int64           `json:"atMs"`
	Method          string          `json:"method"`
	RPC             string          `json:"rpc"`
	Status          int             `json:"status"`
	ContentType     string          `json:"contentType"`
	SessionID       string          `json:"sessionId"`
	WWWAuthenticate string          `json:"wwwAuthenticate"`
	Body            json.RawMessage `json:"body"`
	Error           string          `json:"error"`
}

// Step returns the first step of the named scenario, or nil.
func (r NodeResult) Step(scenario string) *NodeStep {
	for i := range r.Steps {
		if r.Steps[i].Scenario == scenario {
			return &r.Steps[i]
		}
	}
	return nil
}

// ToolNames returns the listed tool names, sorted.
func (r NodeResult) ToolNames() []string {
	out := make([]string, 0, len(r.Tools))
	for _, t := range r.Tools {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

// RunNodeClient runs test/node/client.mjs against url with the given extra
// headers and scenarios (e.g. "full", or "call", "echo", `{"text":"hi"}`).
// It returns the parsed result line; err is non-nil when the script exited
// non-zero, printed no result, or was killed at its deadline (the result is
// still filled in as far as it got). It fails the test if node or
// test/node/node_modules is missing.
func RunNodeClient(t testing.TB, url string, headers map[string]string, scenario ...string) (NodeResult, error) {
	t.Helper()
	return RunNodeClientWith(t, NodeClientOptions{URL: url, Headers: headers}, scenario...)
}

// RunNodeClientWith is RunNodeClient with options.
func RunNodeClientWith(t testing.TB, o NodeClientOptions, scenario ...string) (NodeResult, error) {
	t.Helper()
	node, dir := nodeSetup(t)
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Deadline <= 0 {
		o.Deadline = 50 * time.Second
	}
	args := []string{clientScript, "--url", o.URL,
		"--timeout-ms", strconv.FormatInt(o.Timeout.Milliseconds(), 10),
		"--deadline-ms", strconv.FormatInt(o.Deadline.Milliseconds(), 10)}
	keys := make([]string, 0, len(o.Headers))
	for k := range o.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--header", k+": "+o.Headers[k])
	}
	args = append(args, o.Args...)
	args = append(args, scenario...)

	ctx, cancel := context.WithTimeout(context.Background(), o.Deadline+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	var stderr tailBuffer
	stderr.max = maxLogBytes
	cmd.Stderr = &stderr
	stdout, runErr := cmd.Output()

	var res NodeResult
	res.Stderr = stderr.String()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	line := lastJSONLine(string(stdout))
	res.Raw = line
	if line == "" {
		return res, fmt.Errorf("peers: client.mjs printed no result (exit %d, %v)\nstdout: %s\nstderr: %s", res.ExitCode, runErr, stdout, res.Stderr)
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, fmt.Errorf("peers: client.mjs result is not JSON: %v\n%s", err, line)
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("peers: client.mjs killed after %s", o.Deadline+5*time.Second)
	}
	if runErr != nil {
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			return res, fmt.Errorf("peers: client.mjs exit %d: %s", res.ExitCode, summarize(res))
		}
		return res, fmt.Errorf("peers: client.mjs: %v", runErr)
	}
	return res, nil
}

func lastJSONLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.HasPrefix(l, "{") {
			return l
		}
	}
	return ""
}

func summarize(r NodeResult) string {
	var b strings.Builder
	if r.UsageError != "" {
		b.WriteString("usage: " + r.UsageError)
	}
	for _, s := range r.Steps {
		if !s.OK {
			fmt.Fprintf(&b, "[%s failed", s.Scenario)
			if s.Error != nil {
				fmt.Fprintf(&b, ": %s %s", s.Error.Kind, s.Error.Message)
			}
			b.WriteString("] ")
		}
	}
	for _, e := range r.Errors {
		if e.Kind == "deadline" {
			b.WriteString("[deadline: " + e.Message + "]")
		}
	}
	return b.String()
}
