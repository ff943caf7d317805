package standin

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// try is one entry of balancer_data.tries (Kong.balancer in kong/init.lua).
type try struct {
	IP                string
	Port              int
	BalancerStart     float64 // ms
	BalancerStartNS   float64
	BalancerLatency   float64 // ms
	BalancerLatencyNS float64
	State             string // "failed" when the try failed
	Code              int
}

// balancerData is ctx.balancer_data (balancer_prepare in
// kong/runloop/handler.lua).
type balancerData struct {
	scheme         string
	typ            string // type of the service host: ipv4, ipv6, name
	host           string
	port           int
	tryCount       int
	retries        int
	connectTimeout int
	sendTimeout    int
	readTimeout    int
	tries          []*try
	ip             string
	hostname       string
	preserveHost   bool
	rr             *rrBalancer // balancer_data.balancer
	upstream       *Upstream
	proxied        bool // a connection to the upstream was attempted
}

// address is one resolved address of a target.
type address struct {
	ip       string
	port     int
	hostname string
	weight   int
}

// rrBalancer is kong/runloop/balancer/round_robin.lua: a wheel of the
// targets' addresses, each repeated weight/gcd times, shuffled once, walked
// by a pointer that starts at 1 and moves before each pick.
type rrBalancer struct {
	mu       sync.Mutex
	upstream *Upstream
	wheel    []*address
	pointer  int
	health   *healthChecker // nil: no healthchecks (every address available)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func newRRBalancer(u *Upstream, rng *rand.Rand) *rrBalancer {
	b := &rrBalancer{upstream: u, pointer: 0}
	var addrs []*address
	divisor := 0
	for _, t := range u.Targets {
		ips := resolveA(t.Host)
		for _, ip := range ips {
			a := &address{ip: ip, port: t.Port, hostname: t.Host, weight: t.Weight}
			if a.weight > 0 {
				divisor = gcd(divisor, a.weight)
				addrs = append(addrs, a)
			}
		}
	}
	for _, a := range addrs {
		for i := 0; i < a.weight/divisor; i++ {
			b.wheel = append(b.wheel, a)
		}
	}
	rng.Shuffle(len(b.wheel), func(i, j int) { b.wheel[i], b.wheel[j] = b.wheel[j], b.wheel[i] })
	return b
}

// getPeer is roundrobin_algorithm:getPeer.
func (b *rrBalancer) getPeer() (*address, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.wheel) == 0 {
		//lint:ignore ST1005 Kong's message (kong/runloop/balancer/balancers.lua)
		return nil, errors.New("No peers are available")
	}
	// Walk the wheel once from the pointer, skipping addresses the
	// healthchecker made unavailable (round_robin.lua getPeer's repeat loop).
	for range b.wheel {
		b.pointer++
		if b.pointer > len(b.wheel) {
			b.pointer = 1
		}
		if a := b.wheel[b.pointer-1]; b.health.available(a.ip, a.port) {
			return a, nil
		}
	}
	//lint:ignore ST1005 Kong's message (balancers.lua errors.ERR_BALANCER_UNHEALTHY)
	return nil, errors.New("Balancer is unhealthy")
}

// resolveA resolves a host the way Kong's DNS client does with its default
// dns_order (LAST,SRV,A,CNAME): IPv4 addresses only; an IP is itself.
func resolveA(host string) []string {
	if ip := net.ParseIP(host); ip != nil {
		return []string{host}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", host)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// execute is balancer.execute (kong/runloop/balancer/init.lua): it sets
// balancer_data.ip, port and hostname for the current try. The returned
// status is the one Kong answers with when it fails (500 or 503).
func (n *Node) execute(bd *balancerData) (int, error) {
	if bd.typ != "name" {
		bd.ip = bd.host
		if bd.port == 0 {
			bd.port = 80
		}
		bd.hostname = bd.host
		return 0, nil
	}
	if bd.tryCount == 0 {
		u := n.deck.UpstreamByName(bd.host)
		if u != nil {
			n.balMu.RLock()
			bd.rr = n.balancers[u.Name]
			n.balMu.RUnlock()
			bd.upstream = u
		}
	}
	if bd.rr != nil {
		a, err := bd.rr.getPeer()
		if err != nil {
			return 503, errors.New("failure to get a peer from the ring-balancer")
		}
		bd.ip, bd.port = a.ip, a.port
		bd.hostname = a.hostname
		if bd.upstream != nil && bd.upstream.HostHeader != "" {
			bd.hostname = bd.upstream.HostHeader
		}
		return 0, nil
	}
	ips := resolveA(bd.host)
	if len(ips) == 0 {
		return 503, errors.New("name resolution failed")
	}
	bd.ip = ips[0]
	bd.hostname = bd.host
	return 0, nil
}

// setHostHeader is balancer.set_host_header: unless the route preserves the
// host (or a plugin set upstream_host), Host is the target's hostname, with
// the port unless it is the scheme's default.
func setHostHeader(r *reqCtx) {
	bd := r.balancer
	if bd.preserveHost {
		return
	}
	h := bd.hostname
	if (bd.port != 80 && bd.port != 443) || (bd.port == 80 && bd.scheme != "http") || (bd.port == 443 && bd.scheme != "https") {
		h = h + ":" + strconv.Itoa(bd.port)
	}
	r.upstreamHost = h
}

// upstreamResponse is the upstream's answer, its body still to be read.
type upstreamResponse struct {
	resp *http.Response
	conn *upstreamConn
	pool *connPool
	key  string
}

// Close releases the connection, after the body was closed: back to the
// keepalive pool when the body was read to its end, closed otherwise. A
// client that went away as the body ended has its watch close the
// connection at any moment, even after another request took it from the
// pool: such a connection is not pooled.
func (u *upstreamResponse) Close(complete bool) {
	sb, _ := u.resp.Body.(*stopBody)
	if complete && !u.resp.Close && u.pool != nil && sb != nil && sb.stopped {
		u.pool.put(u.key, u.conn)
		return
	}
	_ = u.conn.Close()
}

// upstreamConn applies nginx's proxy timeouts: each read must complete
// within read_timeout and each write within send_timeout (they are timeouts
// between two operations, not for the whole response).
type upstreamConn struct {
	net.Conn
	br           *bufio.Reader
	readTimeout  time.Duration
	writeTimeout time.Duration
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.readTimeout))
	return c.Conn.Read(p)
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	return c.Conn.Write(p)
}

// connPool is the upstream keepalive pool (upstream_keepalive_pool_size
// 512, idle timeout 60 s, in kong_defaults.lua), keyed by ip|port.
type connPool struct {
	mu   sync.Mutex
	idle map[string][]*upstreamConn
}

func (p *connPool) get(key string) *upstreamConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		l := p.idle[key]
		if len(l) == 0 {
			return nil
		}
		c := l[len(l)-1]
		p.idle[key] = l[:len(l)-1]
		if c.br.Buffered() == 0 && idleConnUsable(c.Conn) {
			return c
		}
		_ = c.Close()
	}
}

func (p *connPool) put(key string, c *upstreamConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[key]) >= 512 {
		_ = c.Close()
		return
	}
	p.idle[key] = append(p.idle[key], c)
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.idle {
		for _, c := range l {
			_ = c.Close()
		}
	}
	p.idle = map[string][]*upstreamConn{}
}

// failure classifies an upstream error as nginx does: a timeout is 504,
// anything else 502 (ngx.balancer get_last_failure).
func failureStatus(err error) int {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return 504
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return 504
	}
	return 502
}

func idempotent(method string) bool {
	switch method {
	case "POST", "LOCK", "PATCH":
		return false
	}
	return true
}

// buildUpstreamRequest writes the request nginx's proxy module sends
// (location / of nginx_kong.lua: proxy_set_header lines, then the client's
// headers, the body with its length).
func buildUpstreamRequest(r *reqCtx, method string, body []byte) []byte {
	var b strings.Builder
	uri := r.upstreamURI
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, uri)
	set := []header{
		{"Host", r.upstreamHost},
		{"Connection", r.vars["upstream_connection"]},
		{"TE", r.vars["upstream_te"]},
		{"Via", r.vars["upstream_via"]},
		{"Upgrade", r.vars["upstream_upgrade"]},
		{"X-Forwarded-For", r.vars["upstream_x_forwarded_for"]},
		{"X-Forwarded-Proto", r.vars["upstream_x_forwarded_proto"]},
		{"X-Forwarded-Host", r.vars["upstream_x_forwarded_host"]},
		{"X-Forwarded-Port", r.vars["upstream_x_forwarded_port"]},
		{"X-Forwarded-Path", r.vars["upstream_x_forwarded_path"]},
		{"X-Forwarded-Prefix", r.vars["upstream_x_forwarded_prefix"]},
		{"X-Real-IP", r.remoteIP},
		{"X-Kong-Request-Id", r.id},
	}
	skip := map[string]bool{"content-length": true, "transfer-encoding": true, "keep-alive": true, "expect": true}
	for _, h := range set {
		skip[strings.ToLower(h.name)] = true
		if h.value != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", h.name, h.value)
		}
	}
	for _, h := range r.headers.h {
		if skip[strings.ToLower(h.name)] {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h.name, h.value)
	}
	if len(body) > 0 || (method != "GET" && method != "HEAD" && method != "DELETE" && method != "OPTIONS") ||
		r.headers.values("Content-Length") != nil || r.headers.values("Transfer-Encoding") != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	return append([]byte(b.String()), body...)
}

// proxy runs the upstream part of a request: Kong.balancer for each try,
// nginx's connect/send/read with the service's timeouts, and nginx's
// proxy_next_upstream "error timeout" retries (a request that was already
// sent is not retried for POST, LOCK and PATCH). On failure it returns the
// status nginx finalizes the request with (502 or 504).
func (n *Node) proxy(ctx context.Context, r *reqCtx, method string, body []byte) (*upstreamResponse, int) {
	bd := r.balancer
	bd.proxied = true
	var statuses []string
	for {
		// Kong.balancer
		now := nowMS()
		t := &try{BalancerStart: now, BalancerStartNS: float64(time.Now().UnixNano())}
		bd.tryCount++
		bd.tries = append(bd.tries, t)
		if r.tBalancerStart == 0 {
			r.tBalancerStart = now
		}
		if bd.tryCount > 1 {
			if status, err := n.execute(bd); err != nil {
				n.log.logf(lvlErr, "failed to retry the dns/balancer resolver for '%s' with: %v", bd.host, err)
				r.upstreamStatus = strings.Join(statuses, ", ")
				return nil, status
			}
			setHostHeader(r)
		}
		t.IP, t.Port = bd.ip, bd.port
		r.tBalancerEnd = nowMS()
		t.BalancerLatency = r.tBalancerEnd - t.BalancerStart
		t.BalancerLatencyNS = float64(time.Now().UnixNano()) - t.BalancerStartNS

		resp, sent, err := n.attempt(ctx, r, bd, method, body)
		if bd.rr != nil && ctx.Err() == nil { // passive health checks: balanced tries only
			if err == nil {
				bd.rr.health.passive(bd.ip, bd.port, false, resp.resp.StatusCode)
			} else {
				bd.rr.health.passive(bd.ip, bd.port, true, failureStatus(err))
			}
		}
		if err == nil {
			statuses = append(statuses, strconv.Itoa(resp.resp.StatusCode))
			r.upstreamStatus = strings.Join(statuses, ", ")
			return resp, 0
		}
		if ctx.Err() != nil {
			r.upstreamStatus = strings.Join(append(statuses, "499"), ", ")
			return nil, 499
		}
		code := failureStatus(err)
		statuses = append(statuses, strconv.Itoa(code))
		t.State, t.Code = "failed", code
		n.log.logf(lvlErr, "[kong] upstream %s:%d: %v (try %d of %d)", bd.ip, bd.port, err, bd.tryCount, bd.retries+1)
		if bd.tryCount > bd.retries || (sent && !idempotent(method)) {
			r.upstreamStatus = strings.Join(statuses, ", ")
			return nil, code
		}
	}
}

// attempt is one connection to the current peer. sent reports whether the
// request was written (for the non-idempotent retry rule).
func (n *Node) attempt(ctx context.Context, r *reqCtx, bd *balancerData, method string, body []byte) (*upstreamResponse, bool, error) {
	key := net.JoinHostPort(bd.ip, strconv.Itoa(bd.port))
	if bd.scheme == "https" {
		key += "|" + r.upstreamHost
	}
	readTO := time.Duration(bd.readTimeout) * time.Millisecond
	sendTO := time.Duration(bd.sendTimeout) * time.Millisecond
	req := buildUpstreamRequest(r, method, body)
	for attemptPooled := true; ; attemptPooled = false {
		var c *upstreamConn
		pooled := false
		if attemptPooled {
			c = n.upPool.get(key)
			pooled = c != nil
		}
		if c == nil {
			d := net.Dialer{Timeout: time.Duration(bd.connectTimeout) * time.Millisecond}
			raw, err := d.DialContext(ctx, "tcp", key[:strings.IndexByte(key+"|", '|')])
			if err != nil {
				return nil, false, err
			}
			if bd.scheme == "https" {
				host := r.upstreamHost
				if h, _, err := net.SplitHostPort(host); err == nil {
					host = h
				}
				tc := tls.Client(raw, &tls.Config{ServerName: host, InsecureSkipVerify: true}) //nolint:gosec // proxy_ssl_verify off
				_ = tc.SetDeadline(time.Now().Add(time.Duration(bd.connectTimeout) * time.Millisecond))
				if err := tc.Handshake(); err != nil {
					_ = raw.Close()
					return nil, false, err
				}
				_ = tc.SetDeadline(time.Time{})
				raw = tc
			}
			c = &upstreamConn{Conn: raw, readTimeout: readTO, writeTimeout: sendTO}
			c.br = bufio.NewReader(c)
		}
		c.readTimeout, c.writeTimeout = readTO, sendTO
		stop := context.AfterFunc(ctx, func() { _ = c.Conn.Close() })
		if _, err := c.Write(req); err != nil {
			stop()
			_ = c.Close()
			if pooled && !errors.Is(err, os.ErrDeadlineExceeded) {
				continue // a stale keepalive connection: nginx retries it without counting a try
			}
			return nil, true, err
		}
		resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
		if err != nil {
			stop()
			_ = c.Close()
			if pooled && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF)) {
				continue
			}
			return nil, true, err
		}
		// 1xx informational answers are skipped by ReadResponse's caller in
		// net/http; nginx does not pass them either
		for resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 {
			resp, err = http.ReadResponse(c.br, &http.Request{Method: method})
			if err != nil {
				stop()
				_ = c.Close()
				return nil, true, err
			}
		}
		resp.Body = &stopBody{ReadCloser: resp.Body, stop: stop}
		return &upstreamResponse{resp: resp, conn: c, pool: n.upPool, key: key}, true, nil
	}
}

// stopBody ends the watch on the request's context (the close that
// unblocks a read when the client goes away) as the body is closed.
type stopBody struct {
	io.ReadCloser
	stop    func() bool
	stopped bool // the watch ended before closing the connection
}

func (s *stopBody) Close() error {
	s.stopped = s.stop()
	return s.ReadCloser.Close()
}

// hopByHop are the upstream response headers nginx's proxy module does not
// pass, with proxy_hide_header's defaults (X-Accel-*, X-Pad) and Kong's
// proxy_pass_header Server and Date.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "transfer-encoding": true, "upgrade": true,
	"proxy-connection": true, "te": true, "trailer": true, "x-pad": true, "x-accel-expires": true,
	"x-accel-redirect": true, "x-accel-limit-rate": true, "x-accel-buffering": true, "x-accel-charset": true,
}

// upstreamHeaders lists the upstream's response headers as nginx passes
// them, in order; Content-Length is kept when the upstream sent one.
func upstreamHeaders(resp *http.Response) *headerList {
	l := &headerList{}
	conn := strings.ToLower(resp.Header.Get("Connection"))
	extra := map[string]bool{}
	for _, t := range strings.Split(conn, ",") {
		if t = strings.TrimSpace(t); t != "" && t != "close" && t != "keep-alive" && t != "upgrade" {
			extra[t] = true
		}
	}
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		lk := strings.ToLower(k)
		if hopByHop[lk] || extra[lk] || lk == "content-length" {
			continue
		}
		for _, v := range resp.Header[k] {
			l.add(k, v)
		}
	}
	if resp.ContentLength >= 0 && len(resp.TransferEncoding) == 0 {
		l.add("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	return l
}
