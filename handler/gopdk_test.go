package handler_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/Kong/go-pdk/test"

	"github.com/mcp-relay/mcp-relay/handler"
)

// These run the plugin through go-pdk's own in-process fake Kong, for the
// paths it can model (it has no nginx ctx, set_target or Log data; those
// paths are covered end to end in test/e2e).

func newInstance(t *testing.T, config string) any {
	t.Helper()
	p := handler.New()
	if err := json.Unmarshal([]byte(config), p); err != nil {
		t.Fatalf("instance start: %v", err)
	}
	return p
}

func TestGoPDKAnonymousEnvelope(t *testing.T) {
	env, err := test.New(t, test.Request{
		Method: "POST", Url: "http://kong.example/mcp",
		Headers: http.Header{
			"Content-Type":         {"application/json"},
			"Accept":               {"application/json, text/event-stream"},
			"X-Anonymous-Consumer": {"true"},
		},
		Body: []byte(`{"jsonrpc":"2.0","id":"k-1","method":"initialize","params":{}}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	env.DoAccess(newInstance(t, `{"session":{"store":"off"}}`))
	want := `{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials","data":{"status":401,"reason":"unauthorized"}},"id":"k-1"}`
	if env.ClientRes.Status != 200 || string(env.ClientRes.Body) != want {
		t.Errorf("got %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
}

func TestGoPDKUpstream401Rewritten(t *testing.T) {
	env, err := test.New(t, test.Request{
		Method: "POST", Url: "http://kong.example/mcp",
		Headers: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}},
		Body:    []byte(`{"jsonrpc":"2.0","id":12,"method":"tools/list"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	env.ServiceRes.Status = 401
	env.ServiceRes.Body = []byte(`{"error":"Invalid or missing access key"}`)
	env.DoResponse(newInstance(t, `{"session":{"store":"off"}}`))
	want := `{"jsonrpc":"2.0","error":{"code":-32001,"message":"Authentication failed: missing or invalid credentials (MCP server: Invalid or missing access key)","data":{"status":401,"reason":"unauthorized"}},"id":12}`
	if env.ClientRes.Status != 200 || string(env.ClientRes.Body) != want {
		t.Errorf("got %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
}

// An invalid configuration still starts the instance (Kong would otherwise
// answer its bare 500 with the reason at info level): every request gets a
// 500 naming the field.
func TestGoPDKBadConfigAnswersConfigInvalid(t *testing.T) {
	env, err := test.New(t, test.Request{
		Method: "POST", Url: "http://kong.example/mcp",
		Headers: http.Header{"Content-Type": {"application/json"}},
		Body:    []byte(`{"jsonrpc":"2.0","id":5,"method":"tools/list"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	env.DoAccess(newInstance(t, `{"envelope":{"status":"301"}}`))
	want := `{"jsonrpc":"2.0","error":{"code":-32603,"message":"mcp-relay configuration invalid: config.envelope.status","data":{"status":500,"reason":"config_invalid"}},"id":5}`
	if env.ClientRes.Status != 500 || string(env.ClientRes.Body) != want {
		t.Errorf("got %d %s", env.ClientRes.Status, env.ClientRes.Body)
	}
}
