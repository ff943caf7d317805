package standin_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/standin"
	"gopkg.in/yaml.v3"
)

const kongYAML = "../../kong/kong.yaml"

// mcpRelaySchema returns the schema mcp-relay dumps (schema.KongSchema via
// testdata/dumpschema). When that package does not build, it falls back to
// a schema inferred from the plugin's config in kong.yaml, and says so.
func mcpRelaySchema(t *testing.T) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "run", "./testdata/dumpschema").Output()
	if err == nil && json.Valid(out) {
		return out
	}
	t.Logf("schema.KongSchema unavailable (%v): using a schema inferred from kong.yaml", err)
	raw, err := os.ReadFile(kongYAML)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var cfg any = map[string]any{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["name"] == "mcp-relay" && v["config"] != nil {
				cfg = v["config"]
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	b, _ := json.Marshal(map[string]any{"name": "mcp-relay", "fields": []any{
		map[string]any{"config": infer(cfg)}}})
	return b
}

func infer(v any) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		var fields []any
		for k, e := range v {
			fields = append(fields, map[string]any{k: infer(e)})
		}
		return map[string]any{"type": "record", "fields": fields}
	case []any:
		el := map[string]any{"type": "string"}
		if len(v) > 0 {
			el = infer(v[0])
		}
		return map[string]any{"type": "array", "elements": el}
	case bool:
		return map[string]any{"type": "boolean"}
	case int, int64, float64:
		return map[string]any{"type": "number"}
	}
	return map[string]any{"type": "string"}
}

// TestKongYAML loads the project's deck file with a plugin named mcp-relay
// (the echo plugin dumping mcp-relay's schema), the replicas replaced by
// test upstreams, and sends requests with and without a key.
func TestKongYAML(t *testing.T) {
	schemaFile := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(schemaFile, mcpRelaySchema(t), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := newEchoUpstream(t, "a"), newEchoUpstream(t, "b")
	out := t.TempDir()
	node := standin.StartT(t, standin.Options{
		Plugin:  pluginBinary(t, "mcp-relay"),
		Deck:    kongYAML,
		Env:     []string{"ECHO_SCHEMA_FILE=" + schemaFile, "ECHO_OUT=" + out},
		Targets: map[string][]string{"mcp-replicas": {a.hostPort(), b.hostPort()}},
	})
	f := &fixture{node: node, a: a, b: b, out: out, seen: map[string]standin.RequestRecord{}}
	if node.Plugin().Name != "mcp-relay" {
		t.Fatalf("plugin name %q", node.Plugin().Name)
	}
	var cfg map[string]any
	for _, p := range node.Deck().Plugins {
		if p.Name == "mcp-relay" {
			cfg = p.Config
		}
	}
	if cfg == nil {
		t.Fatal("no mcp-relay plugin in kong.yaml")
	}
	t.Logf("mcp-relay config as Kong would send it: %v", cfg)
	if hc := node.Deck().Upstreams[0].Healthchecks; hc == nil || hc.Active.Type != "http" || hc.Active.HTTPPath != "/mcp" ||
		hc.Active.Unhealthy.TCPFailures != 1 || hc.Active.Unhealthy.HTTPFailures != 0 || hc.Passive.Unhealthy.TCPFailures != 1 {
		t.Errorf("healthchecks: %+v", hc)
	}
	svc := node.Deck().Services[0]
	if svc.Retries != 2 || svc.ConnectTimeout != 2000 || svc.ReadTimeout != 60000 {
		t.Errorf("service: %+v", svc)
	}
	resp, body := f.do(t, "POST", "/mcp", map[string]string{"Content-Type": "application/json",
		"Accept": "application/json, text/event-stream"}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("anonymous request: %d %s", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	if header(e, "X-Anonymous-Consumer") != "true" || header(e, "X-Echo-Consumer") != "anonymous" || e.URI != "/mcp" {
		t.Errorf("anonymous request upstream: %s %v", e.URI, e.Headers)
	}
	resp, body = f.do(t, "POST", "/mcp", map[string]string{"apikey": "demo-key"}, `{}`)
	e = decodeEcho(t, body)
	if resp.StatusCode != 200 || header(e, "X-Echo-Consumer") != "demo" || header(e, "Apikey") != "" {
		t.Errorf("keyed request: %d %v", resp.StatusCode, e.Headers)
	}
	rec := f.record(t, resp.Header.Get("X-Kong-Request-Id"))
	if rec.Route != "mcp" || rec.Consumer != "demo" || !rec.HasEvent("log") {
		t.Errorf("record: %+v", rec)
	}
	if !strings.HasPrefix(rec.Target, "127.0.0.1:") {
		t.Errorf("target %q", rec.Target)
	}
}
