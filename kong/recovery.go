package kong

// RecoveryPDK is the part of the PDK used only while a session is
// recovered through Kong's balancer: the request that needs the recovery
// goes upstream as the session's replayed initialize, balanced by Kong as
// a new session is. Healthy requests never make these calls.
type RecoveryPDK interface {
	// SetUpstreamMethod is kong.service.request.set_method: a GET stream's
	// request goes upstream as a POST.
	SetUpstreamMethod(method string) error
	// SetUpstreamBody is kong.service.request.set_raw_body.
	SetUpstreamBody(body []byte) error
	// ClearUpstreamHeader is kong.service.request.clear_header.
	ClearUpstreamHeader(name string) error
	// The headers go with OptionalPDK's SetUpstreamHeaders.
}

var _ RecoveryPDK = Adapter{}

func (a Adapter) SetUpstreamMethod(method string) error { return a.k.ServiceRequest.SetMethod(method) }

func (a Adapter) SetUpstreamBody(body []byte) error {
	return a.k.ServiceRequest.SetRawBody(string(body))
}

func (a Adapter) ClearUpstreamHeader(name string) error { return a.k.ServiceRequest.ClearHeader(name) }
