// Package kong is everything Kong-facing: the adapter between mcp-relay's
// handler and go-pdk, and (next to this file) the kong.conf settings and deck
// files users deploy with.
package kong

// PDK is the part of Kong's PDK that mcp-relay uses. Every method is one
// synchronous round trip over the plugin socket; the handler calls as few as
// it can. Production uses Adapter (go-pdk); unit tests may use fakes.
type PDK interface {
	// Access phase
	RequestMethod() (string, error)
	RequestHeaders() (map[string][]string, error)
	RequestBody() ([]byte, error)
	// ClearBuffering sets ngx.ctx.buffered_proxying = false for this request,
	// so Kong streams the upstream answer and skips the Response phase.
	ClearBuffering() error
	SetTarget(host string, port int) error
	// SetUpstreamHeader sets one request header towards the upstream. It is
	// the only safe way to set Host: Kong stores a Host value in
	// ngx.var.upstream_host as it comes, and set_headers (go-pdk sends its
	// values as arrays) would make it "table: 0x...".
	SetUpstreamHeader(name, value string) error
	// NginxVar reads an nginx variable (kong.nginx.get_var), e.g. the
	// upstream_scheme and upstream_uri Kong sets before plugins run, or
	// upstream_host, which names the target Kong balanced to once it has.
	NginxVar(name string) (string, error)
	// SetRequestNote and RequestNote write and read one string in ngx.ctx
	// (kong.nginx.set_ctx, get_ctx): what Access leaves for the same
	// request's Response phase. A key never set reads as "".
	SetRequestNote(key, value string) error
	RequestNote(key string) (string, error)
	// Route is the matched route (kong.router.get_route): the facts of it
	// the plugin needs.
	Route() (Route, error)
	// Exit ends the request with the given answer (Access or Response phase).
	Exit(status int, body []byte, headers map[string][]string)

	// Response phase (buffered requests only)
	ResponseStatus() (int, error)
	ResponseHeader(name string) (string, error)
	// UpstreamBody is the upstream's answer body (kong.service.response.get_raw_body).
	UpstreamBody() ([]byte, error)

	// Log phase: kong.log.serialize() JSON from the data Kong saved.
	Serialize() ([]byte, error)

	// Used only when their features are configured (access rules,
	// resource metadata, log fields): see optional.go.
	OptionalPDK
	// Used only by a recovery through Kong's balancer: see recovery.go.
	RecoveryPDK
}

// Route is what the plugin reads of Kong's route entity.
type Route struct {
	// ServiceID is the id of the route's service ("" for a route without one).
	ServiceID string
	// PreserveHost: Kong sends the client's Host upstream, not the target's.
	PreserveHost bool
}
