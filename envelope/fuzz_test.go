package envelope_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mcp-relay/mcp-relay/envelope"
)

// Seeds beyond testdata/fuzz/FuzzParse: shapes the plugin meets in practice.
var parseSeeds = []string{
	toolsCall,
	`{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"file:///a","name":"b"}}`,
	`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	`{"jsonrpc":"2.0","id":0,"result":{"action":"accept","content":{}}}`,
	`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"},7,[]]`,
	`{"id":1e400}`, `{"id":-0}`, `{"id":"\ud800"}`, `{"id":null}`, `{"id":{}}`,
	`{"id":1,"id":2}`, `{"ID":1}`, `{"\u0069d":1}`, `[]`, ``, ` `, `x`,
	"\xef\xbb\xbf{}",
}

func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		r := envelope.Parse(body, 0)
		checkRequest(t, r)
		if !bytes.Equal(body, orig) {
			t.Fatal("Parse modified the body")
		}
		if len(body) > 1 { // maxBytes 0 means no limit
			if got := envelope.Parse(body, len(body)-1).Kind; got != envelope.Invalid {
				t.Fatalf("over the limit: Kind %v, want invalid", got)
			}
		}
		n := 0
		r.Elements(func(e envelope.Request) bool {
			n++
			if e.Kind != envelope.Single && e.Kind != envelope.Invalid {
				t.Fatalf("element kind %v", e.Kind)
			}
			if !json.Valid(e.Body) {
				t.Fatalf("element body is not JSON: %q", e.Body)
			}
			checkRequest(t, e)
			return true
		})
		if n > 0 && r.Kind != envelope.Batch {
			t.Fatalf("%v has elements", r.Kind)
		}

		// Headers a conforming client derives from the body always match it.
		if r.Kind == envelope.Single && !r.Ambiguous && r.Method != "" {
			want := r.Name != "" || !needsName(r.Method)
			if got := envelope.MatchesHeaders(r, encodeHeader(r.Method), encodeHeader(r.Name)); got != want {
				t.Fatalf("MatchesHeaders(method %q, name %q) = %v, want %v", r.Method, r.Name, got, want)
			}
		}

		out, ok := envelope.Append(nil, r, errUnauthorized)
		if !ok {
			if len(out) != 0 || r.Kind != envelope.Batch {
				t.Fatalf("ok=false for %v with output %q", r.Kind, out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("Append output is not JSON: %s", out)
		}
		if r.Kind == envelope.Single {
			var env wireEnvelope
			if err := json.Unmarshal(out, &env); err != nil {
				t.Fatal(err)
			}
			want := r.ID
			if want == "" {
				want = "null"
			}
			if string(env.ID) != want {
				t.Fatalf("echoed id %s, want %s", env.ID, want)
			}
		}
	})
}

// checkRequest asserts what holds for any Request, and that it agrees with
// encoding/json whenever the body is not Ambiguous.
func checkRequest(t *testing.T, r envelope.Request) {
	t.Helper()
	if r.Kind != envelope.Single {
		if r.ID != "" || r.HasID || r.Method != "" || r.Name != "" || r.JSONRPC {
			t.Fatalf("%v with fields: %+v", r.Kind, fields(r))
		}
		return
	}
	if r.ID != "" {
		if !r.HasID {
			t.Fatalf("ID %q without HasID", r.ID)
		}
		dec := json.NewDecoder(strings.NewReader(r.ID))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil || dec.More() {
			t.Fatalf("ID %q is not one JSON value: %v", r.ID, err)
		}
		switch v.(type) {
		case string, json.Number:
		default:
			t.Fatalf("ID %q is %T, want a string or number", r.ID, v)
		}
	}
	if r.Ambiguous {
		return
	}
	// Without duplicates or case variants, encoding/json reads the same members.
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method any             `json:"method"`
	}
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("encoding/json rejects a Single body: %v", err)
	}
	if m.ID != nil != r.HasID {
		t.Fatalf("encoding/json id %s, HasID %v", m.ID, r.HasID)
	}
	if r.ID != "" && string(m.ID) != r.ID {
		t.Fatalf("encoding/json id %s, Parse %s", m.ID, r.ID)
	}
	if s, _ := m.Method.(string); s != r.Method && utf8.ValidString(s) && !strings.ContainsRune(s, utf8.RuneError) {
		t.Fatalf("encoding/json method %q, Parse %q", s, r.Method)
	}
}

// encodeHeader encodes v as a 2026-07-28 client must (Value Encoding).
func encodeHeader(v string) string {
	plain := !strings.HasPrefix(v, " ") && !strings.HasSuffix(v, " ") &&
		!(strings.HasPrefix(v, "=?base64?") && strings.HasSuffix(v, "?="))
	for i := 0; i < len(v) && plain; i++ {
		plain = v[i] >= 0x20 && v[i] <= 0x7e
	}
	if plain {
		return v
	}
	return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(v)) + "?="
}

func needsName(method string) bool {
	return method == "tools/call" || method == "prompts/get" || method == "resources/read"
}

func FuzzDecodeHeader(f *testing.F) {
	for _, s := range []string{
		"", "tools/call", "two words", " x", "héllo", "=?base64?=", "=?base64??=",
		"=?base64?SGVsbG8sIOS4lueVjA==?=", "=?base64?ZWNobx==?=", "=?base64?/w==?=", "=?BASE64?eA==?=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, ok := envelope.DecodeHeader(v)
		if ok {
			if !utf8.ValidString(s) {
				t.Fatalf("DecodeHeader(%q) = %q: not UTF-8", v, s)
			}
			payload, encoded := strings.CutPrefix(v, "=?base64?")
			if encoded {
				payload, encoded = strings.CutSuffix(payload, "?=")
			}
			if encoded && base64.StdEncoding.EncodeToString([]byte(s)) != payload {
				t.Fatalf("DecodeHeader(%q) = %q: accepted a non-canonical encoding", v, s)
			}
			if !encoded && s != v {
				t.Fatalf("plain DecodeHeader(%q) = %q", v, s)
			}
			// MatchesHeaders must agree with DecodeHeader on what the value means.
			r := envelope.Request{Kind: envelope.Single, HasID: true, Method: "tools/call", Name: s}
			if got := envelope.MatchesHeaders(r, "tools/call", v); got != (s != "") {
				t.Fatalf("MatchesHeaders(name %q, header %q) = %v", s, v, got)
			}
		} else if s != "" {
			t.Fatalf("DecodeHeader(%q) = %q with ok=false", v, s)
		}
		// Any UTF-8 value survives EncodeHeader, plain when it can be.
		if utf8.ValidString(v) && v != "" {
			enc := envelope.EncodeHeader(v)
			if got, ok := envelope.DecodeHeader(enc); !ok || got != v {
				t.Fatalf("DecodeHeader(EncodeHeader(%q) = %q) = %q, %v", v, enc, got, ok)
			}
			if want := encodeHeader(v); enc != want {
				t.Fatalf("EncodeHeader(%q) = %q, the spec's rule gives %q", v, enc, want)
			}
		}
		// Any UTF-8 value survives the sentinel encoding.
		if utf8.ValidString(v) {
			enc := "=?base64?" + base64.StdEncoding.EncodeToString([]byte(v)) + "?="
			if got, ok := envelope.DecodeHeader(enc); !ok || got != v {
				t.Fatalf("DecodeHeader(%q) = %q, %v; want %q", enc, got, ok, v)
			}
		}
	})
}
