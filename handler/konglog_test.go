package handler

import (
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/logging"
)

// loggingKong is the fake with kong.log.*: it records each line with its
// level, as the PDK call it is.
type loggingKong struct {
	*fakeKong
	lines *[]kongLine
}

type kongLine struct {
	level slog.Level
	text  string
}

var _ kong.Logger = loggingKong{}

func (l loggingKong) KongLog(level slog.Level, line string) error {
	l.call("log." + map[bool]string{true: "err", false: "warn"}[level >= slog.LevelError])
	*l.lines = append(*l.lines, kongLine{level, line})
	return nil
}

// takeQuiet drops what earlier tests left in the process's log queue, and
// waits until their goroutines (a recovery ending after its test) have
// logged nothing for 300 ms: a test counting Kong log calls must not see
// their lines.
func takeQuiet(t *testing.T) {
	t.Helper()
	quiet := 0
	for deadline := time.Now().Add(10 * time.Second); quiet < 3 && time.Now().Before(deadline); {
		logging.Take()
		time.Sleep(100 * time.Millisecond)
		if logging.Pending() {
			quiet = 0
		} else {
			quiet++
		}
	}
	logging.Take()
}

func TestConfigInvalidAnswersEnvelopeAndLogsOnce(t *testing.T) {
	takeQuiet(t)
	p := New()
	p.(*Plugin).logs = &logPhaseState{}
	// Kong's schema rejects this (a conditional entity check); a
	// configuration stored before that rule existed reaches the plugin.
	if err := json.Unmarshal([]byte(`{"envelope":{"modern_auth_code":-32001}}`), p); err != nil {
		t.Fatalf("instance start failed: %v", err)
	}
	var lines []kongLine
	for i, id := range []string{"1", `"two"`, "3"} {
		f := &fakeKong{method: "POST", headers: hdr("content-type", "application/json"),
			body: []byte(`{"jsonrpc":"2.0","id":` + id + `,"method":"tools/list"}`)}
		p.(*Plugin).access(loggingKong{f, &lines}) // no Log events: Access writes it, before its answer
		if f.exitStatus != 500 {
			t.Fatalf("request %d: status %d", i, f.exitStatus)
		}
		env := f.exitJSON(t)
		e := env["error"].(map[string]any)
		data := e["data"].(map[string]any)
		if raw, _ := json.Marshal(env["id"]); string(raw) != id || data["reason"] != "config_invalid" ||
			!strings.Contains(e["message"].(string), "config.envelope.modern_auth_code") {
			t.Errorf("request %d: %s", i, f.exitBody)
		}
	}
	if len(lines) != 1 || lines[0].level != slog.LevelError ||
		!strings.Contains(lines[0].text, "config.envelope.modern_auth_code") {
		t.Fatalf("Kong's log got %+v, want one error naming the field", lines)
	}

	f := &fakeKong{method: "GET", headers: hdr("accept", "text/html")}
	p.(*Plugin).access(f)
	if f.exitStatus != 500 || !strings.Contains(string(f.exitBody), `"message":"mcp-relay configuration invalid: config.envelope.modern_auth_code"`) {
		t.Errorf("non-MCP request: %d %s", f.exitStatus, f.exitBody)
	}
}

// The Log phase of a request with nothing to say makes no call.
func TestLogPhaseFlushesOnlyPendingEvents(t *testing.T) {
	takeQuiet(t)
	p := newPlugin(t, storeOff)
	var lines []kongLine
	f := &fakeKong{}
	p.log(loggingKong{f, &lines})
	if len(f.calls) != 0 {
		t.Fatalf("calls with nothing pending: %v", f.calls)
	}
	logger.Warn("session presented by another consumer", "kind", t.Name())
	p.log(loggingKong{f, &lines})
	p.log(loggingKong{f, &lines})
	if len(f.calls) != 1 || len(lines) != 1 || lines[0].level != slog.LevelWarn {
		t.Fatalf("calls %v, lines %+v", f.calls, lines)
	}
}

// Without Log events, Access and Response write the waiting events as they
// end: before an answer (no call may follow kong.response.exit), else after
// their own work. With Log events (-log-phase), Log writes them.
func TestAccessFlushesWithoutLogEvents(t *testing.T) {
	takeQuiet(t)
	p := newPlugin(t, `{"auth":{"anonymous":"anonymous"}}`)
	var lines []kongLine
	plain := &fakeKong{method: "GET", headers: map[string][]string{"accept": {"text/html"}}}
	p.access(loggingKong{plain, &lines})
	if want := []string{"request.get_headers", "nginx.set_ctx"}; !slices.Equal(plain.calls, want) {
		t.Fatalf("nothing pending: calls %v, want %v", plain.calls, want)
	}

	logger.Warn("session presented by another consumer", "kind", t.Name()+"-1")
	streamed := &fakeKong{method: "GET", headers: map[string][]string{"accept": {"text/html"}}}
	p.access(loggingKong{streamed, &lines})
	if want := []string{"request.get_headers", "nginx.set_ctx", "log.warn"}; !slices.Equal(streamed.calls, want) || len(lines) != 1 {
		t.Fatalf("a streamed request: calls %v, lines %+v, want %v", streamed.calls, lines, want)
	}

	logger.Warn("session presented by another consumer", "kind", t.Name()+"-2")
	anon := &fakeKong{method: "POST", headers: hdr("x-anonymous-consumer", "true"), body: []byte(callBody)}
	p.access(loggingKong{anon, &lines})
	if n := len(anon.calls); n < 2 || anon.calls[n-2] != "log.warn" || anon.calls[n-1] != "response.exit" || len(lines) != 2 {
		t.Fatalf("an answered request: calls %v, want the line before the answer", anon.calls)
	}

	p.logs.declared.Store(true)
	logger.Warn("session presented by another consumer", "kind", t.Name()+"-3")
	later := &fakeKong{method: "GET", headers: map[string][]string{"accept": {"text/html"}}}
	p.access(loggingKong{later, &lines})
	if len(later.calls) != 2 || len(lines) != 2 {
		t.Fatalf("with Log events Access wrote %v", later.calls)
	}
	logFake := &fakeKong{}
	p.log(loggingKong{logFake, &lines})
	if len(logFake.calls) != 1 || len(lines) != 3 {
		t.Fatalf("Log wrote %v", logFake.calls)
	}
}

func TestPhasesFollowTheFlag(t *testing.T) {
	defer DeclareLogPhase(logPhase.declared.Load())
	DeclareLogPhase(false)
	if got := Phases(); !slices.Equal(got, []string{"access", "response"}) {
		t.Errorf("without -log-phase: %v", got)
	}
	DeclareLogPhase(true)
	if got := Phases(); !slices.Equal(got, []string{"access", "response", "log"}) {
		t.Errorf("with -log-phase: %v", got)
	}
}
