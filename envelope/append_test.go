package envelope_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcp-relay/mcp-relay/envelope"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var (
	errUnauthorized = envelope.Error{
		Code:    envelope.CodeSessionNotFound, // -32001, what the third failure story asks for
		Message: "Unauthorized: invalid API key",
		Data: envelope.Data{
			Status:          401,
			Reason:          "unauthorized",
			WWWAuthenticate: `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`,
		},
	}
	errUpstream = envelope.Error{
		Code:    envelope.CodeGateway,
		Message: "Upstream unavailable",
		Data:    envelope.Data{Status: 502, Reason: "upstream_error"},
	}
	errInvalid = envelope.Error{
		Code:    envelope.CodeInvalidRequest,
		Message: "Invalid Request",
		Data:    envelope.Data{Status: 400, Reason: "header_mismatch"},
	}
)

const toolsCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}`

func TestAppendGolden(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		maxBytes int
		err      envelope.Error
		ids      []string // raw ids expected in the output, in order; nil: nothing written
		batch    bool     // output is an array
	}{
		{name: "number_id", body: toolsCall, err: errUnauthorized, ids: []string{"7"}},
		{name: "string_id", body: `{"jsonrpc":"2.0","id":"req-1","method":"ping"}`, err: errUnauthorized, ids: []string{`"req-1"`}},
		{name: "string_id_escapes", body: `{"jsonrpc":"2.0","id":"a\"b\\c\u00e9\n\/","method":"ping"}`, err: errUnauthorized, ids: []string{`"a\"b\\c\u00e9\n\/"`}},
		{name: "string_id_unicode", body: `{"jsonrpc":"2.0","id":"日本-ü","method":"ping"}`, err: errUnauthorized, ids: []string{`"日本-ü"`}},
		{name: "empty_string_id", body: `{"jsonrpc":"2.0","id":"","method":"ping"}`, err: errUnauthorized, ids: []string{`""`}},
		{name: "negative_id", body: `{"jsonrpc":"2.0","id":-42,"method":"ping"}`, err: errUnauthorized, ids: []string{"-42"}},
		{name: "negative_zero_id", body: `{"jsonrpc":"2.0","id":-0,"method":"ping"}`, err: errUnauthorized, ids: []string{"-0"}},
		{name: "float_id", body: `{"jsonrpc":"2.0","id":3.140,"method":"ping"}`, err: errUnauthorized, ids: []string{"3.140"}},
		{name: "exponent_id", body: `{"jsonrpc":"2.0","id":1e400,"method":"ping"}`, err: errUnauthorized, ids: []string{"1e400"}},
		{name: "huge_int_id", body: `{"jsonrpc":"2.0","id":12345678901234567890123,"method":"ping"}`, err: errUnauthorized, ids: []string{"12345678901234567890123"}},
		{name: "null_id", body: `{"jsonrpc":"2.0","id":null,"method":"ping"}`, err: errUnauthorized, ids: []string{"null"}},
		{name: "no_id", body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`, err: errUnauthorized, ids: []string{"null"}},
		{name: "object_id", body: `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, err: errUnauthorized, ids: []string{"null"}},
		{name: "array_id", body: `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, err: errUnauthorized, ids: []string{"null"}},
		{name: "bool_id", body: `{"jsonrpc":"2.0","id":true,"method":"ping"}`, err: errUnauthorized, ids: []string{"null"}},
		{name: "duplicate_id", body: `{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}`, err: errUnauthorized, ids: []string{"1"}},
		{
			name:  "batch_mixed",
			body:  `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/progress"},{"jsonrpc":"2.0","id":"two","method":"ping"},{"jsonrpc":"2.0","id":9,"result":{}},{"jsonrpc":"2.0","id":{},"method":"ping"}]`,
			err:   errUpstream,
			ids:   []string{"1", `"two"`, "null"},
			batch: true,
		},
		{
			name: "batch_only_notifications",
			body: `[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]`,
			err:  errUpstream,
		},
		{
			name: "batch_only_responses",
			body: `[{"jsonrpc":"2.0","id":0,"result":{"action":"accept"}},{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}]`,
			err:  errUpstream,
		},
		{name: "batch_empty", body: `[]`, err: errUpstream, ids: []string{"null"}},
		{name: "batch_invalid_elements", body: `[1,"x",null,[],{}]`, err: errUpstream, ids: []string{"null", "null", "null", "null", "null"}, batch: true},
		{name: "not_json", body: `Authorization required`, err: errUnauthorized, ids: []string{"null"}},
		{name: "truncated_json", body: `{"jsonrpc":"2.0","id":7,"method":"tools/ca`, err: errUnauthorized, ids: []string{"null"}},
		{name: "scalar_json", body: `7`, err: errUnauthorized, ids: []string{"null"}},
		{name: "empty_body", body: ``, err: errUnauthorized, ids: []string{"null"}},
		{name: "whitespace_body", body: " \r\n\t", err: errUnauthorized, ids: []string{"null"}},
		{name: "over_limit", body: toolsCall, maxBytes: 32, err: errUnauthorized, ids: []string{"null"}},
		{name: "non_utf8", body: "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"\xc3\x28\"}", err: errUnauthorized, ids: []string{"null"}},
		{name: "utf8_bom", body: "\xef\xbb\xbf" + toolsCall, err: errUnauthorized, ids: []string{"null"}},
		{
			name: "message_escapes",
			body: toolsCall,
			err: envelope.Error{
				Code:    envelope.CodeInternalError,
				Message: "quote\" backslash\\ nl\n cr\r tab\t nul\x00 esc\x1b del\x7f é 日本 \u2028\u2029 bad\xff\xc3 end",
				Data:    envelope.Data{Reason: "internal_error"},
			},
			ids: []string{"7"},
		},
		{
			name: "www_authenticate_quotes",
			body: toolsCall,
			err: envelope.Error{
				Code:    envelope.CodeSessionNotFound,
				Message: "Forbidden: insufficient scope",
				Data: envelope.Data{
					Status:          403,
					Reason:          "forbidden",
					WWWAuthenticate: `Bearer error="insufficient_scope", scope="tools:call files:read", error_description="the \"echo\" tool needs files:read", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`,
				},
			},
			ids: []string{"7"},
		},
		{name: "no_data", body: toolsCall, err: envelope.Error{Code: envelope.CodeInternalError, Message: "Internal error"}, ids: []string{"7"}},
		{name: "data_status_only", body: toolsCall, err: envelope.Error{Code: envelope.CodeGateway, Message: "Gateway timeout", Data: envelope.Data{Status: 504}}, ids: []string{"7"}},
		{name: "data_reason_only", body: toolsCall, err: envelope.Error{Code: envelope.CodeHeaderMismatch, Message: "Header mismatch", Data: envelope.Data{Reason: "header_mismatch"}}, ids: []string{"7"}},
		{name: "session_not_found", body: toolsCall, err: envelope.Error{Code: envelope.CodeSessionNotFound, Message: "Session not found", Data: envelope.Data{Status: 404, Reason: "session_not_found"}}, ids: []string{"7"}},
		{name: "empty_message", body: toolsCall, err: envelope.Error{Code: envelope.CodeInvalidRequest}, ids: []string{"7"}},
		{name: "invalid_request", body: `{"jsonrpc":"2.0","id":"x","method":"tools/call"}`, err: errInvalid, ids: []string{`"x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := envelope.Parse([]byte(tt.body), tt.maxBytes)
			prefix := []byte("prefix:")
			out, ok := envelope.Append(prefix, r, tt.err)
			if !bytes.HasPrefix(out, []byte("prefix:")) {
				t.Fatalf("Append did not append to dst: %q", out)
			}
			out = out[len(prefix):]
			if ok != (tt.ids != nil) {
				t.Fatalf("ok = %v, want %v (output %q)", ok, tt.ids != nil, out)
			}
			if !ok {
				if len(out) != 0 {
					t.Errorf("ok = false but wrote %q", out)
				}
			} else {
				checkEnvelopes(t, out, tt.err, tt.ids, tt.batch)
			}
			golden(t, filepath.Join("testdata", tt.name+".golden"), out)
		})
	}
}

// wireEnvelope is the envelope as a client decodes it.
type wireEnvelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    *struct {
			Status          int    `json:"status"`
			Reason          string `json:"reason"`
			WWWAuthenticate string `json:"www_authenticate"`
		} `json:"data"`
	} `json:"error"`
}

// checkEnvelopes asserts out is valid JSON holding one envelope per wanted id,
// each id byte for byte and each error as given.
func checkEnvelopes(t *testing.T, out []byte, e envelope.Error, ids []string, batch bool) {
	t.Helper()
	if !json.Valid(out) {
		t.Fatalf("output is not valid JSON: %s", out)
	}
	var envs []wireEnvelope
	if batch {
		if err := json.Unmarshal(out, &envs); err != nil {
			t.Fatalf("want an array of envelopes: %v: %s", err, out)
		}
	} else {
		var env wireEnvelope
		if err := json.Unmarshal(out, &env); err != nil {
			t.Fatalf("want one envelope object: %v: %s", err, out)
		}
		envs = append(envs, env)
	}
	if len(envs) != len(ids) {
		t.Fatalf("%d envelopes, want %d: %s", len(envs), len(ids), out)
	}
	// encoding/json turns each invalid UTF-8 byte into U+FFFD, as Append must.
	wantJSON, _ := json.Marshal(e.Message)
	wantMsg := unmarshalString(t, wantJSON)
	for i, env := range envs {
		if string(env.ID) != ids[i] {
			t.Errorf("envelope %d: id %s, want %s", i, env.ID, ids[i])
		}
		if env.JSONRPC != "2.0" || env.Error.Code != e.Code {
			t.Errorf("envelope %d: jsonrpc %q code %d", i, env.JSONRPC, env.Error.Code)
		}
		if env.Error.Message != wantMsg {
			t.Errorf("envelope %d: message %q, want %q", i, env.Error.Message, wantMsg)
		}
		d := e.Data
		if d == (envelope.Data{}) {
			if env.Error.Data != nil {
				t.Errorf("envelope %d: data present, want none", i)
			}
			continue
		}
		if env.Error.Data == nil || env.Error.Data.Status != d.Status || env.Error.Data.Reason != d.Reason ||
			env.Error.Data.WWWAuthenticate != d.WWWAuthenticate {
			t.Errorf("envelope %d: data %+v, want %+v", i, env.Error.Data, d)
		}
	}
}

func unmarshalString(t *testing.T, b []byte) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// golden compares got with the file at path, or rewrites the file with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	got = append(got[:len(got):len(got)], '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./envelope -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\n got %s\nwant %s", path, got, want)
	}
}

func TestAppendStringsMatchEncodingJSON(t *testing.T) {
	// Whatever the message, a client decodes the same text from Append's output
	// as from encoding/json's.
	msgs := []string{
		"", "plain", `"quoted"`, `back\slash`, "\x00\x01\x1f\x7f", "\n\r\t\b\f",
		"é 日本 🙂", "\u2028\u2029", "\xff", "a\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "<>&",
	}
	for _, m := range msgs {
		out, _ := envelope.Append(nil, envelope.Request{}, envelope.Error{Code: 1, Message: m, Data: envelope.Data{Status: 1, Reason: m}})
		var env wireEnvelope
		if err := json.Unmarshal(out, &env); err != nil {
			t.Fatalf("message %q: %v: %s", m, err, out)
		}
		want, _ := json.Marshal(m)
		if w := unmarshalString(t, want); env.Error.Message != w || env.Error.Data.Reason != w {
			t.Errorf("message %q decodes as %q / %q, want %q", m, env.Error.Message, env.Error.Data.Reason, w)
		}
	}
}

func TestAppendHandBuiltID(t *testing.T) {
	// Parse only yields valid ids; a Request built by hand must still give
	// valid JSON.
	for _, id := range []string{`1`, `"x"`, `abc`, `{"a":1}`, `"unterminated`, `1 2`, `-`, "\"\xff\"", `true`, `null`} {
		out, _ := envelope.Append(nil, envelope.Request{Kind: envelope.Single, ID: id, HasID: true}, errUpstream)
		if !json.Valid(out) {
			t.Errorf("id %q: invalid JSON %s", id, out)
		}
		var env wireEnvelope
		_ = json.Unmarshal(out, &env)
		want := id
		if id != `1` && id != `"x"` {
			want = "null"
		}
		if string(env.ID) != want {
			t.Errorf("id %q: echoed %s, want %s", id, env.ID, want)
		}
	}
}
