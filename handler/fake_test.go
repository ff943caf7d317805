package handler

import (
	"encoding/json"
	"net"
	"strconv"
	"testing"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/schema"
)

// fakeKong plays Kong's side of one request for unit tests, recording every
// PDK call so tests can count round trips. End-to-end behaviour is tested
// against the Kong stand-in in test/.
type fakeKong struct {
	method       string
	headers      map[string][]string
	body         []byte
	status       int
	respHeaders  map[string]string
	serialized   string
	upstreamBody []byte
	panicOn      string
	vars         map[string]string
	notes        map[string]string // ngx.ctx strings: what Access left for Response
	route        kong.Route
	optional     fakeOptional // access rules, metadata, log fields (optional_fake_test.go)

	calls       []string
	cleared     bool
	target      string
	upstreamSet map[string]string
	// a request turned into a recovery's initialize (kong.RecoveryPDK)
	upstreamMethod  string
	upstreamBodySet []byte
	upstreamCleared []string
	exited          bool
	exitStatus      int
	exitBody        []byte
	exitHeaders     map[string][]string
}

var _ kong.PDK = (*fakeKong)(nil)

func (f *fakeKong) call(name string) {
	if f.exited {
		panic("PDK call " + name + " after exit: go-pdk has closed the connection")
	}
	f.calls = append(f.calls, name)
	if f.panicOn == name {
		panic("injected panic in " + name)
	}
}

func (f *fakeKong) RequestMethod() (string, error) {
	f.call("request.get_method")
	return f.method, nil
}
func (f *fakeKong) RequestHeaders() (map[string][]string, error) {
	f.call("request.get_headers")
	if len(f.body) > 0 && f.headers["content-length"] == nil && f.headers["transfer-encoding"] == nil {
		// What every HTTP/1.1 client sends with a body.
		h := make(map[string][]string, len(f.headers)+1)
		for k, v := range f.headers {
			h[k] = v
		}
		h["content-length"] = []string{strconv.Itoa(len(f.body))}
		return h, nil
	}
	return f.headers, nil
}
func (f *fakeKong) UpstreamBody() ([]byte, error) {
	f.call("service.response.get_raw_body")
	return f.upstreamBody, nil
}
func (f *fakeKong) RequestBody() ([]byte, error) { f.call("request.get_raw_body"); return f.body, nil }
func (f *fakeKong) ClearBuffering() error        { f.call("nginx.set_ctx"); f.cleared = true; return nil }
func (f *fakeKong) SetTarget(host string, port int) error {
	f.call("service.set_target")
	f.target = net.JoinHostPort(host, strconv.Itoa(port))
	return nil
}
func (f *fakeKong) SetUpstreamHeader(name, value string) error {
	f.call("service.request.set_header")
	if f.upstreamSet == nil {
		f.upstreamSet = map[string]string{}
	}
	f.upstreamSet[name] = value
	return nil
}
func (f *fakeKong) Exit(status int, body []byte, headers map[string][]string) {
	f.call("response.exit")
	f.exited, f.exitStatus, f.exitBody, f.exitHeaders = true, status, body, headers
}
func (f *fakeKong) NginxVar(name string) (string, error) {
	f.call("nginx.get_var")
	return f.vars[name], nil
}
func (f *fakeKong) SetRequestNote(key, value string) error {
	f.call("nginx.set_ctx")
	if f.notes == nil {
		f.notes = map[string]string{}
	}
	f.notes[key] = value
	return nil
}
func (f *fakeKong) RequestNote(key string) (string, error) {
	f.call("nginx.get_ctx")
	return f.notes[key], nil
}
func (f *fakeKong) Route() (kong.Route, error)   { f.call("router.get_route"); return f.route, nil }
func (f *fakeKong) ResponseStatus() (int, error) { f.call("response.get_status"); return f.status, nil }
func (f *fakeKong) ResponseHeader(name string) (string, error) {
	f.call("response.get_header")
	return f.respHeaders[name], nil
}
func (f *fakeKong) Serialize() ([]byte, error) {
	f.call("log.serialize")
	return []byte(f.serialized), nil
}

// exitJSON decodes the envelope the plugin answered with.
func (f *fakeKong) exitJSON(t *testing.T) map[string]any {
	t.Helper()
	if !f.exited {
		t.Fatalf("plugin did not answer; calls: %v", f.calls)
	}
	var v map[string]any
	if err := json.Unmarshal(f.exitBody, &v); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, f.exitBody)
	}
	return v
}

// newPlugin builds an instance from config JSON as Kong would send it.
func newPlugin(t testing.TB, configJSON string) *Plugin {
	t.Helper()
	cfg, err := schema.Parse([]byte(configJSON))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	p, err := NewFromConfig(cfg)
	if err != nil {
		t.Fatalf("instance: %v", err)
	}
	p.logs = &logPhaseState{} // no Log events unless a test says so
	return p
}

// responseAfter runs Access with req, then returns the Response phase's
// fake for the same request: its headers, what Access left in ngx.ctx, and
// the upstream's answer (status, headers).
func responseAfter(t testing.TB, p *Plugin, req *fakeKong, status int, respHeaders map[string]string) *fakeKong {
	t.Helper()
	p.access(req)
	if req.exited {
		t.Fatalf("Access answered %d %s", req.exitStatus, req.exitBody)
	}
	headers := req.headers
	if len(req.body) > 0 && headers["content-length"] == nil && headers["transfer-encoding"] == nil {
		headers, _ = req.RequestHeaders() // with the Content-Length Access saw
		req.calls = req.calls[:len(req.calls)-1]
	}
	return &fakeKong{method: req.method, headers: headers, body: req.body, status: status, respHeaders: respHeaders,
		notes: req.notes, route: req.route, vars: req.vars}
}
