package replica

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// client sends the few requests the plugin makes to replicas itself
// (a recovery's initialize, its notifications/initialized, a re-sent
// request), as Kong would send them: the service's scheme and upstream path,
// the client's end-to-end headers. Kong verifies upstream certificates only
// when the service asks (tls_verify); neither does this client.
var client = &http.Client{
	Transport: &http.Transport{
		Proxy:                 nil, // replicas are reached directly, as Kong does
		DialContext:           (&net.Dialer{Timeout: connectTimeout}).DialContext,
		TLSClientConfig:       &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // Kong's default: no upstream verification
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: AnswerTimeout,
	},
	// Replicas do not redirect MCP requests; a redirect is an error.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

const (
	connectTimeout = 2 * time.Second
	// AnswerTimeout bounds the wait for a replica's answer headers; callers
	// bound each call's whole time with it too.
	AnswerTimeout = 10 * time.Second
	// maxInitAnswer bounds the initialize answer read; maxResentAnswer the
	// answer of a re-sent buffered request (Kong buffered it too).
	maxInitAnswer   = 1 << 20
	maxResentAnswer = 16 << 20
)

// ErrConnect marks a replica that could not be reached: try the next one.
var ErrConnect = errors.New("connect")

// hopByHop are the headers a proxy does not forward (RFC 9110 7.6.1), and
// those the plugin sets itself.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "proxy-authenticate": true,
	"proxy-authorization": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
	"content-length": true, "host": true, "mcp-session-id": true, "accept-encoding": true, "expect": true,
	"content-type": true, "accept": true, "mcp-protocol-version": true,
}

// Call is one request from the plugin to a replica.
type Call struct {
	url     string // scheme://target/path?query
	host    string // Host header
	headers map[string][]string
}

// NewCall prepares a request to target ("ip:port") as Kong would send it:
// scheme and uri are Kong's upstream_scheme and upstream_uri, hostHeader
// the Host Kong would send ("": target), headers the client's request
// headers (the end-to-end ones are forwarded).
func NewCall(scheme, target, uri, hostHeader string, headers map[string][]string) Call {
	if scheme == "" {
		scheme = "http"
	}
	if uri == "" {
		uri = "/"
	}
	host := target
	if hostHeader != "" {
		host = hostHeader
	}
	return Call{url: scheme + "://" + target + uri, host: host, headers: headers}
}

// post sends body with the client's end-to-end headers plus session and
// version, and returns the answer (read up to max bytes).
func (c Call) post(ctx context.Context, body []byte, sessionID, version string, max int64) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	// Headers the client named in Connection are hop-by-hop too.
	var named []string
	for _, v := range c.headers["connection"] {
		for _, tok := range strings.Split(v, ",") {
			named = append(named, strings.ToLower(strings.TrimSpace(tok)))
		}
	}
	for name, values := range c.headers {
		lower := strings.ToLower(name)
		if hopByHop[lower] || slices.Contains(named, lower) {
			continue
		}
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	req.Host = c.host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sessionID != "" {
		req.Header.Set("Mcp-Session-Id", sessionID)
	}
	if version != "" {
		req.Header.Set("MCP-Protocol-Version", version)
	}
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, nil, fmt.Errorf("%w: %w", ErrConnect, err)
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("answer larger than %d bytes", max)
	}
	return resp, data, err
}

// Resend sends a request again, in the upstream session sessionID, and
// returns the replica's answer (read up to what Kong would buffer).
func (c Call) Resend(ctx context.Context, body []byte, sessionID, version string) (*http.Response, []byte, error) {
	return c.post(ctx, body, sessionID, version, maxResentAnswer)
}

// InitializeBody is the initialize request a recovery replays: the
// session's recorded params, under an id of the plugin's.
func InitializeBody(init string) []byte {
	body := make([]byte, 0, len(init)+80)
	body = append(body, `{"jsonrpc":"2.0","id":"mcp-relay-recovery","method":"initialize","params":`...)
	body = append(body, init...)
	return append(body, '}')
}

// OpenSession replays an initialize with params init and sends
// notifications/initialized: it returns the new upstream session id.
func (c Call) OpenSession(ctx context.Context, init string) (string, error) {
	resp, data, err := c.post(ctx, InitializeBody(init), "", "", maxInitAnswer)
	if err != nil {
		return "", err
	}
	id := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		return "", fmt.Errorf("initialize answered %d without a session id", resp.StatusCode)
	}
	version, err := InitializeAnswer(resp.Header.Get("Content-Type"), data)
	if err != nil {
		return "", err
	}
	return id, c.Initialized(ctx, id, version)
}

// InitializeAnswer reads the protocol version a replica answered an
// initialize with (JSON or SSE; contentType may be ""), or the error it
// answered.
func InitializeAnswer(contentType string, body []byte) (version string, err error) {
	msg := rpcMessage(contentType, body)
	if e := gjson.GetBytes(msg, "error"); e.Exists() {
		return "", fmt.Errorf("initialize answered with an error: %.200s", e.Raw)
	}
	return gjson.GetBytes(msg, "result.protocolVersion").Str, nil
}

// Initialized sends notifications/initialized in the new upstream session
// id, as the client did after its own initialize.
func (c Call) Initialized(ctx context.Context, id, version string) error {
	resp, _, err := c.post(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), id, version, maxInitAnswer)
	if err != nil {
		return fmt.Errorf("notifications/initialized: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("notifications/initialized answered %d", resp.StatusCode)
	}
	return nil
}

// rpcMessage is the JSON-RPC message of an answer: the body, or for an SSE
// stream the last data line. Without a content type, the body tells.
func rpcMessage(contentType string, body []byte) []byte {
	sse := strings.HasPrefix(contentType, "text/event-stream")
	if contentType == "" {
		t := bytes.TrimSpace(body)
		sse = len(t) > 0 && t[0] != '{' && t[0] != '['
	}
	if !sse {
		return body
	}
	var last []byte
	for _, line := range bytes.Split(body, []byte("\n")) {
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			last = bytes.TrimSpace(d)
		}
	}
	return last
}
