package handler

// fakeOptional is what the counting fake answers for kong.OptionalPDK: the
// calls of access rules, protected-resource metadata and log fields.
type fakeOptional struct {
	serviceBody []byte
	path        string
	scheme      string
	groups      []string
	serialize   map[string]map[string]any // set_serialize_value, by key
	headersSet  map[string][]string       // set_headers
}

func (f *fakeKong) ServiceResponseBody() ([]byte, error) {
	f.call("service.response.get_raw_body")
	return f.optional.serviceBody, nil
}
func (f *fakeKong) RequestPath() (string, error) {
	f.call("request.get_path")
	return f.optional.path, nil
}
func (f *fakeKong) ForwardedScheme() (string, error) {
	f.call("request.get_forwarded_scheme")
	return f.optional.scheme, nil
}
func (f *fakeKong) AuthenticatedGroups() ([]string, error) {
	f.call("ctx.shared.get")
	return f.optional.groups, nil
}
func (f *fakeKong) SetSerializeValue(key string, v map[string]any) error {
	f.call("log.set_serialize_value")
	if f.optional.serialize == nil {
		f.optional.serialize = map[string]map[string]any{}
	}
	f.optional.serialize[key] = v
	return nil
}

func (f *fakeKong) SetUpstreamHeaders(h map[string][]string) error {
	f.call("service.request.set_headers")
	f.optional.headersSet = h
	if f.upstreamSet == nil {
		f.upstreamSet = map[string]string{}
	}
	for k, v := range h {
		if len(v) > 0 {
			f.upstreamSet[k] = v[0]
		}
	}
	return nil
}

func (b *benchKong) SetUpstreamHeaders(map[string][]string) error   { return nil }
func (b *benchKong) ServiceResponseBody() ([]byte, error)           { return b.body, nil }
func (b *benchKong) RequestPath() (string, error)                   { return "/mcp", nil }
func (b *benchKong) ForwardedScheme() (string, error)               { return "https", nil }
func (b *benchKong) AuthenticatedGroups() ([]string, error)         { return nil, nil }
func (b *benchKong) SetSerializeValue(string, map[string]any) error { return nil }

// What the counting fake records of kong.RecoveryPDK.
func (f *fakeKong) SetUpstreamMethod(method string) error {
	f.call("service.request.set_method")
	f.upstreamMethod = method
	return nil
}
func (f *fakeKong) SetUpstreamBody(body []byte) error {
	f.call("service.request.set_raw_body")
	f.upstreamBodySet = body
	return nil
}
func (f *fakeKong) ClearUpstreamHeader(name string) error {
	f.call("service.request.clear_header")
	f.upstreamCleared = append(f.upstreamCleared, name)
	return nil
}
func (b *benchKong) SetUpstreamMethod(string) error   { return nil }
func (b *benchKong) SetUpstreamBody([]byte) error     { return nil }
func (b *benchKong) ClearUpstreamHeader(string) error { return nil }
