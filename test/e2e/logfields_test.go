package e2e

// The mcp object the plugin adds to what Kong's logging plugins receive
// (kong.log.serialize()).

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/peers"
)

// serializedLog reads what Kong's logging plugins receive from
// kong.log.serialize(): on real Kong, the lines of Kong's own file-log
// plugin, added to the route; on the stand-in (which runs no bundled
// logging plugin), the Serialized field of the requests' records.
type serializedLog struct {
	file string // file-log's path (real Kong)
	recs recordLog
}

// option adds what the log needs to a node: file-log on real Kong, the
// records on the stand-in.
func (l *serializedLog) option() nodeOption {
	return withRecords(&l.recs)
}

// deck adds file-log to the deck file's MCP route on real Kong.
func (l *serializedLog) deck(t *testing.T, deckYAML []byte) []byte {
	t.Helper()
	if !onKong() {
		return deckYAML
	}
	l.file = filepath.Join(t.TempDir(), "file-log.json")
	var doc map[string]any
	if err := yaml.Unmarshal(deckYAML, &doc); err != nil {
		t.Fatal(err)
	}
	route := doc["services"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)
	route["plugins"] = append(route["plugins"].([]any), map[string]any{"name": "file-log", "config": map[string]any{"path": l.file}})
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mcp waits (bounded) for the serialized log entry of the answer r (found
// by its X-Kong-Request-Id) and returns its mcp object (nil: none).
func (l *serializedLog) mcp(t *testing.T, r rpcResult) map[string]any {
	t.Helper()
	id := r.Header.Get("X-Kong-Request-Id")
	var raw string
	if !onKong() {
		raw = l.recs.of(t, r).Serialized
	} else {
		for deadline := time.Now().Add(10 * time.Second); raw == ""; time.Sleep(50 * time.Millisecond) {
			b, _ := os.ReadFile(l.file)
			for _, line := range strings.Split(string(b), "\n") {
				var e struct{ Request struct{ ID string } }
				if json.Unmarshal([]byte(line), &e) == nil && e.Request.ID == id {
					raw = line
				}
			}
			if raw == "" && time.Now().After(deadline) {
				t.Fatalf("no file-log entry for request %s within 10 s", id)
			}
		}
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("serialized: %v: %q", err, raw)
	}
	m, _ := doc["mcp"].(map[string]any)
	return m
}

// TestMCPLogFields: with log.serialize on, what Kong's logging plugins send
// (kong.log.serialize() in the Log phase) carries the mcp object; off, it
// does not, and no call is made for it.
func TestMCPLogFields(t *testing.T) {
	a := peers.StartLegacy(t, "log-a")
	var logOn, logOff serializedLog
	on := startNode(t, logOn.deck(t, deck(t, deckOptions{relay: map[string]any{"log": map[string]any{"serialize": true},
		"tools": map[string]any{"deny": []any{"sleep"}}}})), addrs(a), logOn.option())
	off := startNode(t, logOff.deck(t, deck(t, deckOptions{})), addrs(a), logOff.option())

	c := newPinRaw(demoKey, 10*time.Second)
	c.initialize(t, on.URL())
	c.initialized(t, on.URL())
	_, r := c.whoami(t, on.URL())
	got := logOn.mcp(t, r)
	want := map[string]any{"method": "tools/call", "tool": "whoami", "protocol": c.version, "session": sessionFingerprint(c.session)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tools/call: mcp = %v, want %v", got, want)
	}
	if strings.Contains(fmt.Sprint(got), c.session) { // Kong's own request headers still carry it
		t.Error("the mcp object carries the session id itself")
	}
	r = c.request(t, on.URL(), "tools/call", `{"name":"sleep","arguments":{"ms":1}}`)
	if got := logOn.mcp(t, r); got["reason"] != "tool_forbidden" || got["tool"] != "sleep" {
		t.Errorf("denied call: mcp = %v", got)
	}
	r = newRaw("").request(t, on.URL(), "tools/list", "")
	if got := logOn.mcp(t, r); got["reason"] != "unauthorized" || got["method"] != "tools/list" {
		t.Errorf("anonymous: mcp = %v", got)
	}

	o := newPinRaw(demoKey, 10*time.Second)
	o.initialize(t, off.URL())
	_, r = o.whoami(t, off.URL())
	if got := logOff.mcp(t, r); got != nil {
		t.Errorf("log.serialize off: mcp = %v", got)
	}
	if onStandin(t, "no set_serialize_value call with log.serialize off", "PDK call counts are the stand-in's records") {
		if rec := logOff.recs.of(t, r); rec.Calls["access"]["kong.log.set_serialize_value"] != 0 {
			t.Errorf("log.serialize off: %s", rec)
		}
	}
}

// sessionFingerprint is the plugin's fingerprint of a session id (the first
// 4 bytes of its SHA-256, hex).
func sessionFingerprint(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:4])
}
