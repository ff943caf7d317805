package e2e

// The protected-resource metadata document (RFC 9728) and OAuth discovery
// through it, end to end.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// withWellKnownPath adds the protected-resource metadata paths to the MCP
// route, as the README tells operators to.
func withWellKnownPath(t *testing.T, deckYAML []byte) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(deckYAML, &doc); err != nil {
		t.Fatal(err)
	}
	route := doc["services"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)
	route["paths"] = append(route["paths"].([]any), "/.well-known/oauth-protected-resource")
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// authServerStub is a loopback OAuth authorization server that records
// every URL asked of it and serves only its RFC 8414 metadata and dynamic
// client registration.
type authServerStub struct {
	url  string
	mu   sync.Mutex
	seen []string
}

func startAuthServerStub(t *testing.T) *authServerStub {
	t.Helper()
	s := &authServerStub{}
	ln := listen(t)
	s.url = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"issuer":%q,"authorization_endpoint":"%s/authorize","token_endpoint":"%s/token",`+
				`"registration_endpoint":"%s/register","response_types_supported":["code"],`+
				`"grant_types_supported":["authorization_code","refresh_token"],"code_challenge_methods_supported":["S256"]}`,
				s.url, s.url, s.url, s.url)
		case "/register":
			var meta map[string]any
			_ = json.NewDecoder(r.Body).Decode(&meta)
			meta["client_id"] = "stub-client"
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(meta)
		default:
			http.NotFound(w, r)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *authServerStub) requested() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// TestResourceMetadataDiscovery: the plugin serves the RFC 9728 document
// without a credential, names it in the 401 envelope's WWW-Authenticate,
// and a real OAuth client (mcp-remote) follows it to the configured
// authorization server.
func TestResourceMetadataDiscovery(t *testing.T) {
	as := startAuthServerStub(t)
	a := peers.StartLegacy(t, "prm-a")
	node := startNode(t, withWellKnownPath(t, deck(t, deckOptions{relay: map[string]any{
		"auth": map[string]any{"resource_metadata": map[string]any{
			"authorization_servers": []any{as.url}, "scopes_supported": []any{"mcp:tools"}}}}})), addrs(a))
	base := node.URL()

	// The document, path-aware and at the root, without a key.
	for path, resource := range map[string]string{
		"/.well-known/oauth-protected-resource/mcp": base + "/mcp",
		"/.well-known/oauth-protected-resource":     base,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if doc["resource"] != resource || fmt.Sprint(doc["authorization_servers"]) != "["+as.url+"]" ||
			fmt.Sprint(doc["scopes_supported"]) != "[mcp:tools]" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s: %s %v", path, body, resp.Header)
		}
	}

	// The auth envelope points at it and keeps 401 (envelope.status auto).
	r := newRaw("").initialize(t, base)
	wantHeader := `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp"`
	if r.Status != 401 || r.Header.Get("WWW-Authenticate") != wantHeader || r.dataField("www_authenticate") != wantHeader ||
		r.Message["id"] == nil {
		t.Errorf("auth envelope: %d %v %s", r.Status, r.Header, r.Body)
	}
	// With a key, MCP works as before.
	if _, r := newPinRaw(demoKey, 10*time.Second).whoami(t, base); r.Status != 200 && r.Status != 404 {
		t.Errorf("with a key: %d %s", r.Status, r.Body)
	}

	// mcp-remote: it reads WWW-Authenticate, fetches the document, then the
	// authorization server's metadata, registers, and waits for a browser
	// that never comes: bounded, then killed.
	dir, err := peers.NodeDir()
	if err != nil {
		t.Fatal(err)
	}
	proxy := filepath.Join(dir, "node_modules", "mcp-remote", "dist", "proxy.js")
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: %v (then: cd test/node && npm ci)", err)
	}
	if _, err := os.Stat(proxy); err != nil {
		t.Fatalf("mcp-remote is missing (%v): cd test/node && npm ci", err)
	}
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, proxy, base+"/mcp", fmt.Sprint(loopbackPort(t, freeport.Addr(t))), "--allow-http")
	cmd.Env = append(os.Environ(), "HOME="+home, "MCP_REMOTE_CONFIG_DIR="+home, "BROWSER=true")
	stdin, err := cmd.StdinPipe() // held open: mcp-remote serves stdio until killed
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var stderr tailWriter
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() { cancel(); <-done }()

	const asMetadata = "GET /.well-known/oauth-authorization-server"
	for i := 0; i < 300 && !slices.Contains(as.requested(), asMetadata); i++ {
		select {
		case <-done:
			i = 300
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !slices.Contains(as.requested(), asMetadata) {
		t.Fatalf("mcp-remote never asked the authorization server's metadata; it asked %v\nstderr: %s", as.requested(), stderr.String())
	}
	t.Logf("authorization server saw: %v", as.requested())
	sawDoc := false
	for _, s := range node.served() {
		if strings.HasPrefix(s.Path, "/.well-known/oauth-protected-resource") && s.Status == 200 {
			sawDoc = true
		}
	}
	if !sawDoc {
		t.Error("mcp-remote did not fetch the metadata document from the plugin")
	}
}

// tailWriter keeps the last 16 KiB written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > 16<<10 {
		w.buf = w.buf[len(w.buf)-16<<10:]
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
