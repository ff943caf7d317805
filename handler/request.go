package handler

import (
	"strings"

	"github.com/mcp-relay/mcp-relay/envelope"
)

// Header names as Kong's kong.request.get_headers returns them (lower case).
const (
	hSessionID       = "mcp-session-id"
	hProtocolVersion = "mcp-protocol-version"
	hMethod          = "mcp-method"
	hName            = "mcp-name"
	hAccept          = "accept"
	hConsumerID      = "x-consumer-id"
	hConsumerName    = "x-consumer-username"
	hAnonymous       = "x-anonymous-consumer"
	hWWWAuthenticate = "www-authenticate"
	hContentLength   = "content-length"
	hTransferEnc     = "transfer-encoding"
	hContentType     = "content-type"
	hPreflight       = "access-control-request-method"
	hPanicTest       = "x-mcp-relay-panic" // panictest builds only
)

// statelessVersion is the first MCP version without sessions (2026-07-28).
const statelessVersion = "2026-07-28"

// request is what Access (or a rare Response rewrite) read about a request.
type request struct {
	// method is "" until known: read from Kong only where it matters
	// (needsMethod), "POST" for a JSON-RPC body.
	method  string
	headers map[string][]string
	rpc     envelope.Request
	modern  bool // MCP-Protocol-Version >= 2026-07-28: stateless, new error codes
	mcp     bool
	// bodyUnread: a body Access skipped (upstream.check_method_headers off).
	bodyUnread bool
	// mayReroute: a recovery may send this request upstream as the
	// session's initialize; reroute is set when one does (reroute.go).
	mayReroute bool
	reroute    *reroute
	// recoveryFailed is why the recovery of this request's session did
	// not happen ("": it did, or none ran).
	recoveryFailed string
}

func newRequest(headers map[string][]string) request {
	r := request{headers: headers}
	r.modern = isModern(first(headers, hProtocolVersion))
	r.mcp = hasAny(headers, hSessionID, hProtocolVersion, hMethod) ||
		strings.Contains(first(headers, hAccept), "text/event-stream")
	return r
}

// mayHaveBody tells from the headers whether reading the body can find
// anything: HTTP/1.1 announces a body with Content-Length or
// Transfer-Encoding; HTTP/2 may omit both, so a Content-Type counts too.
func (r *request) mayHaveBody() bool {
	if len(r.headers[hTransferEnc]) > 0 {
		return true
	}
	if cl := r.headers[hContentLength]; len(cl) > 0 {
		return cl[0] != "0"
	}
	return len(r.headers[hContentType]) > 0
}

// withBody records the parsed JSON-RPC body; a JSON-RPC body makes any
// request MCP traffic even when a client omits the MCP headers, and is sent
// with POST (another method with a JSON-RPC body is handled alike).
func (r *request) withBody(rpc envelope.Request) {
	r.rpc = rpc
	if rpc.JSONRPC || rpc.Kind == envelope.Batch {
		r.mcp = true
		r.method = "POST"
	}
}

// needsMethod: without a JSON-RPC body, the method decides for a CORS
// preflight (passed untouched, but a preflight header alone must not skip
// the auth check) and for a session's bodyless request (a GET stream must
// stream; a DELETE is buffered to end the session before the answer).
func (r *request) needsMethod() bool {
	return r.method == "" && (len(r.headers[hSessionID]) > 0 || len(r.headers[hPreflight]) > 0)
}

// idless reports whether no answer body could be matched to a request id:
// JSON-RPC allows such envelopes only under an error status.
func (r *request) idless() bool {
	switch r.rpc.Kind {
	case envelope.Single:
		return r.rpc.ID == "" || r.rpc.IsResponse()
	case envelope.Batch:
		any := false
		r.rpc.Elements(func(e envelope.Request) bool {
			any = e.ID != "" && !e.IsResponse()
			return !any
		})
		return !any
	}
	return true
}

// isModern compares ISO dates as strings: later protocol versions stay stateless.
func isModern(version string) bool {
	return len(version) == len(statelessVersion) && version >= statelessVersion
}

func first(h map[string][]string, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func hasAny(h map[string][]string, names ...string) bool {
	for _, n := range names {
		if len(h[n]) > 0 {
			return true
		}
	}
	return false
}

// validSessionID follows the spec: visible ASCII (0x21-0x7E), and a length
// bound so garbage never reaches the store.
func validSessionID(id string, maxLen int) bool {
	if len(id) == 0 || len(id) > maxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
