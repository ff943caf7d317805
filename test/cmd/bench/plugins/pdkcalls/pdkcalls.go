// Package pdkcalls is the shared core of the bench's minimal Go plugins
// (test/cmd/bench/plugins/bench-*): each phase makes exactly the PDK calls
// its route's configuration lists, nothing else, so that the real-Kong
// benchmark can price an event, one call of each kind, and the calls
// pinning needs, against routes with no plugin and with mcp-relay.
//
// A call is named as in Kong's PDK, without the module:
//
//	get_method, get_headers, get_raw_body     kong.request
//	set_ctx                                   kong.nginx.set_ctx("bench", true)
//	buffering_on                              kong.nginx.set_ctx("buffered_proxying", true)
//	buffering_off                             kong.nginx.set_ctx("buffered_proxying", false)
//	clear_ctx:KEY                             kong.nginx.set_ctx(KEY, false): Kong stores nil
//	get_route, get_service                    kong.router
//	get_var:NAME                              kong.nginx.get_var(NAME)
//	get_ctx:KEY                               kong.nginx.get_ctx(KEY)
//	serialize                                 kong.log.serialize
//	get_status                                kong.response.get_status
//	set_target                                kong.service.set_target(Config.Target)
//	set_host                                  kong.service.request.set_header("Host", Config.Target)
//
// With Config.Report, the Response phase answers the request itself with a
// JSON report of what each of its calls (or the one the request names in
// ProbeHeader) returned, value or error: the bench's probe of what a
// buffered Response phase can learn.
package pdkcalls

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Priority runs the plugins where mcp-relay runs: after Kong's auth plugins
// (key-auth 1250), before acl (950).
const Priority = 1000

// Version is the plugins' version for Kong's plugin list.
const Version = "0.1.0"

// Config is one route's plugin configuration.
type Config struct {
	// AccessCalls, ResponseCalls and LogCalls list the PDK calls of each phase, in order
	// (see the package documentation for the names).
	AccessCalls   []string `json:"access"`
	ResponseCalls []string `json:"response"`
	LogCalls      []string `json:"log"`
	// Target is the host:port of set_target and set_host.
	Target string `json:"target"`
	// Report makes the Response phase answer with what its calls returned.
	Report bool `json:"report"`
	// Padding only makes the configuration bigger (the bench asks whether
	// an event's cost depends on the configuration's size).
	Padding []string `json:"padding"`
}

// New is the plugins' constructor for server.StartServer.
func New() interface{} { return &Config{} }

// Outcome is what one call returned, for a report.
type Outcome struct {
	Call  string `json:"call"`
	Value any    `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// Run makes the calls in order and returns what each one returned.
func (c *Config) Run(k *pdk.PDK, calls []string) []Outcome {
	out := make([]Outcome, 0, len(calls))
	for _, call := range calls {
		v, err := c.call(k, call)
		o := Outcome{Call: call, Value: v}
		if err != nil {
			o.Error = err.Error()
		}
		out = append(out, o)
	}
	return out
}

// Phase runs one phase's calls. Outside a report, a call that fails (or a
// name it does not know) answers 500 naming it, so that the bench's check
// request before the timed runs fails loudly instead of timing an error.
func (c *Config) Phase(k *pdk.PDK, calls []string) {
	defer func() {
		if r := recover(); r != nil {
			k.Response.Exit(500, []byte(fmt.Sprintf("pdkcalls: panic: %v", r)), nil)
		}
	}()
	for _, call := range calls {
		if _, err := c.call(k, call); err != nil {
			k.Response.Exit(500, []byte(fmt.Sprintf("pdkcalls: %s: %v", call, err)), nil)
			return
		}
	}
}

func (c *Config) call(k *pdk.PDK, call string) (any, error) {
	name, arg, _ := strings.Cut(call, ":")
	switch name {
	case "get_method":
		return k.Request.GetMethod()
	case "get_headers":
		return k.Request.GetHeaders(100)
	case "get_raw_body":
		b, err := k.Request.GetRawBody()
		return len(b), err
	case "set_ctx":
		return nil, k.Nginx.SetCtx("bench", true)
	case "buffering_on":
		return nil, k.Nginx.SetCtx("buffered_proxying", true)
	case "buffering_off":
		return nil, k.Nginx.SetCtx("buffered_proxying", false)
	case "clear_ctx":
		return nil, k.Nginx.SetCtx(arg, false)
	case "get_route":
		return k.Router.GetRoute()
	case "get_service":
		return k.Router.GetService()
	case "get_var":
		return k.Nginx.GetVar(arg)
	case "get_ctx":
		return k.Nginx.GetCtxAny(arg)
	case "serialize":
		s, err := k.Log.Serialize()
		if err != nil {
			return nil, err
		}
		var v any
		if json.Unmarshal([]byte(s), &v) != nil {
			return s, nil
		}
		return v, nil
	case "get_status":
		return k.Response.GetStatus()
	case "set_target":
		host, port, err := c.target()
		if err != nil {
			return nil, err
		}
		return nil, k.Service.SetTarget(host, port)
	case "set_host":
		return nil, k.ServiceRequest.SetHeader("Host", c.Target)
	}
	return nil, fmt.Errorf("unknown call %q", call)
}

func (c *Config) target() (string, int, error) {
	host, p, err := net.SplitHostPort(c.Target)
	if err != nil {
		return "", 0, fmt.Errorf("target %q: %w", c.Target, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("target %q: %w", c.Target, err)
	}
	return host, port, nil
}

// ProbeHeader names the one Response call a report request asks for (one
// of Config.ResponseCalls), so that a call that makes Kong abort the
// request hides no other call's answer.
const ProbeHeader = "X-Bench-Probe"

// Respond runs the Response calls, and answers with their report when
// Config.Report is set.
func (c *Config) Respond(k *pdk.PDK) {
	if !c.Report {
		c.Phase(k, c.ResponseCalls)
		return
	}
	calls := c.ResponseCalls
	if want, err := k.Request.GetHeader(ProbeHeader); err == nil && want != "" {
		calls = nil
		for _, call := range c.ResponseCalls {
			if call == want {
				calls = []string{call}
			}
		}
		if calls == nil {
			calls = []string{"not configured: " + want}
		}
	}
	out := c.Run(k, calls)
	body, err := json.Marshal(out)
	if err != nil {
		body, _ = json.Marshal([]Outcome{{Call: "report", Error: err.Error()}})
	}
	k.Response.Exit(200, body, map[string][]string{"Content-Type": {"application/json"}})
}

// Serve is a plugin's main: go-pdk's server, which answers -dump too.
func Serve(constructor func() interface{}) {
	if err := server.StartServer(constructor, Version, Priority); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
