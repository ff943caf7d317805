package standin

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// maxEventRetries bounds handle_event's retries after "no plugin instance"
// or "closed" (Kong recurses without bound).
const maxEventRetries = 10

type evResult int

const (
	evOK          evResult = iota
	evExit                 // kong.response.exit: the handler was abandoned
	evLuaError             // a Lua error in call_pdk (or get_instance_id)
	evServerError          // handle_event's "pluginserver error" path
)

func (r *reqCtx) setPhase(p phase) {
	r.phase = p
	r.ctx["KONG_PHASE"] = float64(p)
}

// ctxValue is ngx.ctx[k] as kong.nginx.get_ctx returns it.
func (r *reqCtx) ctxValue(k string) any { return r.ctx[k] }

// responseSource is kong.response.get_source(ctx).
func (r *reqCtx) responseSource() string {
	switch {
	case r.ctxTruthy("KONG_UNEXPECTED"):
		return "error"
	case r.ctxTruthy("KONG_EXITED"):
		return "exit"
	case r.ctxTruthy("KONG_PROXIED"):
		return "service"
	}
	return "error"
}

func (r *reqCtx) recordError(format string, args ...any) {
	r.recMu.Lock()
	r.rec.Errors = append(r.rec.Errors, fmt.Sprintf(format, args...))
	r.recMu.Unlock()
}

// send is send() of kong/pdk/response.lua: status, headers, the body with
// its Content-Length, then ngx.exit.
func (r *reqCtx) send(status int, body []byte, hasBody bool, headers map[string][]string) {
	r.status = status
	hasCL := false
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if isTransferEncoding(k) {
			r.node.log.logf(lvlWarn, "[kong] manually setting Transfer-Encoding. Ignored.")
			continue
		}
		r.respHeaders.set(k, headers[k])
		if strings.EqualFold(k, "content-length") || strings.EqualFold(k, "content_length") {
			hasCL = true
		}
	}
	if !hasCL {
		r.respHeaders.set("Content-Length", []string{strconv.Itoa(len(body))})
	}
	if !hasBody {
		body = nil
	}
	r.final = &finalResponse{body: body}
}

// finalResponse is a response Kong produced itself (exit, error), ready to
// go through the header filter.
type finalResponse struct{ body []byte }

// exit is kong.response.exit: in the access phase (delay_response) it
// records the delayed response; elsewhere it sends at once.
func (r *reqCtx) exit(status int, body []byte, hasBody bool, headers map[string][]string) {
	r.ctx["KONG_EXITED"] = true
	if r.delay && r.delayed == nil {
		r.delayed = &delayedResponse{status: status, body: body, hasBody: hasBody, headers: headers, callback: true}
		return
	}
	r.send(status, body, hasBody, headers)
}

// kongError is kong.response.error: Kong's error template, negotiated from
// the Accept header (JSON by default).
func (r *reqCtx) kongError(status int, message string, headers map[string][]string) {
	if headers == nil {
		headers = map[string][]string{}
	}
	ct := ""
	for k, v := range headers {
		if strings.EqualFold(k, "Content-Type") && len(v) > 0 {
			ct = v[0]
		}
	}
	if ct == "" {
		accept := r.headers.values("Accept")
		ct = getResponseType(strings.Join(accept, ","), len(accept) > 0)
		headers["Content-Type"] = []string{ct}
	}
	if message == "" {
		message = errorMessage(status)
	}
	r.exit(status, []byte(r.node.errorBody(ct, message, r.id)), true, headers)
}

// errorPage is what nginx does with an error status it produced itself
// (error_page 500 502 503 504 ... /kong_error_handler): Kong.handle_error
// and kong/error_handlers.lua, which negotiates from Accept, then
// Content-Type, then error_default_type (text/plain).
func (r *reqCtx) errorPage(status int) {
	r.setPhase(phError)
	r.ctx["KONG_UNEXPECTED"] = true
	accept, ok := r.headers.first("Accept")
	if !ok {
		accept, ok = r.headers.first("Content-Type")
	}
	if !ok {
		accept = "text/plain"
	}
	message := errorMessage(status)
	if status == 494 {
		status = 400
	}
	mime := getResponseType(accept, true)
	body := r.node.errorBody(mime, message, r.id)
	delete(r.ctx, "buffered_proxying")
	r.delay, r.delayed = false, nil
	r.exit(status, []byte(body), true, map[string][]string{"Content-Type": {mime}})
}

// flushDelayed is flush_delayed_response (kong/init.lua).
func (r *reqCtx) flushDelayed() {
	r.delay = false
	delete(r.ctx, "buffered_proxying")
	dr := r.delayed
	if dr.callback {
		r.send(dr.status, dr.body, dr.hasBody, dr.headers)
		return
	}
	r.kongError(dr.status, string(dr.body), dr.headers)
}

func (r *reqCtx) countCall(method string) {
	ph := r.phase.String()
	r.recMu.Lock()
	m := r.rec.Calls[ph]
	if m == nil {
		m = map[string]int{}
		r.rec.Calls[ph] = m
	}
	m[method]++
	r.recMu.Unlock()
}

// event is Rpc:handle_event (pb_rpc.lua) for one plugin and phase.
func (n *Node) event(r *reqCtx, cp *collectedPlugin, name string) (evResult, error) {
	h, p := cp.handler, cp.plugin
	wk := r.worker
	if wk == nil {
		wk = n.currentWorker()
	}
	for retries := 0; ; retries++ {
		before := wk.instances.starts.Load()
		id, err := wk.instances.get(wk.rpc, h.name, p, h.conf[p], n.log)
		started := int(wk.instances.starts.Load() - before)
		r.recMu.Lock()
		r.rec.InstanceStarts += started
		r.recMu.Unlock()
		if err != nil {
			var unclaimed *claimError
			if errors.As(err, &unclaimed) {
				return evServerError, err // returned to handle_event
			}
			return evLuaError, err // raised out of get_instance_id
		}
		r.recMu.Lock()
		r.rec.Events = append(r.rec.Events, name)
		r.recMu.Unlock()
		bridge := func(method string, args []byte) ([]byte, error) {
			r.countCall(method)
			m := pdkMethods[method]
			if m == nil {
				return nil, &eventAbort{err: fmt.Errorf("method %q not found", method)}
			}
			if m.handler == nil {
				return nil, &eventAbort{err: luaError("attempt to call a nil value")}
			}
			out, err := m.handler(&call{r: r, p: cp, method: method, args: args})
			if err != nil {
				var ab *eventAbort
				if errors.As(err, &ab) {
					return nil, ab
				}
				return nil, &eventAbort{err: err}
			}
			if out == nil {
				return []byte{}, nil
			}
			return proto.Marshal(out)
		}
		_, err = wk.rpc.call(&pb.RpcCall{Call: &pb.RpcCall_CmdHandleEvent{CmdHandleEvent: &pb.CmdHandleEvent{
			InstanceId: id, EventName: name}}}, bridge)
		if err == nil {
			return evOK, nil
		}
		var ab *eventAbort
		if errors.As(err, &ab) {
			if ab.conn != nil {
				r.abandoned = append(r.abandoned, ab.conn)
			}
			if ab.err == nil {
				return evExit, nil
			}
			var le *luaErr
			if errors.As(ab.err, &le) {
				return evLuaError, ab.err
			}
			err = ab.err
		}
		var thrown *luaErr
		if errors.As(err, &thrown) {
			return evLuaError, err // a send pb_rpc.lua asserted: not retried
		}
		if isRetryable(err) && retries < maxEventRetries {
			wk.instances.reset()
			n.log.logf(lvlWarn, "[kong] pb_rpc.lua:406 %v", err)
			continue
		}
		return evServerError, err
	}
}

// ServeHTTP runs one request through the phases of kong/init.lua.
func (n *Node) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// Counted from the start: the client may have the whole answer before
	// the Log timer is scheduled, and WaitIdle must not return in between.
	n.pending.Add(1)
	defer n.pending.Add(-1)
	wk := n.currentWorker()
	wk.active.Add(1)
	defer wk.active.Add(-1)
	r := n.newRequest(w, req)
	r.worker = wk
	var abort bool
	if status := headerBufferLimit(req); status != 0 {
		// nginx refuses the request while reading its head: no route, no
		// plugin phase but the global Log; the error page negotiates from
		// the headers read before the long line, which Go's server does
		// not order: as if none were (Kong's error_default_type).
		r.headers = &headerList{}
		r.errorPage(status)
		abort = n.sendFinal(r)
	} else {
		abort = n.serve(r)
	}
	r.rec.Duration = time.Since(r.startTime)
	n.logPhase(r)
	r.finalize()
	if abort {
		panic(http.ErrAbortHandler)
	}
}

// Kong leaves nginx's large_client_header_buffers at its default, 4 8k: a
// request line or header line (with its CRLF) longer than one 8 KB buffer,
// or a head larger than the four, is refused before any phase runs
// (ngx_http_alloc_large_header_buffer): 414 for the request line, 494 for
// a header, which Kong's error page sends as 400 "Request header or cookie
// too large".
const (
	headerBufferSize  = 8 << 10
	headerBufferCount = 4
)

// headerBufferLimit is the status nginx refuses req's head with, 0 when it
// fits its buffers.
func headerBufferLimit(req *http.Request) int {
	if len(req.Method)+1+len(req.RequestURI)+1+len(req.Proto)+2 > headerBufferSize {
		return 414
	}
	total := 0
	line := func(name, value string) bool {
		n := len(name) + 2 + len(value) + 2
		total += n
		return n > headerBufferSize
	}
	if req.Host != "" && line("Host", req.Host) {
		return 494
	}
	for k, vs := range req.Header {
		for _, v := range vs {
			if line(k, v) {
				return 494
			}
		}
	}
	if total > headerBufferCount*headerBufferSize {
		return 494
	}
	return 0
}

func (n *Node) newRequest(w http.ResponseWriter, req *http.Request) *reqCtx {
	now := time.Now()
	r := &reqCtx{node: n, w: w, req: req, id: newRequestID(), startTime: now,
		ctx: map[string]any{}, shared: map[string]any{}, headers: &headerList{}, respHeaders: &headerList{},
		rec: &RequestRecord{Method: req.Method, Path: req.RequestURI, Start: now, Calls: map[string]map[string]int{}}}
	r.rec.ID = r.id
	host, port, _ := net.SplitHostPort(req.RemoteAddr)
	r.remoteIP = host
	r.remotePort, _ = strconv.Atoi(port)
	r.serverPort = n.listenPort()
	r.httpVersion = float64(req.ProtoMajor) + float64(req.ProtoMinor)/10
	r.origMethod, r.method = req.Method, req.Method
	r.requestURI = req.RequestURI
	r.requestLine = fmt.Sprintf("%s %s %s", req.Method, req.RequestURI, req.Proto)
	if i := strings.IndexByte(r.requestURI, '?'); i >= 0 {
		r.args = r.requestURI[i+1:]
	}
	h := req.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	r.host = strings.ToLower(h)
	if r.host == "" {
		r.host = "kong" // server_name kong
	}
	size := len(r.requestLine) + 2
	if req.Host != "" {
		r.headers.add("Host", req.Host)
		size += len("Host: ") + len(req.Host) + 2
	}
	names := make([]string, 0, len(req.Header))
	for k := range req.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range req.Header[k] {
			r.headers.add(k, v)
			size += len(k) + 2 + len(v) + 2
		}
	}
	if len(req.TransferEncoding) > 0 {
		r.headers.add("Transfer-Encoding", strings.Join(req.TransferEncoding, ", "))
	}
	r.reqLength = size + 2
	if req.ContentLength > 0 {
		r.reqLength += int(req.ContentLength)
	}
	r.vars = map[string]string{}
	r.tProcessingStart = float64(now.UnixMilli())
	r.ctx["KONG_PROCESSING_START"] = r.tProcessingStart
	return r
}

// serve runs rewrite, access, and the proxying or the exit; it returns true
// when the client connection must be cut (an upstream failure after the
// response headers were sent).
func (n *Node) serve(r *reqCtx) bool {
	// Kong.rewrite: global plugins only
	r.setPhase(phRewrite)
	r.ctx["workspace"] = defaultWorkspaceID
	for _, h := range n.plugins {
		if !h.external || !h.phases["rewrite"] {
			continue
		}
		p := h.combos["::"]
		if p == nil {
			continue
		}
		cp := &collectedPlugin{handler: h, plugin: p}
		r.ctx["plugin_id"] = p.ID
		r.ctx["ran_go_plugin"] = true
		res, err := n.event(r, cp, "rewrite")
		switch res {
		case evLuaError:
			n.log.logf(lvlErr, "[kong] %v", err)
			r.recordError("rewrite: %v", err)
			r.errorPage(500)
		case evServerError:
			n.log.logf(lvlErr, "[kong] pluginserver error: %v", err)
			r.recordError("rewrite: pluginserver error: %v", err)
			r.kongError(500, "", nil)
		}
		if r.final != nil {
			return n.sendFinal(r)
		}
	}

	// Kong.access
	r.tAccessStart = nowMS()
	r.ctx["KONG_ACCESS_START"] = r.tAccessStart
	r.setPhase(phAccess)
	// runloop.access.before (kong/runloop/handler.lua)
	r.ctx["scheme"] = "http"
	r.ctx["request_uri"] = r.requestURI
	r.ctx["host_port"] = float64(r.serverPort)
	m := n.router.match(r)
	if m == nil {
		r.kongError(404, "no Route matched with those values", nil)
		return n.sendFinal(r)
	}
	r.matchT = m
	r.route, r.service = m.route, m.route.Service
	r.rec.Route = m.route.Name
	if r.rec.Route == "" {
		r.rec.Route = m.route.ID
	}
	r.ctx["route"] = copyEntity(m.route.entity)
	if r.service != nil {
		r.ctx["service"] = copyEntity(r.service.entity)
	}
	captures := map[string]any{}
	for i, u := range m.unnamed {
		captures[strconv.Itoa(i+1)] = u
	}
	for k, v := range m.named {
		captures[k] = v
	}
	r.ctx["router_matches"] = map[string]any{"uri_captures": captures}

	forwardedProto, forwardedHost, forwardedPort := "http", r.host, strconv.Itoa(r.serverPort)
	forwardedPath, forwardedPrefix := "", ""
	if n.isTrusted(r.remoteIP) {
		if v, ok := r.headers.first("X-Forwarded-Proto"); ok {
			forwardedProto = v
		}
		if v, ok := r.headers.first("X-Forwarded-Host"); ok {
			forwardedHost = v
		}
		if v, ok := r.headers.first("X-Forwarded-Port"); ok {
			forwardedPort = v
		}
		forwardedPath, _ = r.headers.first("X-Forwarded-Path")
		forwardedPrefix, _ = r.headers.first("X-Forwarded-Prefix")
	}
	if forwardedPath == "" {
		forwardedPath = r.requestURI
		if i := strings.IndexByte(forwardedPath[min(1, len(forwardedPath)):], '?'); i >= 0 {
			forwardedPath = forwardedPath[:i+min(1, len(forwardedPath))]
		}
	}
	if forwardedPrefix == "" && m.prefix != "" && m.prefix != "/" {
		forwardedPrefix = m.prefix
	}
	httpsOnly := true
	for _, p := range m.route.Protocols {
		if p == "http" {
			httpsOnly = false
		}
	}
	if httpsOnly && forwardedProto != "https" {
		if m.route.HTTPSRedirectStatusCode == 426 {
			r.kongError(426, "Please use HTTPS protocol", map[string][]string{
				"Connection": {"Upgrade"}, "Upgrade": {"TLS/1.2, HTTP/1.1"}})
			return n.sendFinal(r)
		}
		r.respHeaders.set("Location", []string{"https://" + forwardedHost + r.requestURI})
		r.exit(m.route.HTTPSRedirectStatusCode, nil, false, nil)
		return n.sendFinal(r)
	}
	// balancer_prepare
	bd := &balancerData{scheme: "http", retries: 5, connectTimeout: 60000, sendTimeout: 60000, readTimeout: 60000}
	if s := r.service; s != nil {
		bd.scheme, bd.typ, bd.host, bd.port = s.Protocol, hostType(s.Host), s.Host, s.Port
		bd.retries, bd.connectTimeout, bd.sendTimeout, bd.readTimeout = s.Retries, s.ConnectTimeout, s.WriteTimeout, s.ReadTimeout
	}
	r.balancer = bd
	r.upstreamScheme = bd.scheme
	r.upstreamURI = escapeURI(m.upstreamURI)
	if m.route.PreserveHost {
		r.upstreamHost, _ = r.headers.first("Host")
	}
	upgrade, _ := r.headers.first("Upgrade")
	if strings.EqualFold(upgrade, "websocket") {
		r.vars["upstream_connection"] = "keep-alive, Upgrade"
		r.vars["upstream_upgrade"] = "websocket"
	} else {
		r.vars["upstream_connection"] = "keep-alive"
	}
	if xff, ok := r.headers.first("X-Forwarded-For"); ok {
		r.vars["upstream_x_forwarded_for"] = xff + ", " + r.remoteIP
	} else {
		r.vars["upstream_x_forwarded_for"] = r.remoteIP
	}
	r.vars["upstream_x_forwarded_proto"] = forwardedProto
	r.vars["upstream_x_forwarded_host"] = forwardedHost
	r.vars["upstream_x_forwarded_port"] = forwardedPort
	r.vars["upstream_x_forwarded_path"] = forwardedPath
	r.vars["upstream_x_forwarded_prefix"] = forwardedPrefix
	inboundVia := fmt.Sprintf("%.1f %s", r.httpVersion, serverTokens)
	if via, ok := r.headers.first("Via"); ok {
		r.vars["upstream_via"] = via + ", " + inboundVia
	} else {
		r.vars["upstream_via"] = inboundVia
	}

	// execute_collecting_plugins_iterator: each plugin is collected (for
	// response and log) whether or not its access handler runs
	r.delay = true
	r.collecting = true
	for _, h := range n.plugins {
		consumerID := ""
		if c, ok := r.ctx["authenticated_consumer"].(map[string]any); ok {
			consumerID = entityString(c, "id")
		}
		routeID, serviceID := m.route.ID, ""
		if r.service != nil {
			serviceID = r.service.ID
		}
		p := h.lookupConfig(routeID, serviceID, consumerID)
		if p == nil {
			continue
		}
		cp := &collectedPlugin{handler: h, plugin: p}
		r.collected = append(r.collected, cp)
		if h.phases["response"] && !r.ctxTruthy("buffered_proxying") {
			r.ctx["buffered_proxying"] = true
		}
		if r.delayed != nil || !h.phases["access"] {
			continue
		}
		r.ctx["plugin_id"] = p.ID
		var res evResult
		var err error
		if h.external {
			r.ctx["ran_go_plugin"] = true
			res, err = n.event(r, cp, "access")
		} else if err = n.keyAuthAccess(r, p.Config); err != nil {
			res = evLuaError
		}
		switch res {
		case evLuaError:
			n.log.logf(lvlErr, "[kong] %s", err)
			r.recordError("access: %v", err)
			r.delayed = &delayedResponse{status: 500, body: []byte("An unexpected error occurred")}
			r.ctx["KONG_UNEXPECTED"] = true
		case evServerError:
			n.log.logf(lvlErr, "[kong] pluginserver error: %v", err)
			r.recordError("access: pluginserver error: %v", err)
			r.kongError(500, "", nil)
		}
	}
	r.delay = false
	if r.delayed != nil {
		r.tAccessEnd = nowMS()
		r.responseLatency = r.tAccessEnd - r.tProcessingStart
		r.flushDelayed()
		return n.sendFinal(r)
	}
	if r.service == nil {
		r.tAccessEnd = nowMS()
		delete(r.ctx, "buffered_proxying")
		r.kongError(503, "no Service found with those values", nil)
		return n.sendFinal(r)
	}

	// runloop.access.after
	if strings.HasSuffix(r.requestURI, "?") || r.args != "" {
		r.upstreamURI = r.upstreamURI + "?" + r.args
	}
	bd.scheme = r.upstreamScheme
	if r.upstreamHost != "" {
		bd.preserveHost = true
	}
	if status, err := n.execute(bd); err != nil {
		msg := err.Error()
		if status == 500 {
			msg = fmt.Sprintf("failed the initial dns/balancer resolve for '%s' with: %s", bd.host, msg)
		}
		r.kongError(status, msg, nil)
		return n.sendFinal(r)
	}
	setHostHeader(r)
	if conn, ok := r.headers.first("Connection"); ok && conn != "keep-alive" && conn != "close" && conn != "upgrade" {
		for _, t := range strings.Split(conn, ",") {
			t = strings.ToLower(strings.TrimSpace(t))
			if t == "" || (t == "upgrade" && r.vars["upstream_connection"] != "keep-alive") {
				continue
			}
			r.headers.clear(t)
		}
	}
	if te, ok := r.headers.first("TE"); ok {
		for _, t := range strings.Split(te, ",") {
			if strings.TrimSpace(t) == "trailers" {
				r.vars["upstream_te"] = "trailers"
			}
		}
	}
	r.headers.clear("Proxy")
	r.headers.clear("Proxy-Connection")
	r.tAccessEnd = nowMS()
	r.ctx["KONG_ACCESS_ENDED_AT"] = r.tAccessEnd
	r.ctx["KONG_PROXIED"] = true
	if r.ctxTruthy("buffered_proxying") {
		if r.vars["upstream_upgrade"] == "" {
			return n.bufferedProxy(r)
		}
		n.log.logf(lvlNotice, "response buffering was turned off: connection upgrade (%s)", r.vars["upstream_upgrade"])
		delete(r.ctx, "buffered_proxying")
	}
	return n.streamProxy(r)
}

// bufferedProxy is Kong.response (kong/init.lua): the upstream's whole
// answer through the /kong_buffered_http subrequest, then the Response
// handlers, then ngx.print of the buffered body.
func (n *Node) bufferedProxy(r *reqCtx) bool {
	r.rec.Buffered = true
	r.buffered = true
	body, err := r.readBody()
	if err != nil {
		r.status = 499
		return false
	}
	resp, fail := n.proxy(r.req.Context(), r, r.method, body)
	var status int
	var hdrs *headerList
	var rbody []byte
	switch {
	case fail == 499:
		r.status = 499
		return false
	case fail != 0:
		// The subrequest failed before any response (connect error,
		// timeout): ngx.location.capture reports it truncated with status
		// 502/504, and Kong.response answers through kong/error_handlers.lua
		// without running any Response handler (Kong PR #6735). nginx's
		// error_page also runs Kong.handle_error inside the subrequest, on
		// the shared ctx, which marks the request KONG_UNEXPECTED.
		r.errorPage(fail)
		return n.sendFinal(r)
	default:
		b, err := io.ReadAll(resp.resp.Body)
		_ = resp.resp.Body.Close()
		resp.Close(err == nil)
		if err != nil {
			// res.truncated: Kong's error handler with ngx.status = res.status
			// (the upstream's status: "The upstream server responded with 200")
			n.log.logf(lvlErr, "[kong] upstream %s while reading upstream (buffered)", describeErr(err))
			r.status = resp.resp.StatusCode
			r.errorPage(resp.resp.StatusCode)
			return n.sendFinal(r)
		}
		status, hdrs, rbody = resp.resp.StatusCode, upstreamHeaders(resp.resp), b
	}
	r.setPhase(phResponse)
	r.tResponseStart = nowMS()
	if r.tBalancerEnd > 0 {
		r.waitingTime = r.tResponseStart - r.tBalancerEnd
	} else {
		r.waitingTime = r.tResponseStart - r.tAccessEnd
	}
	r.bufStatus, r.bufHeaders, r.bufBody = status, hdrs, rbody
	r.ctx["buffered_status"] = float64(status)
	r.ctx["buffered_headers"] = hdrs.luaTable(0)
	r.ctx["buffered_body"] = string(rbody)
	// kong.response.set_status(status); kong.response.set_headers(headers)
	r.status = status
	seen := map[string]bool{}
	for _, h := range hdrs.h {
		k := strings.ToLower(h.name)
		if seen[k] || isTransferEncoding(k) {
			continue
		}
		seen[k] = true
		r.respHeaders.set(h.name, hdrs.values(h.name))
	}
	for _, cp := range r.collected {
		if !cp.handler.external || !cp.handler.phases["response"] {
			continue
		}
		r.ctx["plugin_id"] = cp.plugin.ID
		res, err := n.event(r, cp, "response")
		switch res {
		case evLuaError:
			// not caught in this phase: nginx's error page (500)
			n.log.logf(lvlErr, "[kong] %s", err)
			r.recordError("response: %v", err)
			r.final = nil
			r.errorPage(500)
		case evServerError:
			n.log.logf(lvlErr, "[kong] pluginserver error: %v", err)
			r.recordError("response: pluginserver error: %v", err)
			r.kongError(500, "", nil)
		}
		if r.final != nil {
			break
		}
	}
	if r.final == nil {
		r.final = &finalResponse{body: rbody} // ngx.print(body)
	}
	return n.sendFinal(r)
}

// singleHeaders are the upstream headers nginx stores in dedicated
// headers_out fields: they replace a value set earlier instead of adding.
var singleHeaders = map[string]bool{"content-type": true, "content-length": true, "last-modified": true,
	"location": true, "server": true, "date": true, "etag": true, "expires": true}

// streamProxy is nginx proxying the upstream's answer as it comes, each
// chunk flushed (Kong's location / with the response not buffered).
func (n *Node) streamProxy(r *reqCtx) bool {
	body, err := r.readBody()
	if err != nil {
		r.status = 499
		return false
	}
	ctx := r.req.Context()
	resp, fail := n.proxy(ctx, r, r.method, body)
	if fail == 499 {
		r.status = 499
		return false
	}
	if fail != 0 {
		r.status = fail
		r.errorPage(fail)
		return n.sendFinal(r)
	}
	up := upstreamHeaders(resp.resp)
	for _, h := range up.h {
		if singleHeaders[strings.ToLower(h.name)] {
			r.respHeaders.clear(h.name)
		}
	}
	r.respHeaders.h = append(r.respHeaders.h, up.h...)
	r.status = resp.resp.StatusCode
	r.upstreamVia, _ = up.first("Via")
	n.headerFilter(r)
	n.writeHeader(r)
	rc := http.NewResponseController(r.w)
	// Kong's location / has proxy_buffering on: nginx sends the response
	// head with the first body bytes it reads, or as the request ends (an
	// upstream closing early), not before (no flush after the header,
	// ngx_http_upstream_send_response). An upstream's X-Accel-Buffering: no
	// makes the response unbuffered: the head goes at once; so does a route
	// with response_buffering: false (Kong's @unbuffered_response location,
	// proxy_buffering off).
	if strings.EqualFold(resp.resp.Header.Get("X-Accel-Buffering"), "no") || !r.route.ResponseBuffering {
		_ = rc.Flush()
	}
	buf := make([]byte, 32*1024)
	complete := false
	abort := false
	for {
		k, err := resp.resp.Body.Read(buf)
		if k > 0 {
			if _, werr := r.w.Write(buf[:k]); werr != nil {
				break
			}
			r.bytesSent += int64(k)
			_ = rc.Flush()
		}
		if errors.Is(err, io.EOF) {
			complete = true
			break
		}
		if err != nil {
			if ctx.Err() == nil {
				n.log.logf(lvlErr, "[kong] upstream %s while reading response from upstream", describeErr(err))
				// The head nginx held back goes out as the request ends;
				// then the connection is cut, the body unfinished.
				_ = rc.Flush()
				abort = true
			}
			break
		}
	}
	_ = resp.resp.Body.Close()
	resp.Close(complete)
	r.bodyFilterEnd()
	return abort
}

func describeErr(err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timed out (110: Connection timed out)"
	}
	return "prematurely closed connection"
}

func (r *reqCtx) bodyFilterEnd() {
	r.tBodyFilterEnd = nowMS()
	if r.ctxTruthy("KONG_PROXIED") {
		start := r.tResponseStart
		if start == 0 {
			start = r.tHeaderFilter
		}
		r.receiveTime = r.tBodyFilterEnd - start
	}
}

// headerFilter is Kong.header_filter with runloop.header_filter.before and
// after (kong/runloop/handler.lua): latency headers, Via, Server and
// X-Kong-Request-Id, and the state of a failed last try.
func (n *Node) headerFilter(r *reqCtx) {
	r.tHeaderFilter = nowMS()
	if r.status == 0 {
		r.status = 200
	}
	proxied := r.ctxTruthy("KONG_PROXIED")
	start := r.tResponseStart
	if start == 0 {
		start = r.tHeaderFilter
	}
	if proxied {
		if r.waitingTime == 0 {
			end := r.tBalancerEnd
			if end == 0 {
				end = r.tAccessEnd
			}
			r.waitingTime = start - end
		}
		if r.proxyLatency == 0 {
			if r.tBalancerEnd > 0 {
				r.proxyLatency = r.tBalancerEnd - r.tProcessingStart
			} else {
				r.proxyLatency = start - r.tProcessingStart
			}
		}
		if r.status > 499 && r.balancer != nil && r.balancer.tryCount > r.balancer.retries && len(r.balancer.tries) > 0 {
			t := r.balancer.tries[len(r.balancer.tries)-1]
			t.State, t.Code = "failed", r.status
		}
		r.respHeaders.set(hdrUpstreamLatency, []string{strconv.Itoa(int(math.Round(r.waitingTime)))})
		r.respHeaders.set(hdrProxyLatency, []string{strconv.Itoa(int(math.Round(r.proxyLatency)))})
		via := "1.1 " + serverTokens
		if r.upstreamVia != "" {
			via = r.upstreamVia + ", " + via
		}
		r.respHeaders.set("Via", []string{via})
		if _, ok := r.respHeaders.first("Server"); !ok {
			r.respHeaders.set("Server", []string{serverTokens})
		}
	} else {
		if r.responseLatency == 0 {
			r.responseLatency = start - r.tProcessingStart
		}
		r.respHeaders.set(hdrResponseLatency, []string{strconv.Itoa(int(math.Round(r.responseLatency)))})
		if v, _ := r.respHeaders.first("Via"); v != serverTokens {
			r.respHeaders.set("Server", []string{serverTokens})
		}
	}
	r.respHeaders.set(hdrRequestID, []string{r.id})
}

// writeHeader sends the status line and headers (names as set).
func (n *Node) writeHeader(r *reqCtx) {
	h := r.w.Header()
	for _, hd := range r.respHeaders.h {
		h[hd.name] = append(h[hd.name], hd.value)
	}
	if _, ok := r.respHeaders.first("Content-Type"); !ok {
		h["Content-Type"] = nil // nginx sends none (default_type ''); no sniffing
	}
	size := len("HTTP/1.1 200 OK\r\n") + 2
	for _, hd := range r.respHeaders.h {
		size += len(hd.name) + len(hd.value) + 4
	}
	r.bytesSent += int64(size)
	r.headersSent = true
	r.w.WriteHeader(r.status)
}

// sendFinal sends a response Kong produced (or the buffered body) through
// the header filter.
func (n *Node) sendFinal(r *reqCtx) bool {
	n.headerFilter(r)
	n.writeHeader(r)
	if r.final != nil && len(r.final.body) > 0 && r.method != "HEAD" {
		k, _ := r.w.Write(r.final.body)
		r.bytesSent += int64(k)
	}
	r.bodyFilterEnd()
	return false
}

// logPhase is Kong.log: each collected plugin with a log handler has its
// data saved (build_phases in plugin.lua) and its Log event run in a
// timer, after the response.
func (n *Node) logPhase(r *reqCtx) {
	r.setPhase(phLog)
	if r.ctxTruthy("KONG_PROXIED") && r.waitingTime == 0 {
		end := r.tBalancerEnd
		if end == 0 {
			end = r.tAccessEnd
		}
		r.waitingTime = nowMS() - end
	}
	var logs []*collectedPlugin
	if r.collecting {
		for _, cp := range r.collected {
			if cp.handler.external && cp.handler.phases["log"] {
				logs = append(logs, cp)
			}
		}
	} else {
		for _, h := range n.plugins {
			if h.external && h.phases["log"] {
				if p := h.combos["::"]; p != nil {
					logs = append(logs, &collectedPlugin{handler: h, plugin: p})
				}
			}
		}
	}
	r.rec.Status = r.status
	r.rec.Exited = r.ctxTruthy("KONG_EXITED")
	if c, ok := r.ctx["authenticated_consumer"].(map[string]any); ok {
		r.rec.Consumer = entityString(c, "username")
		if r.rec.Consumer == "" {
			r.rec.Consumer = entityString(c, "id")
		}
	}
	if r.balancer != nil {
		for _, t := range r.balancer.tries {
			r.rec.Tries = append(r.rec.Tries, Try{IP: t.IP, Port: t.Port, State: t.State, Code: t.Code})
		}
		if len(r.balancer.tries) > 0 {
			t := r.balancer.tries[len(r.balancer.tries)-1]
			r.rec.Target = net.JoinHostPort(t.IP, strconv.Itoa(t.Port))
		}
	}
	if len(logs) == 0 {
		if n.opts.OnRecord != nil {
			// What Kong's logging plugins (http-log ...) send: Kong runs
			// kong.log.serialize() for them whether or not a Go plugin
			// has a Log phase.
			r.rec.Serialized = string(encodeCJSON(r.serialize()))
		}
		n.deliver(copyRecord(r.rec))
		return
	}
	var timers []*reqCtx
	for _, cp := range logs {
		r.ctx["plugin_id"] = cp.plugin.ID
		timers = append(timers, r.logTimerCtx(cp))
	}
	n.pending.Add(1)
	r.worker.active.Add(1)
	go func() {
		defer n.pending.Add(-1)
		defer r.worker.active.Add(-1)
		for i, cp := range logs {
			t := timers[i]
			res, err := n.event(t, cp, "log")
			switch res {
			case evLuaError:
				n.log.logf(lvlErr, "[kong] plugin.lua:190 %v", err)
				t.recordError("log: %v", err)
			case evServerError:
				n.log.logf(lvlErr, "[kong] pluginserver error: %v", err)
				// kong.response.error(500) is not allowed in a timer
				n.log.logf(lvlErr, "[kong] function cannot be called in log phase (only in: %s)", rewriteAccessHeader.names())
				t.recordError("log: pluginserver error: %v", err)
			}
			for _, c := range t.abandoned {
				_ = c.Close()
			}
		}
		n.deliver(copyRecord(r.rec))
	}()
}

// logTimerCtx builds the saved data of the log closure and the context the
// timer's PDK calls see: ngx.ctx is the clone, KONG_PHASE is log, and the
// request APIs are gone.
func (r *reqCtx) logTimerCtx(cp *collectedPlugin) *reqCtx {
	ser := r.serialize()
	saved := &savedData{
		pluginName:      cp.handler.name,
		serializeData:   ser,
		serialized:      string(encodeCJSON(ser)),
		ngxCtx:          cloneCtx(r.ctx),
		ctxShared:       r.shared,
		requestHeaders:  r.headers.luaTable(100), // ngx.req.get_headers(): 100 at most
		responseHeaders: r.respHeaders.luaTable(100),
		responseStatus:  r.status,
		reqStartTime:    float64(r.startTime.UnixMilli()) / 1000,
	}
	r.rec.Serialized = saved.serialized
	return &reqCtx{node: r.node, worker: r.worker, id: r.id, startTime: r.startTime, ctx: saved.ngxCtx, shared: saved.ctxShared,
		phase: phLog, saved: saved, rec: r.rec, matchT: r.matchT, bufStatus: r.bufStatus, bufHeaders: r.bufHeaders,
		bufBody: r.bufBody, buffered: r.buffered, upstreamStatus: r.upstreamStatus, headers: r.headers.clone(), respHeaders: r.respHeaders.clone(), status: r.status,
		serializes: append([]serializeValue(nil), r.serializes...), balancer: r.balancer, vars: map[string]string{}}
}

// cloneCtx is table.clone(ngx.ctx): a shallow copy.
func cloneCtx(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// finalize is the request's end in nginx: its cosockets (the plugin
// connections of abandoned events) are closed and the client body's temp
// file removed.
func (r *reqCtx) finalize() {
	for _, c := range r.abandoned {
		_ = c.Close()
	}
	r.abandoned = nil
	r.bodyMu.Lock()
	if r.bodyFile != "" {
		_ = os.Remove(r.bodyFile)
		r.bodyFile = ""
	}
	r.bodyMu.Unlock()
}
