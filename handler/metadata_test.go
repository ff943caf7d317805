package handler

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-relay/mcp-relay/schema"
)

const prmConfig = `{"session":{"store":"off"},"auth":{"anonymous":"anonymous","resource_metadata":{
  "authorization_servers":["https://auth.example.com"],"scopes_supported":["mcp:tools"]}}}`

func TestServeMetadata(t *testing.T) {
	tests := []struct {
		name, path, host, scheme string
		preflight                bool
		wantStatus               int // 0: not answered
		wantResource             string
	}{
		{name: "path-aware", path: "/.well-known/oauth-protected-resource/mcp", host: "gw.example.com", scheme: "https",
			wantStatus: 200, wantResource: "https://gw.example.com/mcp"},
		{name: "root", path: "/.well-known/oauth-protected-resource", host: "gw.example.com:8443", scheme: "https",
			wantStatus: 200, wantResource: "https://gw.example.com:8443"},
		{name: "another well-known", path: "/.well-known/oauth-protected-resourceX", host: "h", scheme: "http"},
		{name: "MCP path", path: "/mcp", host: "h", scheme: "http"},
		{name: "forged Host is not echoed", path: "/.well-known/oauth-protected-resource", host: `h"x`, scheme: "http"},
		{name: "preflight", path: "/.well-known/oauth-protected-resource/mcp", host: "h", preflight: true, wantStatus: 204},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, prmConfig)
			h := map[string][]string{"host": {tt.host}, "x-anonymous-consumer": {"true"}}
			method := "GET"
			if tt.preflight {
				h["access-control-request-method"] = []string{"GET"}
				method = "OPTIONS"
			}
			f := &fakeKong{method: method, headers: h}
			f.optional.path, f.optional.scheme = tt.path, tt.scheme
			p.access(f)
			if tt.wantStatus == 0 {
				if f.exited && f.exitStatus != 401 {
					t.Fatalf("answered %d %s", f.exitStatus, f.exitBody)
				}
				return
			}
			if f.exitStatus != tt.wantStatus {
				t.Fatalf("status %d %s", f.exitStatus, f.exitBody)
			}
			if f.exitHeaders["Access-Control-Allow-Origin"][0] != "*" {
				t.Errorf("headers %v", f.exitHeaders)
			}
			if tt.wantStatus != 200 {
				return
			}
			var doc map[string]any
			if err := json.Unmarshal(f.exitBody, &doc); err != nil {
				t.Fatal(err)
			}
			if doc["resource"] != tt.wantResource || doc["authorization_servers"].([]any)[0] != "https://auth.example.com" ||
				doc["scopes_supported"].([]any)[0] != "mcp:tools" {
				t.Errorf("document %s", f.exitBody)
			}
		})
	}
}

func TestMetadataInAuthEnvelope(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	t.Run("built from the request", func(t *testing.T) {
		p := newPlugin(t, prmConfig)
		f := &fakeKong{method: "POST", headers: hdr("x-anonymous-consumer", "true", "host", "gw.example.com"), body: body}
		f.optional.path, f.optional.scheme = "/mcp", "https"
		p.access(f)
		want := `Bearer resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/mcp"`
		if f.exitStatus != 401 || f.exitHeaders["WWW-Authenticate"][0] != want || !strings.Contains(string(f.exitBody), `"id":3`) {
			t.Errorf("got %d %v %s", f.exitStatus, f.exitHeaders, f.exitBody)
		}
	})
	t.Run("from config.resource, without calls", func(t *testing.T) {
		p := newPlugin(t, `{"session":{"store":"off"},"auth":{"resource_metadata":{
		  "authorization_servers":["https://auth.example.com"],"resource":"https://api.example.com/tools/mcp/"}}}`)
		f := &fakeKong{method: "POST", headers: hdr("x-anonymous-consumer", "true"), body: body}
		p.access(f)
		want := `Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/tools/mcp"`
		if f.exitHeaders["WWW-Authenticate"][0] != want ||
			!slices.Equal(f.calls, []string{"request.get_headers", "request.get_raw_body", "response.exit"}) {
			t.Errorf("got %v %v", f.exitHeaders, f.calls)
		}
	})
	t.Run("an explicit www_authenticate wins", func(t *testing.T) {
		p := newPlugin(t, `{"session":{"store":"off"},"auth":{"www_authenticate":"Bearer realm=\"x\"",
		  "resource_metadata":{"authorization_servers":["https://auth.example.com"]}}}`)
		f := &fakeKong{method: "POST", headers: hdr("x-anonymous-consumer", "true"), body: body}
		p.access(f)
		if f.exitHeaders["WWW-Authenticate"][0] != `Bearer realm="x"` || f.exitStatus != 200 {
			t.Errorf("got %d %v", f.exitStatus, f.exitHeaders)
		}
	})
}

func TestResourceMetadataConfigErrors(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"auth":{"resource_metadata":{"scopes_supported":["a"]}}}`:                                "authorization_servers: must be set when scopes_supported is set",
		`{"auth":{"resource_metadata":{"resource":"https://x/mcp"}}}`:                              "authorization_servers: must be set when resource is set",
		`{"auth":{"resource_metadata":{"authorization_servers":["not a url"]}}}`:                   "authorization_servers[0]: must be an http or https URL",
		`{"auth":{"resource_metadata":{"authorization_servers":["https://a"],"resource":"/mcp"}}}`: "resource: must be an http or https URL",
	} {
		parsed, err := schema.Parse([]byte(cfg))
		if err == nil {
			_, err = NewFromConfig(parsed)
		}
		if err == nil || !strings.Contains(err.Error(), "config.auth.resource_metadata."+want) {
			t.Errorf("%s: %v, want %q", cfg, err, want)
		}
		// Through Kong, the instance starts and answers config_invalid.
		var p Plugin
		if err := p.UnmarshalJSON([]byte(cfg)); err != nil || p.invalid == nil ||
			!strings.Contains(p.invalid.fields, "config.auth.resource_metadata.") {
			t.Errorf("%s: UnmarshalJSON %v, invalid %+v", cfg, err, p.invalid)
		}
	}
}

func TestSerializeFields(t *testing.T) {
	p := newPlugin(t, `{"session":{"store":"off"},"log":{"serialize":true},"tools":{"deny":["x"]}}`)
	f := &fakeKong{method: "POST", headers: hdr("mcp-session-id", "secret-session", "mcp-protocol-version", "2025-06-18"),
		body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`)}
	p.access(f)
	got := f.optional.serialize["mcp"]
	if got["method"] != "tools/call" || got["tool"] != "x" || got["protocol"] != "2025-06-18" ||
		got["session"] != fingerprint("secret-session") || got["reason"] != "tool_forbidden" {
		t.Errorf("mcp = %v", got)
	}
	off := &fakeKong{method: "POST", headers: hdr(), body: f.body}
	newPlugin(t, storeOff).access(off)
	if slices.Contains(off.calls, "log.set_serialize_value") {
		t.Errorf("serialize off made the call: %v", off.calls)
	}
}
