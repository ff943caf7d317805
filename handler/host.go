package handler

import (
	"net"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/mcp-relay/mcp-relay/kong"
)

// hHost is the client's Host header as kong.request.get_headers returns it.
const hHost = "host"

// A pinned request must reach its replica with the Host header Kong sends
// when it balances, or a server that checks Host (DNS-rebinding protection,
// virtual hosts) rejects every request after initialize. Kong 3.9:
//
//   - kong.service.set_target (kong/pdk/service.lua) sets
//     ngx.var.upstream_host to the target's host, so runloop access.after
//     (kong/runloop/handler.lua) takes it as a preserved Host and skips
//     balancer.set_host_header: the replica sees the bare IP.
//   - When Kong balances, set_host_header (kong/runloop/balancer/init.lua)
//     sends balancer_data.hostname, with ":port" unless the port is the
//     scheme's default; for an upstream target given by IP that hostname is
//     the IP (balancer execute: `hostname = hostname or ip`). With the
//     route's preserve_host, the router's upstream_host (the client's Host)
//     is sent instead.
//
// Only kong.service.request.set_header(s) writes ngx.var.upstream_host
// back, so restoring costs one PDK call per pinned request; it is skipped
// when the Host Kong would balance with is the bare host set_target sends.
// It must be set_header: set_headers stores go-pdk's array value in the
// nginx variable as it is, which tostring()s it, and the replica gets
// "Host: table: 0x..." (test/realkong pins this on Kong 3.9.1).
// The route facts (preserve_host, the service's protocol) come with the
// learning of a session: from the route and the Host Kong sent, read in the
// initialize's Response phase (balanced.go), or from the kong.log.serialize()
// the Log phase reads when it learns there.
//
// Not known to the plugin: an upstream's host_header and targets given by
// name (Kong sends that name); upstream.host_header covers both.
type hostRule struct {
	bits atomic.Uint32 // hostRuleKnown | hostRulePreserve | hostRuleHTTPS
}

const (
	hostRuleKnown = 1 << iota
	hostRulePreserve
	hostRuleHTTPS
)

// learn reads the route's preserve_host and the service's protocol from
// kong.log.serialize() output.
func (h *hostRule) learn(data []byte) {
	js := unsafe.String(unsafe.SliceData(data), len(data))
	res := gjson.GetMany(js, "route.preserve_host", "service.protocol")
	bits := uint32(hostRuleKnown)
	if res[0].Bool() {
		bits |= hostRulePreserve
	}
	if res[1].Str == "https" {
		bits |= hostRuleHTTPS
	}
	h.bits.Store(bits)
}

// learnBalanced records what a session learned in the Response phase tells:
// the route does not preserve Host (such sessions are not learned there),
// and the scheme, when the Host Kong sent told it.
func (h *hostRule) learnBalanced(scheme uint8) {
	bits := (h.bits.Load() | hostRuleKnown) &^ hostRulePreserve
	switch scheme {
	case schemeHTTPS:
		bits |= hostRuleHTTPS
	case schemeHTTP:
		bits &^= hostRuleHTTPS
	}
	h.bits.Store(bits)
}

// balancedHost is the Host Kong sends when it balances to target ("ip:port",
// split into host and port), and whether it differs from the bare host
// set_target makes it send. Kong's "host:port" is target itself, so the hot
// path builds no string.
func (h *hostRule) balancedHost(headers map[string][]string, target, host string, port int) (string, bool) {
	bits := h.bits.Load()
	if bits&hostRulePreserve != 0 {
		client := first(headers, hHost)
		return client, client != "" && client != host
	}
	defaultPort := 80
	if bits&hostRuleHTTPS != 0 {
		defaultPort = 443
	}
	if port == defaultPort {
		return host, false
	}
	return target, true
}

// setPinnedHeaders runs after set_target. It restores Host (upstream.host_header
// when set, else the Host Kong would have sent when balancing) and, for a
// recovered session, sends the id its new replica knows it by: one
// set_header call each (see above why never set_headers).
func (p *Plugin) setPinnedHeaders(k kong.PDK, headers map[string][]string, target, host string, port int, upstreamSession string) {
	value, set := p.cfg.Upstream.HostHeader, true
	if value == "" {
		value, set = p.hosts.balancedHost(headers, target, host, port)
	}
	if set {
		if err := k.SetUpstreamHeader("Host", value); err != nil {
			logger.Error("setting the Host of a pinned request", "err", err)
		}
	}
	if upstreamSession != "" {
		if err := k.SetUpstreamHeader("Mcp-Session-Id", upstreamSession); err != nil {
			logger.Error("setting the upstream session id of a recovered session", "err", err)
		}
	}
}

// pinnedHost is the Host for a request the plugin itself sends to target
// ("ip:port", a session recovery): the one Kong would send.
func (p *Plugin) pinnedHost(headers map[string][]string, target string) string {
	if h := p.cfg.Upstream.HostHeader; h != "" {
		return h
	}
	host, portText, err := net.SplitHostPort(target)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil {
		return ""
	}
	value, _ := p.hosts.balancedHost(headers, target, host, port)
	return value
}
