package envelope_test

import (
	"strings"
	"testing"

	"github.com/mcp-relay/mcp-relay/envelope"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		maxBytes int
		want     envelope.Request // Body is not compared
		notif    bool
		response bool
	}{
		{name: "nil body", body: "", want: envelope.Request{Kind: envelope.Empty}},
		{name: "whitespace only", body: " \r\n\t ", want: envelope.Request{Kind: envelope.Empty}},
		{name: "whitespace over limit", body: "      ", maxBytes: 3, want: envelope.Request{Kind: envelope.Invalid}},
		{name: "not json", body: "hello", want: envelope.Request{Kind: envelope.Invalid}},
		{name: "truncated", body: `{"id":1`, want: envelope.Request{Kind: envelope.Invalid}},
		{name: "trailing garbage", body: `{"id":1} x`, want: envelope.Request{Kind: envelope.Invalid}},
		{name: "two objects", body: `{"id":1}{"id":2}`, want: envelope.Request{Kind: envelope.Invalid}},
		{name: "scalar number", body: `42`, want: envelope.Request{Kind: envelope.Invalid}},
		{name: "scalar string", body: `"x"`, want: envelope.Request{Kind: envelope.Invalid}},
		{name: "null", body: `null`, want: envelope.Request{Kind: envelope.Invalid}},
		{name: "non-breaking space is not whitespace", body: "\u00a0{}", want: envelope.Request{Kind: envelope.Invalid}},
		{name: "non-utf8 in string", body: "{\"id\":1,\"method\":\"\xff\"}", want: envelope.Request{Kind: envelope.Invalid}},
		{name: "utf8 bom", body: "\xef\xbb\xbf{\"id\":1}", want: envelope.Request{Kind: envelope.Invalid}},
		{name: "over limit", body: `{"id":1,"method":"ping"}`, maxBytes: 10, want: envelope.Request{Kind: envelope.Invalid}},
		{
			name: "at limit", body: `{"id":1,"method":"ping"}`, maxBytes: 24,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "ping"},
		},
		{
			name: "tools/call",
			body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"name":"no","uri":"no"}}}`,
			want: envelope.Request{Kind: envelope.Single, ID: "7", HasID: true, Method: "tools/call", Name: "echo", JSONRPC: true},
		},
		{
			name: "surrounding whitespace",
			body: "\r\n {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"} \n",
			want: envelope.Request{Kind: envelope.Single, ID: "7", HasID: true, Method: "ping", JSONRPC: true},
		},
		{
			name: "string id kept raw",
			body: `{"id":"a\"b\u00e9","method":"ping"}`,
			want: envelope.Request{Kind: envelope.Single, ID: `"a\"b\u00e9"`, HasID: true, Method: "ping"},
		},
		{name: "huge exponent id", body: `{"id":1e400}`, want: envelope.Request{Kind: envelope.Single, ID: "1e400", HasID: true}},
		{name: "negative zero id", body: `{"id":-0}`, want: envelope.Request{Kind: envelope.Single, ID: "-0", HasID: true}},
		{
			name: "long integer id", body: `{"id":12345678901234567890123}`,
			want: envelope.Request{Kind: envelope.Single, ID: "12345678901234567890123", HasID: true},
		},
		{name: "float id", body: `{"id":-1.5E-3}`, want: envelope.Request{Kind: envelope.Single, ID: "-1.5E-3", HasID: true}},
		{name: "null id", body: `{"id":null,"method":"x"}`, want: envelope.Request{Kind: envelope.Single, HasID: true, Method: "x"}},
		{name: "object id", body: `{"id":{"a":1}}`, want: envelope.Request{Kind: envelope.Single, HasID: true}},
		{name: "array id", body: `{"id":[1]}`, want: envelope.Request{Kind: envelope.Single, HasID: true}},
		{name: "bool id", body: `{"id":true}`, want: envelope.Request{Kind: envelope.Single, HasID: true}},
		{
			name: "notification", body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			want:  envelope.Request{Kind: envelope.Single, Method: "notifications/initialized", JSONRPC: true},
			notif: true,
		},
		{
			name: "response", body: `{"jsonrpc":"2.0","id":0,"result":{"action":"accept"}}`,
			want:     envelope.Request{Kind: envelope.Single, ID: "0", HasID: true, JSONRPC: true},
			response: true,
		},
		{
			name: "error response", body: `{"jsonrpc":"2.0","id":"s1","error":{"code":-1,"message":"no"}}`,
			want:     envelope.Request{Kind: envelope.Single, ID: `"s1"`, HasID: true, JSONRPC: true},
			response: true,
		},
		{name: "no id no method", body: `{"jsonrpc":"2.0"}`, want: envelope.Request{Kind: envelope.Single, JSONRPC: true}},
		{name: "wrong jsonrpc", body: `{"jsonrpc":"1.0","id":1}`, want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true}},
		{name: "numeric jsonrpc", body: `{"jsonrpc":2.0,"id":1}`, want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true}},
		{name: "method not a string", body: `{"id":1,"method":5}`, want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true}},
		{
			name: "escaped member names are the same members",
			body: `{"\u0069d":3,"m\u0065thod":"ping","jsonrpc":"2\u002e0"}`,
			want: envelope.Request{Kind: envelope.Single, ID: "3", HasID: true, Method: "ping", JSONRPC: true},
		},
		{
			name: "escaped method is unescaped",
			body: `{"id":1,"method":"tools\/call","params":{"name":"caf\u00e9"}}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "tools/call", Name: "café"},
		},
		{
			name: "resources/read reads uri, not name",
			body: `{"id":1,"method":"resources/read","params":{"name":"decoy","uri":"file:///a"}}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "resources/read", Name: "file:///a"},
		},
		{
			name: "tools/call reads name, not uri",
			body: `{"id":1,"method":"tools/call","params":{"uri":"file:///a"}}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "tools/call"},
		},
		{
			name: "other methods fall back to uri",
			body: `{"id":1,"method":"resources/subscribe","params":{"uri":"file:///a"}}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "resources/subscribe", Name: "file:///a"},
		},
		{
			name: "method after params",
			body: `{"params":{"name":"n","uri":"u"},"id":1,"method":"resources/read"}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "resources/read", Name: "u"},
		},
		{
			name: "name not a string",
			body: `{"id":1,"method":"tools/call","params":{"name":7}}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "tools/call"},
		},
		{
			name: "params not an object",
			body: `{"id":1,"method":"tools/call","params":["echo"]}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "tools/call"},
		},
		{
			name: "duplicate id: first wins, ambiguous",
			body: `{"id":1,"method":"ping","id":2}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "ping", Ambiguous: true},
		},
		{
			name: "duplicate name: first wins, ambiguous",
			body: `{"id":1,"method":"tools/call","params":{"name":"safe","name":"rm"}}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "tools/call", Name: "safe", Ambiguous: true},
		},
		{
			name: "case variant of method is ambiguous",
			body: `{"id":1,"method":"tools/list","Method":"tools/call"}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "tools/list", Ambiguous: true},
		},
		{
			name:  "case variant alone is ignored but ambiguous",
			body:  `{"ID":1,"method":"ping"}`,
			want:  envelope.Request{Kind: envelope.Single, Method: "ping", Ambiguous: true},
			notif: true,
		},
		{
			name: "unicode case fold (Kelvin sign) is ambiguous",
			body: `{"id":1,"method":"tools/call","params":{"name":"a","\u212aey":1,"Nam\u0065":"b"}}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "tools/call", Name: "a", Ambiguous: true},
		},
		{
			name: "duplicates deeper down are not ours",
			body: `{"id":1,"method":"tools/call","params":{"name":"a","arguments":{"name":1,"name":2}}}`,
			want: envelope.Request{Kind: envelope.Single, ID: "1", HasID: true, Method: "tools/call", Name: "a"},
		},
		{name: "empty batch", body: `[]`, want: envelope.Request{Kind: envelope.Batch}},
		{name: "batch", body: ` [{"id":1,"method":"ping"}] `, want: envelope.Request{Kind: envelope.Batch}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := envelope.Parse([]byte(tt.body), tt.maxBytes)
			if string(got.Body) != tt.body {
				t.Errorf("Body = %q, want the input", got.Body)
			}
			if fields(got) != fields(tt.want) {
				t.Errorf("Parse(%q) =\n  %+v\nwant\n  %+v", tt.body, fields(got), fields(tt.want))
			}
			if n := got.IsNotification(); n != tt.notif {
				t.Errorf("IsNotification() = %v, want %v", n, tt.notif)
			}
			if r := got.IsResponse(); r != tt.response {
				t.Errorf("IsResponse() = %v, want %v", r, tt.response)
			}
		})
	}
}

// requestFields is the comparable part of a Request.
type requestFields struct {
	Kind                      envelope.Kind
	ID, Method, Name          string
	HasID, JSONRPC, Ambiguous bool
}

func fields(r envelope.Request) requestFields {
	return requestFields{r.Kind, r.ID, r.Method, r.Name, r.HasID, r.JSONRPC, r.Ambiguous}
}

func TestParseReferencesBody(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"echo"}}`)
	r := envelope.Parse(body, 0)
	// Overwriting the body changes the fields: they are views, not copies.
	copy(body[strings.Index(string(body), "abc"):], "xyz")
	copy(body[strings.Index(string(body), "echo"):], "ECHO")
	if r.ID != `"xyz"` || r.Name != "ECHO" {
		t.Errorf("ID = %s, Name = %s: want views of the body", r.ID, r.Name)
	}
}

func TestElements(t *testing.T) {
	body := ` [ {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
		{"jsonrpc":"2.0","method":"notifications/x"} , 5, "s", null, [1,2],
		{"id":{"x":1}}, {"id":"two","result":{}} ] `
	type el struct {
		kind  envelope.Kind
		body  string
		id    string
		notif bool
	}
	want := []el{
		{envelope.Single, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}`, "1", false},
		{envelope.Single, `{"jsonrpc":"2.0","method":"notifications/x"}`, "", true},
		{envelope.Invalid, `5`, "", false},
		{envelope.Invalid, `"s"`, "", false},
		{envelope.Invalid, `null`, "", false},
		{envelope.Invalid, `[1,2]`, "", false},
		{envelope.Single, `{"id":{"x":1}}`, "", false},
		{envelope.Single, `{"id":"two","result":{}}`, `"two"`, false},
	}
	r := envelope.Parse([]byte(body), 0)
	var got []el
	r.Elements(func(e envelope.Request) bool {
		got = append(got, el{e.Kind, string(e.Body), e.ID, e.IsNotification()})
		return true
	})
	if len(got) != len(want) {
		t.Fatalf("got %d elements, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("element %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	t.Run("stops when fn returns false", func(t *testing.T) {
		n := 0
		r.Elements(func(envelope.Request) bool { n++; return n < 2 })
		if n != 2 {
			t.Errorf("fn called %d times, want 2", n)
		}
	})
	t.Run("not a batch", func(t *testing.T) {
		for _, b := range []string{`{"id":1}`, ``, `x`} {
			envelope.Parse([]byte(b), 0).Elements(func(envelope.Request) bool {
				t.Errorf("Elements of %q called fn", b)
				return true
			})
		}
	})
	t.Run("element fields", func(t *testing.T) {
		var first envelope.Request
		r.Elements(func(e envelope.Request) bool { first = e; return false })
		if first.Method != "tools/call" || first.Name != "a" || !first.JSONRPC || !first.HasID {
			t.Errorf("first element = %+v", first)
		}
	})
}

func TestKindString(t *testing.T) {
	for k, want := range map[envelope.Kind]string{
		envelope.Empty: "empty", envelope.Invalid: "invalid", envelope.Single: "single",
		envelope.Batch: "batch", envelope.Kind(9): "unknown",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}
