package peers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

const (
	elicitAnswer = "answer-from-go-client"
	sampleAnswer = "sample-from-go-client"
)

// events records notifications and results in arrival order.
type events struct {
	mu   sync.Mutex
	seq  int
	list []event
}

type event struct {
	seq    int
	method string
	params map[string]any
}

func (e *events) add(method string, params map[string]any) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	e.list = append(e.list, event{seq: e.seq, method: method, params: params})
	return e.seq
}

func (e *events) snapshot() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]event(nil), e.list...)
}

func (e *events) progress(token string) []event {
	var out []event
	for _, ev := range e.snapshot() {
		if ev.method == string(mcp.MethodNotificationProgress) && fmt.Sprint(ev.params["progressToken"]) == token {
			out = append(out, ev)
		}
	}
	return out
}

type elicitor struct{ calls *events }

func (h elicitor) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	h.calls.add(string(mcp.MethodElicitationCreate), map[string]any{"message": req.Params.Message})
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{
		Action:  mcp.ElicitationResponseActionAccept,
		Content: map[string]any{"answer": elicitAnswer},
	}}, nil
}

type sampler struct{ calls *events }

func (h sampler) CreateMessage(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	h.calls.add(string(mcp.MethodSamplingCreateMessage), nil)
	return &mcp.CreateMessageResult{
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent(sampleAnswer)},
		Model:           "go-canned-model",
		StopReason:      "endTurn",
	}, nil
}

type goClient struct {
	*client.Client
	events  *events // notifications, in arrival order
	answers *events // server requests the handlers answered
}

type clientConfig struct {
	version   string // "" = mcp-go's default (2026-07-28 first)
	listen    bool   // open the GET stream (needed for mcp-go sampling)
	headers   map[string]string
	noHandler bool
}

// newGoClient starts and initializes an mcp-go client; it is closed when the
// test ends.
func newGoClient(t *testing.T, url string, cfg clientConfig) (*goClient, *mcp.InitializeResult, error) {
	t.Helper()
	var topts []transport.StreamableHTTPCOption
	if cfg.listen {
		//lint:ignore SA1019 the legacy GET stream is what these tests exercise.
		topts = append(topts, transport.WithContinuousListening())
	}
	if cfg.headers != nil {
		topts = append(topts, transport.WithHTTPHeaders(cfg.headers))
	}
	tr, err := transport.NewStreamableHTTP(url, topts...)
	if err != nil {
		t.Fatal(err)
	}
	gc := &goClient{events: &events{}, answers: &events{}}
	var copts []client.ClientOption
	if cfg.version != "" {
		copts = append(copts, client.WithProtocolVersion(cfg.version))
	}
	if !cfg.noHandler {
		copts = append(copts,
			client.WithElicitationHandler(elicitor{gc.answers}),
			client.WithSamplingHandler(sampler{gc.answers}))
	}
	gc.Client = client.NewClient(tr, copts...)
	gc.OnNotification(func(n mcp.JSONRPCNotification) {
		gc.events.add(n.Method, n.Params.AdditionalFields)
	})
	// The context given to Start bounds the GET stream's life, not just the
	// start: it must outlive the client.
	if err := gc.Start(context.Background()); err != nil {
		t.Fatalf("start client: %v", err)
	}
	t.Cleanup(func() { _ = gc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "mcp-relay-peers-test", Version: "1.0.0"}
	res, err := gc.Initialize(ctx, init)
	return gc, res, err
}

func callTool(t *testing.T, c *goClient, name string, args map[string]any, meta *mcp.Meta) *mcp.CallToolResult {
	t.Helper()
	res, err := callToolErr(c, name, args, meta, 15*time.Second)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	if res.IsError {
		t.Fatalf("call %s: tool error: %s", name, text(res))
	}
	return res
}

func callToolErr(c *goClient, name string, args map[string]any, meta *mcp.Meta, timeout time.Duration) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	if args == nil {
		// A nil map would go out as "arguments": null, which TypeScript
		// servers reject.
		args = map[string]any{}
	}
	req.Params.Arguments = args
	req.Params.Meta = meta
	return c.CallTool(ctx, req)
}

func text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// rawRequest sends one HTTP request and returns the response with its body
// read (for a GET stream, only the status and headers: the body is closed).
func rawRequest(t *testing.T, method, url, session, body string) (*http.Response, string) {
	t.Helper()
	h := map[string]string{mcp.HeaderProtocolVersion: mcp.ProtocolVersion20251125}
	if session != "" {
		h["Mcp-Session-Id"] = session
	}
	return rawRequestWith(t, method, url, h, body)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// rawRequestWith is rawRequest with arbitrary headers.
func rawRequestWith(t *testing.T, method, url string, headers map[string]string, body string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if method == http.MethodGet {
		return resp, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// stream is an open GET stream read in the background.
type stream struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (s *stream) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.buf.String(), sub)
}

// openGET opens the session's GET stream; it is closed when the test ends.
func openGET(t *testing.T, url, session string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set(mcp.HeaderProtocolVersion, mcp.ProtocolVersion20251125)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET stream: HTTP %d", resp.StatusCode)
	}
	s := &stream{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			s.mu.Lock()
			s.buf.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return s
}
