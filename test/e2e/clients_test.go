package e2e

// TestClientMatrix runs the MCP clients people use (pinned in
// test/clients/package-lock.json, plus the TypeScript SDK of test/node and
// mcp-go) through the stand-in and the real plugin, in every case an MCP
// user meets: a right key, no key, a wrong key, an OAuth-style challenge,
// a streamed tool call with progress, and a session whose replica dies
// (clients_lost_test.go). It asserts that no client hangs (each run is
// killed after clientBound and fails), that auth failures read as
// authentication errors, that right keys work, and that lost sessions are
// recovered. What each client showed is docs/clients.md's table: `go test
// ./test/e2e -run '^TestClientMatrix$' -update-clients` regenerates it;
// otherwise the committed table must match the run, timings aside.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
)

var updateClients = flag.Bool("update-clients", false, "rewrite docs/clients.md's client table from this run (TestClientMatrix)")

// clientBound is how long one client run may take before it counts as hung.
// Gemini CLI alone spends 4-25 s starting up on a loaded 2-core machine: it
// gets geminiBound.
const (
	clientBound = 45 * time.Second
	geminiBound = 90 * time.Second
)

// clientCase is one situation of the matrix.
type clientCase struct {
	name   string
	key    string // apikey header; "" sends none
	oauth  bool   // the node answers auth failures 401 with a resource_metadata challenge
	stream bool   // a streamed tool call with progress, instead of list + call
	// lost: a call, the session's replica killed, a call from the same
	// client (clients_lost_test.go); noRecover turns session.recover off.
	lost, noRecover bool
}

var clientCases = []clientCase{
	{name: "right key", key: demoKey},
	{name: "no key"},
	{name: "wrong key", key: "wrong-key"},
	{name: "OAuth challenge, no key", oauth: true},
	{name: "progress (streamed call)", key: demoKey, stream: true},
	{name: "session lost (its replica killed)", key: demoKey, lost: true},
	{name: "session lost, `recover: false`", key: demoKey, lost: true, noRecover: true},
}

func (c clientCase) authFailure() bool { return c.key != demoKey }

// clientRun is what one client did in one case.
type clientRun struct {
	line    string // what the user sees: the client's own words
	ok      bool   // the run succeeded (the call's result, a "Connected" health check)
	hung    bool   // killed after clientBound
	skipped string // the client cannot do this case (why)
	took    time.Duration
	ran     bool // false: filtered out with -run
}

// matrixClient runs one client against url with the case's key.
type matrixClient struct {
	name string
	// authWords: what its line says on an auth failure (lower case, any of).
	authWords []string
	run       func(t *testing.T, url string, c clientCase) clientRun
	// lost runs the lost-session cases; oneShot says why a client without
	// it has no session that outlives one request.
	lost    func(t *testing.T, g *lostRig) clientRun
	oneShot string
}

func TestClientMatrix(t *testing.T) {
	dir := clientsDir(t)
	replica := peers.StartLegacy(t, "matrix")
	plain := startNode(t, deck(t, deckOptions{}), addrs(replica))
	oauth := startNode(t, deck(t, deckOptions{relay: map[string]any{
		"envelope": map[string]any{"status": "keep"},
		"auth": map[string]any{"www_authenticate": `Bearer resource_metadata="` + plain.URL() +
			`/.well-known/oauth-protected-resource/mcp"`}}}), addrs(replica))

	clients := []matrixClient{
		{name: "TypeScript SDK 1.32.2", authWords: []string{"authentication failed", "401"}, run: runTSClient, lost: lostTS},
		{name: "mcp-go v1.2.1", authWords: []string{"authentication failed", "authorization required"}, run: runMCPGo, lost: lostMCPGo},
		{name: "mcp-remote 0.15.1", authWords: []string{"authentication failed", "client registration"}, run: runMCPRemote(dir), lost: lostMCPRemote(dir)},
		{name: "MCP Inspector CLI 0.16.8", authWords: []string{"authentication failed", "401"},
			run: runInspector("node", filepath.Join(dir, "node_modules", "@modelcontextprotocol", "inspector-cli", "build", "index.js")), oneShot: inspectorOneShot},
		{name: "MCP Inspector 2.12.0 `--cli` (node 22)", authWords: []string{"authentication failed", "auth_required"},
			run: runInspector(filepath.Join(dir, "node_modules", ".bin", "node"),
				filepath.Join(dir, "node_modules", "@modelcontextprotocol", "inspector", "clients", "launcher", "build", "index.js"), "--cli"), oneShot: inspectorOneShot},
		{name: "Claude Code 2.1.332 (`claude mcp list`)", authWords: []string{"failed to connect", "needs authentication"}, run: runClaude(dir), oneShot: listOneShot},
		{name: "Gemini CLI 0.61.0 (`gemini mcp list`)", authWords: []string{"disconnected"}, run: runGemini(dir), oneShot: listOneShot},
	}

	results := make([][]clientRun, len(clients))
	for i, cl := range clients {
		results[i] = make([]clientRun, len(clientCases))
		for j, cc := range clientCases {
			url := plain.URL() + "/mcp"
			if cc.oauth {
				url = oauth.URL() + "/mcp"
			}
			t.Run(cl.name+"/"+cc.name, func(t *testing.T) {
				var r clientRun
				switch {
				case cc.lost && cl.lost == nil:
					r = clientRun{skipped: cl.oneShot}
				case cc.lost:
					r = runLost(t, cl, cc)
				default:
					r = cl.run(t, url, cc)
				}
				r.line = normalizeLine(r.line, plain.URL(), oauth.URL())
				r.ran = true
				results[i][j] = r
				t.Logf("%s | %s | %q ok=%v %.1fs", cl.name, cc.name, r.line, r.ok, r.took.Seconds())
				switch {
				case r.skipped != "":
				case r.hung:
					t.Errorf("hung: no answer within the bound (last output %q)", r.line)
				case cc.lost && cc.noRecover: // what the client does alone: recorded
				case cc.lost && !r.ok:
					t.Errorf("the call after the kill must be recovered: %q", r.line)
				case !cc.authFailure() && !r.ok:
					t.Errorf("a right key must work: %q", r.line)
				case cc.authFailure() && r.ok:
					t.Errorf("an auth failure must not succeed: %q", r.line)
				case cc.authFailure() && !containsAny(strings.ToLower(r.line), cl.authWords):
					t.Errorf("an auth failure must read as one (%q): %q", cl.authWords, r.line)
				}
			})
		}
	}
	checkClientTable(t, clients, results)
}

// progressLine says whether progress came before the result; how many
// notifications arrive first varies with timing.
func progressLine(n int, result string) string {
	if n == 0 {
		return "no progress shown; result: " + result
	}
	return "progress shown, then result: " + result
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

var (
	ansi       = regexp.MustCompile("\x1b\\[[0-9;]*[a-zA-Z]")
	pidPrefix  = regexp.MustCompile(`^\[\d+\] `)
	portNumber = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	requestID  = regexp.MustCompile(`"request_id":"[0-9a-f]+"`)
)

// normalizeLine makes a client's line comparable between runs: no colours,
// pids, ports; one line, bounded.
func normalizeLine(s string, urls ...string) string {
	s = ansi.ReplaceAllString(s, "")
	s = strings.Join(strings.Fields(s), " ")
	s = pidPrefix.ReplaceAllString(s, "")
	for _, u := range urls {
		s = strings.ReplaceAll(s, u, "http://kong")
	}
	s = portNumber.ReplaceAllString(s, "127.0.0.1:PORT")
	s = requestID.ReplaceAllString(s, `"request_id":"…"`)
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func clientsDir(t *testing.T) string {
	t.Helper()
	dir := repoFile("test/clients")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "mcp-remote")); err != nil {
		t.Fatalf("\n*** the client matrix needs the pinned clients: %v\n***     make client-deps   (or: cd test/clients && npm ci)\n", err)
	}
	return dir
}

// --- running processes, bounded ---

// runBounded runs cmd with a fresh HOME, kills it (and its children) after
// bound, and returns its output.
func runBounded(t *testing.T, cmd *exec.Cmd, bound time.Duration) (stdout, stderr string, took time.Duration, hung bool, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	start := time.Now()
	if err = startGroup(cmd); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		hung = true
		killGroup(cmd)
		err = <-done
	}
	return out.String(), errb.String(), time.Since(start), hung, err
}

// clientEnv is a clean environment: HOME in a temp dir, no terminal.
func clientEnv(t *testing.T, extra ...string) (env []string, home string) {
	home = t.TempDir()
	env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "NO_COLOR=1", "CI=true", "TERM=dumb"}
	return append(env, extra...), home
}

func lastLine(s string, keep func(string) bool) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && (keep == nil || keep(l)) {
			return l
		}
	}
	return ""
}

// --- the clients ---

// runTSClient: the TypeScript SDK's Client (test/node/client.mjs).
func runTSClient(t *testing.T, url string, c clientCase) clientRun {
	headers := map[string]string{}
	if c.key != "" {
		headers["apikey"] = c.key
	}
	scenario := []string{"call", "echo", `{"text":"hi"}`}
	if c.stream {
		scenario = []string{"progress"}
	}
	start := time.Now()
	res, err := peers.RunNodeClientWith(t, peers.NodeClientOptions{URL: url, Headers: headers,
		Timeout: 10 * time.Second, Deadline: clientBound - 5*time.Second}, append([]string{"tools-list"}, scenario...)...)
	r := clientRun{took: time.Since(start), ok: err == nil && res.OK}
	switch {
	case len(res.Errors) > 0:
		e := res.Errors[0]
		r.line = e.Message
		if e.Kind == "http" {
			r.line = fmt.Sprintf("HTTP %d %s", e.HTTPStatus, e.RPCMessage)
		}
		r.hung = e.Kind == "deadline"
	case r.ok:
		last := res.Steps[len(res.Steps)-1]
		r.line = "result: " + last.Text
		if c.stream {
			r.line = progressLine(len(last.Progress), last.Text)
		}
	default:
		r.line = fmt.Sprint(err)
	}
	return r
}

// runMCPGo: mcp-go's client, in this process.
func runMCPGo(t *testing.T, url string, c clientCase) clientRun {
	headers := map[string]string{}
	if c.key != "" {
		headers["apikey"] = c.key
	}
	start := time.Now()
	cl, _, err := mcptest.NewClient(t, url, mcptest.Config{Version: mcp.ProtocolVersion20251125, Headers: headers})
	if err != nil {
		return clientRun{line: err.Error(), took: time.Since(start), hung: errors.Is(err, context.DeadlineExceeded)}
	}
	if _, err := cl.ListTools(context.Background(), mcp.ListToolsRequest{}); err != nil {
		return clientRun{line: err.Error(), took: time.Since(start)}
	}
	tool, args, meta := "echo", map[string]any{"text": "hi"}, (*mcp.Meta)(nil)
	if c.stream {
		tool, args, meta = "progress", map[string]any{"steps": 3, "delay_ms": 100}, &mcp.Meta{ProgressToken: "matrix"}
	}
	res, err := mcptest.CallToolErr(cl, tool, args, meta, clientBound-5*time.Second)
	r := clientRun{took: time.Since(start)}
	if err != nil {
		r.line = err.Error()
		return r
	}
	r.ok = !res.IsError
	r.line = "result: " + mcptest.Text(res)
	if c.stream {
		r.line = progressLine(len(cl.Events.Progress("matrix")), mcptest.Text(res))
	}
	return r
}

// startMCPRemote starts one mcp-remote bridge for url (with the apikey
// header when key is set) in its own process group; stop kills the group
// and waits for the process.
func startMCPRemote(t *testing.T, dir, url, key string) (stdin io.Writer, stdout io.Reader, stderr *syncBuffer, stop func()) {
	t.Helper()
	args := []string{filepath.Join(dir, "node_modules", "mcp-remote", "dist", "proxy.js"), url}
	if key != "" {
		args = append(args, "--header", "apikey:"+key)
	}
	env, _ := clientEnv(t)
	cmd := exec.Command("node", args...)
	cmd.Env = env
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := startGroup(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	return in, out, stderr, func() { killGroup(cmd); <-exited }
}

// runMCPRemote: mcp-remote, the stdio bridge many desktop clients use,
// driven over stdin/stdout as such a client drives it.
func runMCPRemote(dir string) func(*testing.T, string, clientCase) clientRun {
	return func(t *testing.T, url string, c clientCase) clientRun {
		start := time.Now()
		stdin, stdout, stderr, stop := startMCPRemote(t, dir, url, c.key)
		defer stop()

		tool, toolArgs := "echo", `{"text":"hi"}`
		if c.stream {
			tool, toolArgs = "progress", `{"steps":3,"delay_ms":100}`
		}
		send := func(s string) { _, _ = io.WriteString(stdin, s+"\n") }
		send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"matrix","version":"1"}}}`)

		type result struct {
			line string
			ok   bool
		}
		done := make(chan result, 1)
		go func() {
			progress := 0
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var m struct {
					ID     json.RawMessage `json:"id"`
					Method string          `json:"method"`
					Result json.RawMessage `json:"result"`
					Error  *struct{ Message string }
				}
				if json.Unmarshal(sc.Bytes(), &m) != nil {
					continue
				}
				if m.Method == "notifications/progress" {
					progress++
					continue
				}
				if m.Error != nil {
					done <- result{line: m.Error.Message}
					return
				}
				switch string(m.ID) {
				case "1":
					send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
					send(`{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}`)
				case "2":
					send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + toolArgs + `,"_meta":{"progressToken":"matrix"}}}`)
				case "3":
					var res struct{ Content []struct{ Text string } }
					_ = json.Unmarshal(m.Result, &res)
					text := ""
					if len(res.Content) > 0 {
						text = res.Content[0].Text
					}
					line := "result: " + text
					if c.stream {
						line = progressLine(progress, text)
					}
					done <- result{line: line, ok: true}
					return
				}
			}
			done <- result{} // stdout closed: the process ended
		}()
		timer := time.NewTimer(clientBound)
		defer timer.Stop()
		select {
		case res := <-done:
			r := clientRun{line: res.line, ok: res.ok, took: time.Since(start)}
			if !res.ok {
				r.line = mcpRemoteLine(stderr.String(), res.line)
			}
			return r
		case <-timer.C:
			return clientRun{line: mcpRemoteLine(stderr.String(), ""), hung: true, took: time.Since(start)}
		}
	}
}

// mcpRemoteLine picks what mcp-remote told its user on stderr: its fatal
// error, else the last line it printed.
func mcpRemoteLine(stderr, jsonrpcError string) string {
	if jsonrpcError != "" {
		return jsonrpcError
	}
	for _, marker := range []string{"Fatal error:", "Connection error:"} {
		if l := lastLine(stderr, func(l string) bool { return strings.Contains(l, marker) }); l != "" {
			return l
		}
	}
	return lastLine(stderr, nil)
}

// runInspector: the MCP Inspector's CLI mode, entry run by node with
// the arguments before the CLI's own.
func runInspector(node string, entry ...string) func(*testing.T, string, clientCase) clientRun {
	return func(t *testing.T, url string, c clientCase) clientRun {
		args := append(append([]string{}, entry...),
			url, "--transport", "http", "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "text=hi")
		if c.stream {
			args = append(append([]string{}, entry...), url, "--transport", "http", "--method", "tools/call", "--tool-name", "progress",
				"--tool-arg", "steps=3", "--tool-arg", "delay_ms=100")
		}
		if c.key != "" {
			args = append(args, "--header", "apikey: "+c.key)
		}
		env, _ := clientEnv(t)
		cmd := exec.Command(node, args...)
		cmd.Env = env
		stdout, stderr, took, hung, err := runBounded(t, cmd, clientBound)
		r := clientRun{took: took, hung: hung}
		if err == nil {
			var res struct{ Content []struct{ Text string } }
			_ = json.Unmarshal([]byte(stdout), &res)
			if len(res.Content) > 0 {
				r.ok, r.line = true, "result: "+res.Content[0].Text
				return r
			}
		}
		r.line = lastLine(stderr, func(l string) bool { return !strings.HasPrefix(l, "Failed with exit code") })
		return r
	}
}

// runClaude: Claude Code's health check of its configured MCP servers.
func runClaude(dir string) func(*testing.T, string, clientCase) clientRun {
	return func(t *testing.T, url string, c clientCase) clientRun {
		if c.stream {
			return clientRun{skipped: "`mcp list` only connects"}
		}
		env, home := clientEnv(t, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1")
		server := map[string]any{"type": "http", "url": url}
		if c.key != "" {
			server["headers"] = map[string]string{"apikey": c.key}
		}
		writeJSON(t, filepath.Join(home, ".claude.json"), map[string]any{
			"hasCompletedOnboarding": true,
			"mcpServers":             map[string]any{"relay": server},
		})
		cmd := exec.Command(filepath.Join(dir, "node_modules", ".bin", "claude"), "mcp", "list")
		cmd.Env, cmd.Dir = env, home
		stdout, stderr, took, hung, _ := runBounded(t, cmd, clientBound)
		line := lastLine(stdout+"\n"+stderr, func(l string) bool { return strings.HasPrefix(l, "relay:") })
		if line == "" {
			line = lastLine(stdout+"\n"+stderr, nil)
		}
		return clientRun{line: line, took: took, hung: hung, ok: strings.Contains(line, "Connected") && !strings.Contains(line, "Failed")}
	}
}

// runGemini: Gemini CLI's health check of its configured MCP servers.
func runGemini(dir string) func(*testing.T, string, clientCase) clientRun {
	return func(t *testing.T, url string, c clientCase) clientRun {
		if c.stream {
			return clientRun{skipped: "`mcp list` only connects"}
		}
		env, home := clientEnv(t)
		server := map[string]any{"httpUrl": url}
		if c.key != "" {
			server["headers"] = map[string]string{"apikey": c.key}
		}
		work := filepath.Join(home, "work")
		if err := os.MkdirAll(work, 0o755); err != nil {
			t.Fatal(err)
		}
		writeJSON(t, filepath.Join(home, ".gemini", "settings.json"), map[string]any{"mcpServers": map[string]any{"relay": server}})
		writeJSON(t, filepath.Join(home, ".gemini", "trustedFolders.json"), map[string]any{work: "TRUST_FOLDER"})
		cmd := exec.Command(filepath.Join(dir, "node_modules", ".bin", "gemini"), "mcp", "list")
		cmd.Env, cmd.Dir = env, work
		stdout, stderr, took, hung, _ := runBounded(t, cmd, geminiBound)
		line := lastLine(stdout+"\n"+stderr, func(l string) bool { return strings.Contains(l, "relay") })
		if line == "" {
			line = lastLine(stdout+"\n"+stderr, nil)
		}
		return clientRun{line: line, took: took, hung: hung,
			ok: strings.Contains(line, "Connected") && !strings.Contains(line, "Disconnected")}
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// --- docs/clients.md's client table ---

const (
	clientsBegin = "<!-- clients:begin -->"
	clientsEnd   = "<!-- clients:end -->"
)

var seconds = regexp.MustCompile(` \(\d+\.\d s\)`)

func clientTable(clients []matrixClient, results [][]clientRun) string {
	var b strings.Builder
	b.WriteString(clientsBegin + "\n<!-- generated by `go test ./test/e2e -run '^TestClientMatrix$' -update-clients`: what each client showed, and how long it took -->\n\n")
	b.WriteString("| client |")
	for _, c := range clientCases {
		b.WriteString(" " + c.name + " |")
	}
	b.WriteString("\n|---|")
	for range clientCases {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for i, cl := range clients {
		b.WriteString("| " + cl.name + " |")
		for _, r := range results[i] {
			switch {
			case r.skipped != "":
				b.WriteString(" n/a: " + r.skipped + " |")
			case r.hung:
				b.WriteString(" **hangs** (killed) |")
			default:
				fmt.Fprintf(&b, " `%s` (%.1f s) |", strings.ReplaceAll(r.line, "`", "'"), r.took.Seconds())
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n" + clientsEnd)
	return b.String()
}

// checkClientTable compares docs/clients.md's table with this run, timings aside,
// or rewrites it with -update-clients.
func checkClientTable(t *testing.T, clients []matrixClient, results [][]clientRun) {
	t.Helper()
	for _, row := range results {
		for _, r := range row {
			if !r.ran {
				t.Log("part of the matrix was filtered out: docs/clients.md's table is not compared")
				return
			}
		}
	}
	readme := repoFile("docs/clients.md")
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	begin, end := strings.Index(doc, clientsBegin), strings.Index(doc, clientsEnd)
	if begin < 0 || end < begin {
		t.Fatalf("docs/clients.md has no %s ... %s section", clientsBegin, clientsEnd)
	}
	table := clientTable(clients, results)
	committed := doc[begin : end+len(clientsEnd)]
	if *updateClients {
		if err := os.WriteFile(readme, []byte(doc[:begin]+table+doc[end+len(clientsEnd):]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if seconds.ReplaceAllString(committed, "") != seconds.ReplaceAllString(table, "") {
		t.Errorf("docs/clients.md's client table differs from this run (rerun with -update-clients if the change is intended):\n%s", table)
	}
}

// startGroup starts cmd in its own process group, so that killGroup ends the
// client and every process it spawned (npm wrappers, native binaries).
func startGroup(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd.Start()
}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// TestMCPRemoteTakesUnauthorizedForOAuth is why envelope.auth_message must
// not contain "Unauthorized": mcp-remote then starts a browser sign-in and
// waits for it, instead of telling its user the key is wrong.
func TestMCPRemoteTakesUnauthorizedForOAuth(t *testing.T) {
	dir := clientsDir(t)
	replica := peers.StartLegacy(t, "oauth-trap")
	node := startNode(t, deck(t, deckOptions{relay: map[string]any{
		"envelope": map[string]any{"auth_message": "Unauthorized"}}}), addrs(replica))

	env, _ := clientEnv(t)
	cmd := exec.Command("node", filepath.Join(dir, "node_modules", "mcp-remote", "dist", "proxy.js"), node.URL()+"/mcp")
	cmd.Env = env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := startGroup(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { killGroup(cmd); <-exited })
	_, _ = io.WriteString(stdin, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"matrix","version":"1"}}}`+"\n")

	deadline := time.After(clientBound)
	for !strings.Contains(stderr.String(), "Waiting for authorization") {
		select {
		case <-exited:
			t.Fatalf("mcp-remote exited instead of waiting for a sign-in:\n%s", stderr.String())
		case <-deadline:
			t.Fatalf("mcp-remote neither waited for a sign-in nor exited within %s:\n%s", clientBound, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	select {
	case <-exited:
		t.Fatalf("mcp-remote exited:\n%s", stderr.String())
	default: // still waiting for a browser that never comes
	}
}
