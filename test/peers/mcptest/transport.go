package mcptest

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/tidwall/gjson"
)

// AnswerTransport is the HTTP transport of the mcp-go clients in the tests.
// It sends the client's JSON-RPC answers (to elicitation/create,
// sampling/createMessage, ping) and notifications on a connection of their
// own, closed after the answer, and every other request through Next.
//
// Why: mcp-go v1.2.1 sends an answer to a server request with the context
// of the stream the request came on (client/transport/streamable_http.go,
// handleIncomingRequest), and cancels it as soon as that stream ends: when
// the tool's result arrives for an elicitation, when the client closes for a
// sampling question that came on the GET stream. mcp-go's server hands the
// answer to the waiting tool before it writes its 202, so the result often
// overtakes the 202 and the answer POST is cancelled (Kong logs 499; the
// server has the answer). That alone is harmless. But Go's net/http
// Transport (go1.26) puts the connection of a bodyless answer such as that
// 202 back in its idle pool before it hands the answer to the caller; a
// cancel landing in between closes a connection another request may
// already have taken, which then fails with "context canceled" although its
// own context is live: the session's next tools/call fails at once, or
// another session's sampling answer is lost and its tool call waits until
// its deadline. An answer on a connection that never goes back to the pool
// cannot take anything down with it.
type AnswerTransport struct {
	// Next carries requests and the GET stream (http.DefaultTransport,
	// mcp-go's default, when nil).
	Next http.RoundTripper
	// Isolated counts the messages sent on a connection of their own.
	Isolated atomic.Int64
}

// answerConns carries answers and notifications: keep-alives off, so its
// connections never enter a pool.
var answerConns = &http.Transport{DisableKeepAlives: true}

// RoundTrip implements http.RoundTripper.
func (t *AnswerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && expectsNoBody(req) {
		t.Isolated.Add(1)
		return answerConns.RoundTrip(req)
	}
	next := t.Next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(req)
}

// expectsNoBody tells whether req carries a JSON-RPC answer or notification
// (no "method" with an "id"), which a Streamable HTTP server accepts with a
// bodyless 202. mcp-go's bodies are byte readers, so GetBody is set.
func expectsNoBody(req *http.Request) bool {
	if req.GetBody == nil {
		return false
	}
	rc, err := req.GetBody()
	if err != nil {
		return false
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(rc, 1<<20)); err != nil {
		return false
	}
	msg := gjson.ParseBytes(buf.Bytes())
	if !msg.IsObject() {
		return false
	}
	return !msg.Get("method").Exists() || !msg.Get("id").Exists()
}
