package kong

import (
	"github.com/Kong/go-pdk"
)

// Adapter is PDK over go-pdk: each method is exactly one PDK call.
type Adapter struct{ k *pdk.PDK }

var _ PDK = Adapter{}

// Wrap adapts the go-pdk handle Kong hands to a phase handler.
func Wrap(k *pdk.PDK) Adapter { return Adapter{k: k} }

// maxHeaders is what kong.request.get_headers returns at most; Kong's own
// default is 100, and an MCP request carries far fewer.
const maxHeaders = 100

func (a Adapter) RequestMethod() (string, error) { return a.k.Request.GetMethod() }
func (a Adapter) RequestHeaders() (map[string][]string, error) {
	return a.k.Request.GetHeaders(maxHeaders)
}
func (a Adapter) RequestBody() ([]byte, error) { return a.k.Request.GetRawBody() }

// ClearBuffering undoes the buffered_proxying flag Kong sets for every
// plugin with a Response phase (kong/runloop/plugins_iterator.lua), so the
// upstream answer streams and SSE events reach the client as they come.
func (a Adapter) ClearBuffering() error { return a.k.Nginx.SetCtx("buffered_proxying", false) }

func (a Adapter) SetTarget(host string, port int) error { return a.k.Service.SetTarget(host, port) }

func (a Adapter) SetUpstreamHeader(name, value string) error {
	return a.k.ServiceRequest.SetHeader(name, value)
}

// Exit ends the request. go-pdk closes the event's connection afterwards, so
// no PDK call may follow it in the same handler.
func (a Adapter) Exit(status int, body []byte, headers map[string][]string) {
	a.k.Response.Exit(status, body, headers)
}

func (a Adapter) NginxVar(name string) (string, error) { return a.k.Nginx.GetVar(name) }

func (a Adapter) SetRequestNote(key, value string) error { return a.k.Nginx.SetCtx(key, value) }

func (a Adapter) RequestNote(key string) (string, error) { return a.k.Nginx.GetCtxString(key) }

func (a Adapter) Route() (Route, error) {
	r, err := a.k.Router.GetRoute()
	return Route{ServiceID: r.Service.Id, PreserveHost: r.PreserveHost}, err
}

func (a Adapter) ResponseStatus() (int, error) { return a.k.Response.GetStatus() }

func (a Adapter) ResponseHeader(name string) (string, error) { return a.k.Response.GetHeader(name) }

func (a Adapter) UpstreamBody() ([]byte, error) { return a.k.ServiceResponse.GetRawBody() }

func (a Adapter) Serialize() ([]byte, error) {
	s, err := a.k.Log.Serialize()
	return []byte(s), err
}
