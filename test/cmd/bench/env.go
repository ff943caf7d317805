package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-relay/mcp-relay/test/peers/bad"
	"github.com/mcp-relay/mcp-relay/test/peers/legacy"
)

const (
	demoKey       = "demo-key"
	legacyVersion = "2025-06-18"
	modernVersion = "2026-07-28"
	modernMeta    = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
		`"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}`
)

// env holds the upstreams, all served in-process on loopback.
type env struct {
	c                config
	legacyA, legacyB string // legacy replicas (mcp-go, stateful)
	modern           string // mcp-go defaults: both eras, 2026-07-28 stateless
	bare401          string // answers every request with a bare 401
	stops            []func()
	client           *http.Client
}

func newEnv(ctx context.Context, c config) (*env, error) {
	e := &env{c: c, client: &http.Client{Timeout: 30 * time.Second}}
	var err error
	add := func(h http.Handler) string {
		if err != nil {
			return ""
		}
		var addr string
		var stop func()
		addr, stop, err = serve(ctx, h)
		if err == nil {
			e.stops = append(e.stops, stop)
		}
		return addr
	}
	e.legacyA = add(legacy.New(legacy.Options{Name: "replica-a"}))
	e.legacyB = add(legacy.New(legacy.Options{Name: "replica-b"}))
	e.modern = add(modernHandler())
	h401, herr := bad.Handler(bad.ModeBare401)
	if herr != nil {
		return nil, herr
	}
	e.bare401 = add(h401)
	if err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	for _, s := range e.stops {
		s()
	}
	e.stops = nil
}

// modernHandler is an mcp-go server with its defaults and an echo tool, as
// test/e2e's startModernServer.
func modernHandler() http.Handler {
	s := server.NewMCPServer("modern", "1.0.0")
	s.AddTool(mcp.NewTool("echo", mcp.WithString("text")), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(req.GetString("text", "")), nil
	})
	return server.NewStreamableHTTPServer(s, server.WithDisableLocalhostProtection(true))
}

var rpcIDs atomic.Int64

// result is one HTTP exchange.
type result struct {
	Status      int
	ContentType string
	RequestID   string // X-Kong-Request-Id
	Session     string
	Body        []byte
}

func (r result) String() string {
	return fmt.Sprintf("%d %s %.200s", r.Status, r.ContentType, r.Body)
}

// newRequest builds a request; header is name, value pairs.
func newRequest(method, url, body string, header ...string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url+"/mcp", rd)
	if err != nil {
		panic(err) // the URL is ours
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

func do(client *http.Client, req *http.Request) (result, error) {
	resp, err := client.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: reading: %w", req.Method, req.URL, err)
	}
	return result{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"),
		RequestID: resp.Header.Get("X-Kong-Request-Id"), Session: resp.Header.Get("Mcp-Session-Id"), Body: body}, nil
}

func initializeBody() string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"initialize","params":{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`,
		rpcIDs.Add(1), legacyVersion)
}

func echoBody() string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`, rpcIDs.Add(1))
}

func listBody() string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{}}`, rpcIDs.Add(1))
}

func progressBody() string {
	id := rpcIDs.Add(1)
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"progress","arguments":{"steps":2,"delay_ms":1,"settle_ms":1},"_meta":{"progressToken":"p%d"}}}`, id, id)
}

func modernEchoBody() string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"},%s}}`, rpcIDs.Add(1), modernMeta)
}

// modernHeaders are the 2026-07-28 headers of modernEchoBody.
var modernHeaders = []string{"apikey", demoKey, "MCP-Protocol-Version", modernVersion, "Mcp-Method", "tools/call", "Mcp-Name", "echo"}

// sessionHeaders are the headers of a request on a legacy session.
func sessionHeaders(session string) []string {
	return []string{"apikey", demoKey, "Mcp-Session-Id", session, "MCP-Protocol-Version", legacyVersion}
}

// openSession runs the legacy handshake (initialize, then
// notifications/initialized) through baseURL and returns the session id.
func openSession(client *http.Client, baseURL string) (string, error) {
	r, err := do(client, newRequest(http.MethodPost, baseURL, initializeBody(), "apikey", demoKey))
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusOK || r.Session == "" {
		return "", fmt.Errorf("initialize: %s", r)
	}
	n, err := do(client, newRequest(http.MethodPost, baseURL, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, sessionHeaders(r.Session)...))
	if err != nil {
		return "", err
	}
	if n.Status/100 != 2 {
		return "", fmt.Errorf("notifications/initialized: %s", n)
	}
	return r.Session, nil
}
