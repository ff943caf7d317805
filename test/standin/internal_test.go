package standin

import (
	"strings"
	"testing"
)

// Every rpc of pluginsocket.proto's Kong service has a handler, under the
// name load_service (pb_rpc.lua) gives it.
func TestLoadServiceNames(t *testing.T) {
	if len(pdkMethods) != 74 {
		t.Errorf("%d methods, want the 74 rpcs of the Kong service", len(pdkMethods))
	}
	for name, m := range pdkMethods {
		if m.handler == nil {
			t.Errorf("%s (%s) has no handler", name, m.rpc)
		}
		if !strings.HasPrefix(name, "kong.") || strings.ToLower(name) != name {
			t.Errorf("bad name %q for %s", name, m.rpc)
		}
	}
	for rpc, want := range map[string]string{
		"Kong.Nginx_GetTls1VersionStr":    "kong.nginx.get_tls1_version_str",
		"Kong.Ctx_SetShared":              "kong.ctx.shared.set",
		"Kong.Service_Request_SetRawBody": "kong.service.request.set_raw_body",
		"Kong.Request_GetHttpVersion":     "kong.request.get_http_version",
	} {
		m := pdkMethods[want]
		if m == nil || m.rpc != rpc {
			t.Errorf("%s: got %+v, want %s", rpc, m, want)
		}
	}
}

func TestCJSON(t *testing.T) {
	got := string(encodeCJSON(map[string]any{"uri": "/mcp", "tries": arrayMT{}, "q": map[string]any{},
		"n": 1795427548246.0, "ns": 1.7954275482551e18, "f": 0.5}))
	want := `{"f":0.5,"n":1795427548246,"ns":1.7954275482551e+18,"q":{},"tries":[],"uri":"\/mcp"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestAcceptNegotiation(t *testing.T) {
	for accept, want := range map[string]string{
		"application/json, text/event-stream": mimeJSON,
		"text/html;q=0.9, application/xml":    mimeXML,
		"text/event-stream":                   mimeJSON,
		"text/plain":                          mimePlain,
		"*/*":                                 mimeJSON,
	} {
		if got := getResponseType(accept, true); got != want {
			t.Errorf("%q: %s, want %s", accept, got, want)
		}
	}
}

func TestUUIDv5(t *testing.T) {
	// RFC 4122 appendix-style check: v5(DNS namespace, "www.example.com")
	if got := uuidV5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.com"); got != "2ed6657d-e927-568b-95e1-2665a8aea6a2" {
		t.Errorf("uuidV5: %s", got)
	}
}

func TestLuaPattern(t *testing.T) {
	re := luaPattern("%c")
	if re == nil || !re.MatchString("a\nb") || re.MatchString("ab") {
		t.Error("pattern percent-c does not match control characters only")
	}
	re = luaPattern("^[%w_-]+$")
	if re == nil || !re.MatchString("api_key-1") || re.MatchString("api key") {
		t.Error("^[%w_-]+$")
	}
}
