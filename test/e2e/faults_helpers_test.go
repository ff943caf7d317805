package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Helpers of faults_test.go.

var (
	panicBinOnce sync.Once
	panicBinPath string
	panicBinErr  error
)

// panicBin builds (once) the plugin with -tags panictest, whose handlers
// panic on request (header X-Mcp-Relay-Panic: access|log). It lives next to
// pluginBin, so TestMain removes it.
func panicBin(t testing.TB) string {
	t.Helper()
	panicBinOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(pluginBin), "panictest")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			panicBinErr = err
			return
		}
		path := filepath.Join(dir, "mcp-relay") // the file name is the plugin name
		var out bytes.Buffer
		build := exec.Command("go", "build", "-tags", "panictest", "-o", path, "github.com/mcp-relay/mcp-relay/plugin")
		build.Stdout, build.Stderr = &out, &out
		if err := build.Run(); err != nil {
			panicBinErr = fmt.Errorf("building the panictest plugin: %v\n%s", err, out.String())
			return
		}
		panicBinPath = path
	})
	if panicBinErr != nil {
		t.Fatal(panicBinErr)
	}
	return panicBinPath
}

// tryResult is one request that may fail without failing the test.
type tryResult struct {
	status int
	text   string // whoami's answer
	err    error
	took   time.Duration
	at     time.Time // when it was sent
}

// tryWhoami calls whoami on c's session without failing the test on a
// transport error (the plugin may be down).
func tryWhoami(c *rawMCP, baseURL string) tryResult {
	start := time.Now()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`, rpcIDs.Add(1))
	req, err := http.NewRequest(http.MethodPost, baseURL+"/mcp", strings.NewReader(body))
	if err != nil {
		return tryResult{err: err, at: start}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	c.headers(req)
	resp, err := c.client.Do(req)
	if err != nil {
		return tryResult{err: err, took: time.Since(start), at: start}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	r := rpcResult{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	payload := raw
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			payload = bytes.TrimSpace(d)
		}
	}
	_ = json.Unmarshal(payload, &r.Message)
	return tryResult{status: resp.StatusCode, text: toolText(r), err: err, took: time.Since(start), at: start}
}

// openAndAbort sends a raw HTTP/1.1 request over its own TCP connection
// and resets it (SO_LINGER 0: an RST, as a crashing client): after the
// response head and its first SSE data line, or, when reached is set, as
// soon as reached() says the request is being served (the head of an idle
// stream may not come at all: Kong's proxy_buffering sends it with the
// first event). It returns the response status line ("" with reached).
func openAndAbort(addr, method, path string, header map[string]string, body string, reached func() bool, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer func() {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
	}()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var req strings.Builder
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, addr)
	for k, v := range header {
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	if body != "" {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.WriteString(body)
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return "", err
	}
	if reached != nil {
		for deadline := time.Now().Add(timeout); !reached(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				return "", fmt.Errorf("%s %s not served within %v", method, path, timeout)
			}
		}
		return "", nil
	}
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("status line: %w", err)
	}
	status = strings.TrimSpace(status)
	for { // the head
		line, err := br.ReadString('\n')
		if err != nil {
			return status, fmt.Errorf("head: %w", err)
		}
		if strings.TrimSpace(line) == "" {
			break
		}
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return status, fmt.Errorf("no first event: %w", err)
		}
		if strings.Contains(line, "data:") {
			return status, nil
		}
	}
}

// forgedUnquoted tells whether line holds the token tok outside any quoted
// value (logfmt: "..." with backslash escapes).
func forgedUnquoted(line, tok string) bool {
	var outside strings.Builder
	inQuote, esc := false, false
	for _, r := range line {
		switch {
		case inQuote && esc:
			esc = false
		case inQuote && r == '\\':
			esc = true
		case r == '"':
			inQuote = !inQuote
			outside.WriteRune(' ')
		case !inQuote:
			outside.WriteRune(r)
		}
	}
	for _, f := range strings.Fields(outside.String()) {
		if f == tok {
			return true
		}
	}
	return false
}
