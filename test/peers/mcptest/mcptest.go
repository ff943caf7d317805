// Package mcptest has MCP client helpers shared by the peers tests and the
// end-to-end tests: an mcp-go client with elicitation and sampling handlers
// that records what arrives, and raw HTTP helpers.
package mcptest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// The canned answers of the client handlers.
const (
	ElicitAnswer = "answer-from-go-client"
	SampleAnswer = "sample-from-go-client"
)

// events records notifications and results in arrival order.
// Events records notifications and answers in arrival order.
type Events struct {
	mu   sync.Mutex
	seq  int
	list []Event
}

// Event is one arrival.
type Event struct {
	Seq    int
	Method string
	Params map[string]any
}

// Add records one arrival and returns its sequence number.
func (e *Events) Add(method string, params map[string]any) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	e.list = append(e.list, Event{Seq: e.seq, Method: method, Params: params})
	return e.seq
}

// Snapshot returns what arrived so far, in order.
func (e *Events) Snapshot() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.list...)
}

// Progress returns the progress notifications of one token, in order.
func (e *Events) Progress(token string) []Event {
	var out []Event
	for _, ev := range e.Snapshot() {
		if ev.Method == string(mcp.MethodNotificationProgress) && fmt.Sprint(ev.Params["progressToken"]) == token {
			out = append(out, ev)
		}
	}
	return out
}

type elicitor struct{ calls *Events }

func (h elicitor) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	h.calls.Add(string(mcp.MethodElicitationCreate), map[string]any{"message": req.Params.Message})
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{
		Action:  mcp.ElicitationResponseActionAccept,
		Content: map[string]any{"answer": ElicitAnswer},
	}}, nil
}

type sampler struct{ calls *Events }

func (h sampler) CreateMessage(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	h.calls.Add(string(mcp.MethodSamplingCreateMessage), nil)
	return &mcp.CreateMessageResult{
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent(SampleAnswer)},
		Model:           "go-canned-model",
		StopReason:      "endTurn",
	}, nil
}

// Client is an mcp-go client that records what reaches it.
type Client struct {
	*client.Client
	Events  *Events // notifications, in arrival order
	Answers *Events // server requests the handlers answered
}

// Config says how NewClient sets up the client.
type Config struct {
	Version   string // "" = mcp-go's default (2026-07-28 first)
	Listen    bool   // open the GET stream (needed for mcp-go sampling)
	Headers   map[string]string
	NoHandler bool
	// Transport is the client's HTTP transport; nil: an AnswerTransport
	// over http.DefaultTransport (see AnswerTransport for why).
	Transport http.RoundTripper
	// Logger receives mcp-go's transport logs; nil: slog's default.
	Logger *slog.Logger
}

// NewClient starts and initializes an mcp-go client; it is closed when the
// test ends.
func NewClient(t testing.TB, url string, cfg Config) (*Client, *mcp.InitializeResult, error) {
	t.Helper()
	var topts []transport.StreamableHTTPCOption
	if cfg.Listen {
		//lint:ignore SA1019 the legacy GET stream is what these tests exercise.
		topts = append(topts, transport.WithContinuousListening())
	}
	if cfg.Headers != nil {
		topts = append(topts, transport.WithHTTPHeaders(cfg.Headers))
	}
	rt := cfg.Transport
	if rt == nil {
		rt = &AnswerTransport{}
	}
	topts = append(topts, transport.WithHTTPBasicClient(&http.Client{Transport: rt}))
	if cfg.Logger != nil {
		topts = append(topts, transport.WithHTTPLogger(cfg.Logger))
	}
	tr, err := transport.NewStreamableHTTP(url, topts...)
	if err != nil {
		t.Fatal(err)
	}
	gc := &Client{Events: &Events{}, Answers: &Events{}}
	var copts []client.ClientOption
	if cfg.Version != "" {
		copts = append(copts, client.WithProtocolVersion(cfg.Version))
	}
	if !cfg.NoHandler {
		copts = append(copts,
			client.WithElicitationHandler(elicitor{gc.Answers}),
			client.WithSamplingHandler(sampler{gc.Answers}))
	}
	gc.Client = client.NewClient(tr, copts...)
	gc.OnNotification(func(n mcp.JSONRPCNotification) {
		gc.Events.Add(n.Method, n.Params.AdditionalFields)
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

// CallTool calls a tool and fails the test on any error.
func CallTool(t testing.TB, c *Client, name string, args map[string]any, meta *mcp.Meta) *mcp.CallToolResult {
	t.Helper()
	res, err := CallToolErr(c, name, args, meta, 15*time.Second)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	if res.IsError {
		t.Fatalf("call %s: tool error: %s", name, Text(res))
	}
	return res
}

func CallToolErr(c *Client, name string, args map[string]any, meta *mcp.Meta, timeout time.Duration) (*mcp.CallToolResult, error) {
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

// Text joins the text contents of a tool result.
func Text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// RawRequest sends one HTTP request and returns the response with its body
// read (for a GET stream, only the status and headers: the body is closed).
func RawRequest(t testing.TB, method, url, session, body string) (*http.Response, string) {
	t.Helper()
	h := map[string]string{mcp.HeaderProtocolVersion: mcp.ProtocolVersion20251125}
	if session != "" {
		h["Mcp-Session-Id"] = session
	}
	return Raw(t, method, url, h, body)
}

// Raw is RawRequest with arbitrary headers.
func Raw(t testing.TB, method, url string, headers map[string]string, body string) (*http.Response, string) {
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

// Stream is an open GET stream read in the background.
type Stream struct {
	mu  sync.Mutex
	buf strings.Builder
}

// Count counts sub in what the stream delivered so far.
func (s *Stream) Count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.buf.String(), sub)
}

// OpenGET opens the session's GET stream; it is closed when the test ends.
func OpenGET(t testing.TB, url, session string, headers map[string]string) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set(mcp.HeaderProtocolVersion, mcp.ProtocolVersion20251125)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
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
	s := &Stream{}
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
