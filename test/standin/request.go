package standin

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// header is one request or response header line.
type header struct{ name, value string }

// headerList models nginx's header lists (r->headers_in, r->headers_out):
// ordered, case-insensitive, repeatable. ngx.req.set_header / ngx.header
// assignments replace every line of a name; add appends.
type headerList struct{ h []header }

func normHeaderName(n string) string { return strings.ToLower(n) }

// luaKey is the lookup normalization of the tables ngx.req.get_headers and
// ngx.resp.get_headers return (lowercase, "_" as "-").
func luaKey(n string) string { return strings.ReplaceAll(strings.ToLower(n), "_", "-") }

func (l *headerList) clone() *headerList {
	return &headerList{h: append([]header(nil), l.h...)}
}

func (l *headerList) values(name string) []string {
	var out []string
	k := luaKey(name)
	for _, h := range l.h {
		if luaKey(h.name) == k {
			out = append(out, h.value)
		}
	}
	return out
}

func (l *headerList) first(name string) (string, bool) {
	v := l.values(name)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (l *headerList) set(name string, values []string) {
	k := normHeaderName(name)
	var out []header
	placed := false
	for _, h := range l.h {
		if normHeaderName(h.name) == k {
			if !placed {
				for _, v := range values {
					out = append(out, header{name, v})
				}
				placed = true
			}
			continue
		}
		out = append(out, h)
	}
	if !placed {
		for _, v := range values {
			out = append(out, header{name, v})
		}
	}
	l.h = out
}

func (l *headerList) add(name, value string) { l.h = append(l.h, header{name, value}) }

func (l *headerList) clear(name string) { l.set(name, nil) }

// luaTable is the table ngx.req.get_headers(max) / ngx.resp.get_headers(max)
// returns: lowercase names, a string for one line, a list for several.
func (l *headerList) luaTable(max int) map[string]any {
	out := map[string]any{}
	n := 0
	for _, h := range l.h {
		if max > 0 && n >= max {
			break
		}
		n++
		k := strings.ToLower(h.name)
		switch cur := out[k].(type) {
		case nil:
			out[k] = h.value
		case string:
			out[k] = []any{cur, h.value}
		case []any:
			out[k] = append(cur, h.value)
		}
	}
	return out
}

// luaTableGet looks a name up in such a table as its metatable does.
func luaTableGet(t map[string]any, name string) any {
	if v, ok := t[name]; ok {
		return v
	}
	return t[luaKey(name)]
}

// delayedResponse is ctx.delayed_response (kong/pdk/response.lua).
type delayedResponse struct {
	status   int
	body     []byte
	hasBody  bool
	headers  map[string][]string
	callback bool // delayed_response_callback = flush (set by exit/error)
}

// reqCtx is one request as Kong sees it: the nginx request (r), ngx.ctx,
// kong.ctx.shared, ngx.status and ngx.header, and the bookkeeping of the
// stand-in.
type reqCtx struct {
	worker *worker // the nginx worker generation serving it (see ReloadPlugin)
	node   *Node
	w      http.ResponseWriter
	req    *http.Request

	id        string // $kong_request_id
	startTime time.Time

	// the nginx request
	remoteIP    string
	remotePort  int
	serverPort  int
	host        string // $host
	httpVersion float64
	requestLine string
	requestURI  string // $request_uri (never changes)
	origMethod  string
	method      string // ngx.req.get_method() (set_method changes it)
	args        string // $args (set_uri_args changes it)
	headers     *headerList
	bodyMu      sync.Mutex
	body        []byte
	bodyRead    bool
	bodyErr     error
	bodyFile    string // client body spooled to a temp file
	reqLength   int

	// nginx variables set by Kong
	upstreamURI    string
	upstreamHost   string
	upstreamScheme string
	upstreamVia    string            // $upstream_http_via (streamed mode)
	vars           map[string]string // upstream_connection, upstream_x_forwarded_*, ...

	// ngx.ctx, as Lua sees it through kong.nginx.get_ctx / set_ctx. Kong's
	// own flags that plugins can change live here (buffered_proxying).
	ctx    map[string]any
	phase  phase
	shared map[string]any // kong.ctx.shared

	route      *Route
	service    *Service
	matchT     *routeMatch
	balancer   *balancerData
	collected  []*collectedPlugin
	delay      bool // ctx.delay_response
	delayed    *delayedResponse
	final      *finalResponse // a response Kong produced, to send
	collecting bool           // the collecting iterator ran (a route matched)
	buffered   bool           // Kong.response (buffered proxying) ran
	serializes []serializeValue

	// ngx.status and ngx.header
	status      int
	respHeaders *headerList
	headersSent bool
	bytesSent   int64

	// buffered proxying results (ctx.buffered_status/headers/body)
	bufStatus  int
	bufHeaders *headerList
	bufBody    []byte

	// the upstream's answer for the streamed mode / upstream_status
	upstreamStatus string

	// timings, ms since the epoch
	tProcessingStart float64
	tAccessStart     float64
	tAccessEnd       float64
	tBalancerStart   float64
	tBalancerEnd     float64
	tResponseStart   float64
	tHeaderFilter    float64
	tBodyFilterEnd   float64
	waitingTime      float64
	proxyLatency     float64
	responseLatency  float64
	receiveTime      float64

	// bookkeeping
	rec       *RequestRecord
	recMu     sync.Mutex
	abandoned []net.Conn
	saved     *savedData // set in the log timer
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func nowMS() float64 { return float64(time.Now().UnixNano()) / 1e6 }

// truthy is Lua truthiness.
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	}
	return true
}

func (r *reqCtx) ctxTruthy(k string) bool { return truthy(r.ctx[k]) }

func (r *reqCtx) inTimer() bool { return r.saved != nil }

// requestAPI fails like the ngx.req/ngx.var APIs in a timer, where the log
// handler of an external plugin runs (plugin.lua build_phases).
func (r *reqCtx) requestAPI() error {
	if r.inTimer() {
		return luaError("API disabled in the current context")
	}
	return nil
}

// readBody is ngx.req.read_body(): the whole client body, kept in memory,
// or spooled to a file when larger than client_body_buffer_size (8k, as in
// kong_defaults.lua nginx_http_client_body_buffer_size).
func (r *reqCtx) readBody() ([]byte, error) {
	r.bodyMu.Lock()
	defer r.bodyMu.Unlock()
	if r.bodyRead {
		return r.body, r.bodyErr
	}
	r.bodyRead = true
	if r.req.Body != nil {
		r.body, r.bodyErr = io.ReadAll(r.req.Body)
	}
	if r.bodyErr == nil && len(r.body) > clientBodyBufferSize {
		dir := filepath.Join(r.node.prefix, "client_body_temp")
		if err := os.MkdirAll(dir, 0o755); err == nil {
			name := filepath.Join(dir, fmt.Sprintf("%010d", r.node.bodySeq.Add(1)))
			if err := os.WriteFile(name, r.body, 0o600); err == nil {
				r.bodyFile = name
			}
		}
	}
	return r.body, r.bodyErr
}

// setBody is ngx.req.set_body_data: the body is now in memory, and
// Content-Length follows it.
func (r *reqCtx) setBody(b []byte) {
	_, _ = r.readBody()
	r.bodyMu.Lock()
	defer r.bodyMu.Unlock()
	r.body = b
	if r.bodyFile != "" {
		_ = os.Remove(r.bodyFile)
		r.bodyFile = ""
	}
	r.headers.set("Content-Length", []string{strconv.Itoa(len(b))})
	r.headers.clear("Transfer-Encoding")
}

const clientBodyBufferSize = 8 * 1024

// variable is ngx.var[name] for the variables the stand-in knows; ok is
// false for a variable nginx would return nil for.
func (r *reqCtx) variable(name string) (string, bool) {
	switch name {
	case "request_method":
		return r.method, true
	case "request_uri":
		return r.requestURI, true
	case "request":
		return r.requestLine, true
	case "uri", "document_uri":
		u := r.requestURI
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i]
		}
		if p, err := url.PathUnescape(u); err == nil {
			u = p
		}
		return u, true
	case "args", "query_string":
		return r.args, true
	case "is_args":
		if r.args != "" {
			return "?", true
		}
		return "", true
	case "host":
		return r.host, true
	case "scheme":
		return "http", true
	case "https":
		return "", true
	case "server_protocol":
		return fmt.Sprintf("HTTP/%.1f", r.httpVersion), true
	case "remote_addr", "realip_remote_addr", "binary_remote_addr":
		return r.remoteIP, true
	case "remote_port", "realip_remote_port":
		return strconv.Itoa(r.remotePort), true
	case "server_port":
		return strconv.Itoa(r.serverPort), true
	case "server_addr":
		return r.node.listenIP(), true
	case "kong_request_id", "request_id":
		return r.id, true
	case "request_length":
		return strconv.Itoa(r.reqLength), true
	case "bytes_sent":
		return strconv.FormatInt(r.bytesSent, 10), true
	case "status":
		return strconv.Itoa(r.status), true
	case "upstream_uri":
		return r.upstreamURI, true
	case "upstream_host":
		return r.upstreamHost, true
	case "upstream_scheme":
		return r.upstreamScheme, true
	case "upstream_status":
		// the parent request of a buffered proxying has no upstream: its
		// upstream variables are empty (nil) there
		if r.upstreamStatus == "" || r.buffered {
			return "", false
		}
		return r.upstreamStatus, true
	case "upstream_addr":
		if r.balancer == nil || r.ctxTruthy("buffered_proxying") || len(r.balancer.tries) == 0 || !r.balancer.proxied {
			return "", false
		}
		var parts []string
		for _, t := range r.balancer.tries {
			parts = append(parts, net.JoinHostPort(t.IP, strconv.Itoa(t.Port)))
		}
		return strings.Join(parts, ", "), true
	case "upstream_connection", "upstream_upgrade", "upstream_te", "upstream_via", "upstream_x_forwarded_for",
		"upstream_x_forwarded_proto", "upstream_x_forwarded_host", "upstream_x_forwarded_port",
		"upstream_x_forwarded_path", "upstream_x_forwarded_prefix":
		return r.vars[name], true
	case "content_type":
		return r.headers.first("Content-Type")
	case "content_length":
		return r.headers.first("Content-Length")
	case "http_host":
		return r.headers.first("Host")
	}
	if h, ok := strings.CutPrefix(name, "http_"); ok {
		v := r.headers.values(strings.ReplaceAll(h, "_", "-"))
		if len(v) == 0 {
			return "", false
		}
		return strings.Join(v, ", "), true
	}
	if h, ok := strings.CutPrefix(name, "arg_"); ok {
		q, _ := url.ParseQuery(r.args)
		if v, ok := q[h]; ok && len(v) > 0 {
			return v[0], true
		}
		return "", false
	}
	if h, ok := strings.CutPrefix(name, "sent_http_"); ok {
		v := r.respHeaders.values(strings.ReplaceAll(h, "_", "-"))
		if len(v) == 0 {
			return "", false
		}
		return strings.Join(v, ", "), true
	}
	return "", false
}

// queryTable is ngx.req.get_uri_args(max): values are strings, true for an
// argument without "=", lists for repeated names.
func queryTable(args string, max int) map[string]any {
	out := map[string]any{}
	n := 0
	for _, part := range strings.Split(args, "&") {
		if part == "" {
			continue
		}
		if max > 0 && n >= max {
			break
		}
		n++
		k, v, hasEq := strings.Cut(part, "=")
		k, _ = url.QueryUnescape(k)
		var val any = true
		if hasEq {
			s, err := url.QueryUnescape(v)
			if err != nil {
				s = v
			}
			val = s
		}
		if k == "" {
			continue
		}
		switch cur := out[k].(type) {
		case nil:
			out[k] = val
		case []any:
			out[k] = append(cur, val)
		default:
			out[k] = []any{cur, val}
		}
	}
	return out
}

// encodeArgs is ngx.encode_args of a Lua table (keys sorted as
// make_ordered_args does in kong/pdk/service/request.lua).
func encodeArgs(t map[string]any) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	emit := func(k string, v any) {
		switch v := v.(type) {
		case bool:
			if v {
				parts = append(parts, escapeArg(k))
			}
		case nil:
		default:
			parts = append(parts, escapeArg(k)+"="+escapeArg(luaToString(v)))
		}
	}
	for _, k := range keys {
		if l, ok := t[k].([]any); ok {
			for _, e := range l {
				emit(k, e)
			}
			continue
		}
		emit(k, t[k])
	}
	return strings.Join(parts, "&")
}

func escapeArg(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// luaToString is Lua's tostring for the values the stand-in handles.
func luaToString(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case string:
		return v
	case bool:
		if v {
			return "true"
		}
		return "false"
	case float64:
		if v == float64(int64(v)) && v < 1e15 && v > -1e15 {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'g', 14, 64)
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	case map[string]any, []any:
		return fmt.Sprintf("table: %p", &v)
	}
	return fmt.Sprint(v)
}

// escapeURI is the escaping ngx.var.upstream_uri gets (kong.tools.uri
// escape): bytes outside the unreserved and reserved sets are
// percent-encoded.
func escapeURI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > 0x20 && c < 0x7f && c != '"' && c != '<' && c != '>' && c != '\\' && c != '^' && c != '`' &&
			c != '{' && c != '|' && c != '}' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// normalizePath is kong.tools.uri normalize(path, true) as used by
// kong.request.get_path: percent-decoding of unreserved characters and
// removal of dot segments.
func normalizePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if v, err := strconv.ParseUint(p[i+1:i+3], 16, 8); err == nil {
				c := byte(v)
				if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
					c == '-' || c == '.' || c == '_' || c == '~' {
					b.WriteByte(c)
				} else {
					b.WriteString(strings.ToUpper(p[i : i+3]))
				}
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	p = b.String()
	// RFC 3986 remove_dot_segments
	var out []string
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch s {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	res := strings.Join(out, "/")
	if res == "" {
		res = "/"
	}
	return res
}
