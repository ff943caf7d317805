package handler

import (
	"net"
	"strconv"
	"strings"

	"github.com/mcp-relay/mcp-relay/kong"
)

// balanced is where Kong's balancer sent a buffered request, read in its
// Response phase.
type balanced struct {
	target  string // "ip:port", what set_target pins later requests to
	service string // the Kong service's id
	// scheme is what the Host Kong sent tells of the upstream scheme:
	// schemeHTTP or schemeHTTPS when it tells (the port is 80 or 443),
	// else schemeUnknown.
	scheme uint8
}

const (
	schemeUnknown = iota
	schemeHTTP
	schemeHTTPS
)

// Why a Response phase cannot name the replica: the reason label of
// mcp_relay_sessions_unlearned_total and of the Log phase's hints.
const (
	unnamedPreserveHost = "preserve_host" // the route sends the client's Host
	unnamedName         = "name"          // a target given by name, or the upstream's host_header
	unnamedNoHost       = "no_upstream_host"
)

// unnamedReasons are every reason, so that each label shows from the start.
var unnamedReasons = []string{unnamedPreserveHost, unnamedName, unnamedNoHost}

// balancedTarget reads, in the Response phase of a buffered request, the
// target Kong balanced it to: two PDK calls (the route, upstream_host),
// three when the port is the scheme's default. Kong's balancer writes that
// target's "host:port" into upstream_host as the Host it sends
// (kong/runloop/balancer/init.lua set_host_header), again after each retry,
// and a buffered Response phase runs after the upstream answered; Kong
// 3.9.1 shows it (test/realkong). The port is left out when it is the
// scheme's default. upstream_addr, which would name the address, is empty
// there: the buffered upstream call ran in a subrequest.
//
// upstream_host names the replica only when it holds an IP address. why
// says when it does not: the route preserves the client's Host, or the name
// is a target given by name (which may resolve to several replicas) or the
// upstream's host_header. Only Kong's balancer tries, in the Log phase's
// kong.log.serialize(), name the replica then.
func (p *Plugin) balancedTarget(k kong.PDK) (b balanced, why string, err error) {
	route, err := k.Route()
	if err != nil {
		return b, "", err
	}
	b.service = route.ServiceID
	if route.PreserveHost {
		return b, unnamedPreserveHost, nil
	}
	value, err := k.NginxVar("upstream_host")
	if err != nil {
		return b, "", err
	}
	host, port, hasPort := splitUpstreamHost(value)
	if host == "" {
		return b, unnamedNoHost, nil
	}
	if net.ParseIP(host) == nil {
		return b, unnamedName, nil
	}
	switch {
	case !hasPort:
		scheme, err := k.NginxVar("upstream_scheme")
		if err != nil {
			return b, "", err
		}
		port, b.scheme = 80, schemeHTTP
		if scheme == "https" || scheme == "grpcs" {
			port, b.scheme = 443, schemeHTTPS
		}
	case port == 80: // shown: the scheme is not http
		b.scheme = schemeHTTPS
	case port == 443: // shown: the scheme is not https
		b.scheme = schemeHTTP
	}
	b.target = net.JoinHostPort(host, strconv.Itoa(port))
	return b, "", nil
}

// splitUpstreamHost splits Kong's "host", "host:port", "[v6]" or
// "[v6]:port"; host is "" when value is none of them.
func splitUpstreamHost(value string) (host string, port int, hasPort bool) {
	if value == "" {
		return "", 0, false
	}
	if h, p, err := net.SplitHostPort(value); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 || h == "" {
			return "", 0, false
		}
		return h, n, true
	}
	if strings.HasPrefix(value, "[") && strings.HasSuffix(value, "]") {
		return value[1 : len(value)-1], 0, false
	}
	if strings.ContainsAny(value, ":[]") { // a bare IPv6 address
		if net.ParseIP(value) != nil {
			return value, 0, false
		}
		return "", 0, false
	}
	return value, 0, false
}
