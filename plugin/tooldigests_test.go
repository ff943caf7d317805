package main

import (
	"bytes"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/handler/toolpin"
)

// TestToolDigests: the entries printed for an answer are what the plugin
// computes for those definitions, and they parse as a deck's YAML list.
func TestToolDigests(t *testing.T) {
	answer := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[" +
		`{"name":"echo","description":"Returns its text."},{"name":"it's","description":"x"}]}}` + "\n\n"
	var out, errOut bytes.Buffer
	if code := printToolDigests(strings.NewReader(answer), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var entries []map[string]string
	if err := yaml.Unmarshal(out.Bytes(), &entries); err != nil {
		t.Fatalf("not a YAML list: %v\n%s", err, out.String())
	}
	want := []map[string]string{
		{"name": "echo", "digest": toolpin.ReadTool([]byte(`{"name":"echo","description":"Returns its text."}`)).Digest},
		{"name": "it's", "digest": toolpin.ReadTool([]byte(`{"name":"it's","description":"x"}`)).Digest},
	}
	if len(entries) != 2 || entries[0]["digest"] != want[0]["digest"] || entries[1]["name"] != "it's" || entries[1]["digest"] != want[1]["digest"] {
		t.Errorf("entries %v, want %v", entries, want)
	}
	for _, bad := range []string{`{"jsonrpc":"2.0","id":1,"result":{}}`, `{"result":{"tools":[{"name":"a","name":"b"}]}}`, `{`} {
		out.Reset()
		errOut.Reset()
		if code := printToolDigests(strings.NewReader(bad), &out, &errOut); code != 1 || errOut.Len() == 0 {
			t.Errorf("%s: exit %d, stderr %q", bad, code, errOut.String())
		}
	}
}
