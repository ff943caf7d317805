package e2e

// mcp-go clients (v1.2.1) cancel the POST that carries their answer to a
// server request (elicitation, sampling) as soon as the stream that asked
// ends, and mcp-go's server often has the answer, and has sent the tool's
// result, before the client sees the answer's 202: the gateway then sees
// the client abort a request that succeeded (Kong logs 499). These tests
// pin that behaviour through the gateway, and check that mcp-go sessions
// under load all complete with the tests' client transport, which keeps such
// a cancel from failing other requests (see mcptest.AnswerTransport: Go's
// net/http can close a pooled connection another request already took).
//
// They run through the stand-in, or through real Kong nodes when
// MCP_RELAY_GATEWAY=kong.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/tidwall/gjson"

	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
)

// cancelNodes starts n gateway nodes in front of targets (startNode: the
// stand-in, or real Kong with MCP_RELAY_GATEWAY=kong) and returns their
// base URLs.
func cancelNodes(t *testing.T, n int, deckYAML []byte, targets []string) []string {
	t.Helper()
	var urls []string
	for range n {
		urls = append(urls, startNode(t, deckYAML, targets).URL())
	}
	return urls
}

func serveLoopback(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ln := listen(t)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = srv.Close()
	})
	return "http://" + ln.Addr().String()
}

// answerHold sits between the gateway and a replica: it forwards a client's
// answer (a JSON-RPC message without a method) at once, and holds the
// replica's 202 for hold, counting the answers whose client went away
// meanwhile. Everything else streams through.
type answerHold struct {
	replica   *url.URL
	hold      time.Duration
	answers   atomic.Int64
	abandoned atomic.Int64
}

func (h *answerHold) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || gjson.GetBytes(body, "method").Exists() {
		r.Body = io.NopCloser(bytes.NewReader(body))
		(&httputil.ReverseProxy{Rewrite: func(p *httputil.ProxyRequest) { p.SetURL(h.replica) },
			FlushInterval: -1, ErrorLog: quietProxyLog}).ServeHTTP(w, r)
		return
	}
	h.answers.Add(1)
	out, _ := http.NewRequest(http.MethodPost, h.replica.String()+r.URL.Path, bytes.NewReader(body))
	out.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	select {
	case <-time.After(h.hold):
	case <-r.Context().Done():
		h.abandoned.Add(1)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// TestMCPGoCancelsDeliveredAnswers: when the replica's 202 to an answer is
// slower than the tool's result, mcp-go cancels the answer POST (an
// elicitation answer when the tool's result arrives, a sampling answer
// when the client closes); the replica already has the answer, the tool
// succeeds, and the session goes on through the gateway.
func TestMCPGoCancelsDeliveredAnswers(t *testing.T) {
	replica := peers.StartLegacy(t, "replica-1")
	u, _ := url.Parse(replica.BaseURL())
	hold := &answerHold{replica: u, hold: time.Second}
	holdAddr := strings.TrimPrefix(serveLoopback(t, hold), "http://")
	base := cancelNodes(t, 1, deck(t, deckOptions{relay: map[string]any{"session": map[string]any{"store": "memory"}}}), []string{holdAddr})[0]

	const sessions = 3
	for i := range sessions {
		c, _, err := mcptest.NewClient(t, base+"/mcp", mcptest.Config{
			Version: mcp.ProtocolVersion20251125, Listen: true, Headers: map[string]string{"apikey": demoKey}})
		if err != nil {
			t.Fatalf("session %d: initialize: %v", i, err)
		}
		start := time.Now()
		res, err := mcptest.CallToolErr(c, "ask", map[string]any{"message": "q?"}, nil, 10*time.Second)
		if err != nil || res.IsError || mcptest.Text(res) != mcptest.ElicitAnswer {
			t.Fatalf("session %d: ask: %v %+v", i, err, res)
		}
		if took := time.Since(start); took >= hold.hold {
			t.Errorf("session %d: ask took %v: its result waited for the held 202", i, took)
		}
		if res, err := mcptest.CallToolErr(c, "whoami", nil, nil, 10*time.Second); err != nil || mcptest.Text(res) != "replica-1" {
			t.Errorf("session %d: whoami after the cancelled answer: %v %+v", i, err, res)
		}
		res, err = mcptest.CallToolErr(c, "sample", map[string]any{"prompt": "hi"}, nil, 10*time.Second)
		if err != nil || res.IsError || mcptest.Text(res) != mcptest.SampleAnswer {
			t.Fatalf("session %d: sample: %v %+v", i, err, res)
		}
		_ = c.Close()
	}
	// The client's aborts reach the replica's side through the gateway.
	deadline := time.Now().Add(10 * time.Second)
	for hold.abandoned.Load() < 2*sessions && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	st := replica.MustStats(t)
	t.Logf("%d sessions: %d answers, %d abandoned by the client before their 202; the replica received %d answers",
		sessions, hold.answers.Load(), hold.abandoned.Load(), st.RequestsByRPC["response"])
	if got := st.RequestsByRPC["response"]; got != 2*sessions {
		t.Errorf("the replica received %d answers, want %d", got, 2*sessions)
	}
	if got := hold.abandoned.Load(); got != 2*sessions {
		t.Errorf("%d of %d answers abandoned by the client before their 202, want all: "+
			"if mcp-go no longer cancels delivered answers, mcptest.AnswerTransport may go", got, 2*sessions)
	}
}

// liveCancels wraps a transport and records every request, and every
// response body read, that failed with context.Canceled while the
// request's own context was live: failed by another request's cancel.
type liveCancels struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (l *liveCancels) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err != nil {
		l.check(req, "request", err)
		return nil, err
	}
	resp.Body = &liveCancelBody{ReadCloser: resp.Body, l: l, req: req}
	return resp, nil
}

func (l *liveCancels) check(req *http.Request, what string, err error) {
	if errors.Is(err, context.Canceled) && req.Context().Err() == nil {
		l.mu.Lock()
		l.seen = append(l.seen, fmt.Sprintf("%s %s (session %q): %v", req.Method, what, req.Header.Get("Mcp-Session-Id"), err))
		l.mu.Unlock()
	}
}

type liveCancelBody struct {
	io.ReadCloser
	l   *liveCancels
	req *http.Request
}

func (b *liveCancelBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.l.check(b.req, "response body", err)
	}
	return n, err
}

// TestMCPGoSessionsUnderLoad: 500 mcp-go sessions, 32 at a time, through a
// round-robin over two nodes sharing Redis, three legacy replicas; each
// initializes, answers an elicitation and a sampling question and closes
// right after. Every session must complete, every answer reach its replica,
// and no request fail for another's cancel.
func TestMCPGoSessionsUnderLoad(t *testing.T) {
	rd := redistest.StartServer(t)
	rs := []*peers.Replica{peers.StartLegacy(t, "replica-1"), peers.StartLegacy(t, "replica-2"), peers.StartLegacy(t, "replica-3")}
	deckYAML := deck(t, deckOptions{relay: redisSession(rd.Host(), rd.Port(), nil)})
	nodes := []gateway{startNode(t, deckYAML, addrs(rs...)), startNode(t, deckYAML, addrs(rs...))}
	lb := roundRobinURLs(t, []string{nodes[0].URL(), nodes[1].URL()}) + "/mcp"

	const sessions, workers = 500, 32
	tr := &liveCancels{next: &mcptest.AnswerTransport{}}
	logs := &answerLog{}
	logger := slog.New(logs)
	var failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(i int, step string, err error) {
		failed.Add(1)
		mu.Lock()
		failures = append(failures, fmt.Sprintf("session %d: %s: %v", i, step, err))
		mu.Unlock()
	}
	next := make(chan int)
	var wg sync.WaitGroup
	load0 := loadAverage()
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, _, err := mcptest.NewClient(t, lb, mcptest.Config{Version: mcp.ProtocolVersion20251125, Listen: true,
					Headers: map[string]string{"apikey": demoKey}, Transport: tr, Logger: logger})
				if err != nil {
					fail(i, "initialize", err)
					_ = c.Close()
					continue
				}
				res, err := mcptest.CallToolErr(c, "ask", map[string]any{"message": "q?"}, nil, 15*time.Second)
				if err != nil || res.IsError || mcptest.Text(res) != mcptest.ElicitAnswer {
					fail(i, "ask", fmt.Errorf("%v %+v (session %q)", err, res, c.GetSessionId()))
				}
				res, err = mcptest.CallToolErr(c, "sample", map[string]any{"prompt": "hi"}, nil, 15*time.Second)
				if err != nil || res.IsError || mcptest.Text(res) != mcptest.SampleAnswer {
					fail(i, "sample", fmt.Errorf("%v %+v (session %q)", err, res, c.GetSessionId()))
				}
				_ = c.Close()
			}
		}()
	}
	for i := range sessions {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(start)

	for _, f := range failures {
		t.Error(f)
	}
	if len(failures) > 0 {
		t.Logf("mcp-go's other errors (the first 20): %q", logs.otherErrors())
		// Who ended a failed exchange: a POST that the gateway did not
		// answer 200 or 202 (499: the client closed it first).
		for i, n := range nodes {
			var odd []string
			for _, r := range n.served() {
				if r.Method == "POST" && r.Status != 200 && r.Status != 202 && len(odd) < 20 {
					odd = append(odd, fmt.Sprintf("%d %s", r.Status, r.ID))
				}
			}
			t.Logf("node %d: POSTs not answered 200 or 202 (the first 20): %v", i, odd)
		}
	}
	for _, s := range tr.seen {
		t.Errorf("failed by another request's cancel: %s", s)
	}
	var answers int64
	for _, r := range rs {
		answers += r.MustStats(t).RequestsByRPC["response"]
	}
	mis := misroutes(t, rs...)
	t.Logf("%d mcp-go sessions (%d at a time) in %v, load average %s -> %s: %d failed, %d requests failed by another's cancel, "+
		"%d answers reached the replicas (%d of them cancelled by mcp-go before their 202), misroutes %d", sessions, workers,
		took.Round(time.Millisecond), load0, loadAverage(), failed.Load(), len(tr.seen), answers, logs.cancelled.Load(), mis)
	if want := int64(2*sessions) - 2*failed.Load(); answers < want {
		t.Errorf("the replicas received %d answers, want at least %d", answers, want)
	}
	if mis != 0 {
		t.Errorf("%d requests reached a replica that does not own their session", mis)
	}
}

// answerLog takes mcp-go's transport logs (500 clients would flood the
// output; the test reports failures itself), counts the answers mcp-go
// gave up on because their context was cancelled, and keeps the first of
// its other errors to explain a failed session.
type answerLog struct {
	cancelled atomic.Int64
	mu        sync.Mutex
	others    []string
}

// otherErrors are mcp-go's logged errors other than cancelled answers.
func (l *answerLog) otherErrors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.others)
}

func (l *answerLog) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelError
}
func (l *answerLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *answerLog) WithGroup(string) slog.Handler      { return l }
func (l *answerLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if r.Message == "failed to send response to server" && strings.Contains(a.Value.String(), context.Canceled.Error()) {
			l.cancelled.Add(1)
			return true
		}
		l.mu.Lock()
		if len(l.others) < 20 {
			l.others = append(l.others, r.Message+": "+a.String())
		}
		l.mu.Unlock()
		return true
	})
	return nil
}

// loadAverage is the machine's 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}
