package peers_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/bad"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
)

func TestBare401(t *testing.T) {
	t.Parallel()
	u := peers.StartBad(t, peers.ModeBare401)
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		resp, body := mcptest.RawRequest(t, method, u.URL(), "", `{"jsonrpc":"2.0","id":1,"method":"initialize"}`)
		if method == http.MethodGet {
			// rawRequest does not read GET bodies.
			resp, body = plainGet(t, u.URL())
		}
		if resp.StatusCode != http.StatusUnauthorized || strings.TrimSpace(body) != bad.Bare401Body ||
			resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: %d %q %v", method, resp.StatusCode, body, resp.Header)
		}
	}
	// What a strict client makes of it: mcp-go reports authorization
	// required, with no resource metadata to start OAuth from.
	_, _, err := mcptest.NewClient(t, u.URL(), mcptest.Config{Version: mcp.ProtocolVersion20251125})
	var authErr *transport.AuthorizationRequiredError
	if !errors.As(err, &authErr) || authErr.ResourceMetadataURL != "" {
		t.Errorf("mcp-go initialize against bare 401: %v", err)
	}
}

func TestSilent(t *testing.T) {
	t.Parallel()
	u := peers.StartBad(t, peers.ModeSilent)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u.URL(), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize"}`))
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("silent upstream answered %d", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent upstream: %v, want the client's deadline", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("gave up after %s", d)
	}

	// A request still hanging when the upstream stops ends at once.
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, u.URL(), strings.NewReader(`{}`))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	u.Stop()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("hanging request got an answer when the upstream stopped")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hanging request still open 5 s after the upstream stopped")
	}
}

// TestSilentNoLeak runs the silent handler in-process: every request's
// goroutine ends when its client goes away.
func TestSilentNoLeak(t *testing.T) {
	h, err := bad.Handler(bad.ModeSilent)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	cl := &http.Client{Transport: &http.Transport{}}
	before := runtime.NumGoroutine()
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		if resp, err := cl.Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("silent answered")
		}
		cancel()
	}
	cl.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after the clients left", before, runtime.NumGoroutine())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func plainGet(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
