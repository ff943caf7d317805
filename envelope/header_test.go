package envelope_test

import (
	"testing"

	"github.com/mcp-relay/mcp-relay/envelope"
)

func TestDecodeHeader(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"absent", "", "", true},
		{"plain", "tools/call", "tools/call", true},
		{"plain with inner space", "two words", "two words", true},
		{"plain uri", "file:///projects/myapp/config.json", "file:///projects/myapp/config.json", true},
		{"leading space", " lead", "", false},
		{"trailing space", "trail ", "", false},
		{"tab", "a\tb", "", false},
		{"newline", "a\nb", "", false},
		{"nul", "a\x00b", "", false},
		{"del", "a\x7fb", "", false},
		{"raw non-ascii", "héllo", "", false},
		{"raw latin-1 byte", "h\xe9llo", "", false},
		// The spec's own examples (2026-07-28 Streamable HTTP, Value Encoding).
		{"spec non-ascii", "=?base64?SGVsbG8sIOS4lueVjA==?=", "Hello, 世界", true},
		{"spec padded", "=?base64?IHBhZGRlZCA=?=", " padded ", true},
		{"spec newline", "=?base64?bGluZTEKbGluZTI=?=", "line1\nline2", true},
		{"spec sentinel literal", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "=?base64?literal?=", true},
		{"encoded ascii", "=?base64?ZWNobw==?=", "echo", true},
		{"encoded empty", "=?base64??=", "", true},
		{"encoded nul", "=?base64?AA==?=", "\x00", true},
		{"one pad", "=?base64?aMOpbGxvIQ==?=", "héllo!", true},
		{"markers overlap", "=?base64?=", "", false},
		{"markers are case-sensitive", "=?BASE64?ZWNobw==?=", "=?BASE64?ZWNobw==?=", true},
		{"prefix only is plain", "=?base64?abc", "=?base64?abc", true},
		{"suffix only is plain", "abc?=", "abc?=", true},
		{"unpadded", "=?base64?ZWNobw?=", "", false},
		{"length not a multiple of 4", "=?base64?ZWNob?=", "", false},
		{"non-canonical trailing bits", "=?base64?ZWNobx==?=", "", false},
		{"non-canonical one pad", "=?base64?SGl=?=", "", false},
		{"padding in the middle", "=?base64?ZW==bw==?=", "", false},
		{"padding then data", "=?base64?Z=Nv?=", "", false},
		{"three pads", "=?base64?Z===?=", "", false},
		{"only pads", "=?base64?====?=", "", false},
		{"url-safe alphabet", "=?base64?_-8=?=", "", false},
		{"space inside", "=?base64?ZWNo bw==?=", "", false},
		{"newline inside", "=?base64?ZWNo\nbw==?=", "", false},
		{"invalid utf-8 payload", "=?base64?/w==?=", "", false},
		{"lone surrogate payload", "=?base64?7aCA?=", "", false},
		{"nested sentinel decodes once", "=?base64?PT9iYXNlNjQ/WldOb2J3PT0/PQ==?=", "=?base64?ZWNobw==?=", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := envelope.DecodeHeader(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("DecodeHeader(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestMatchesHeaders(t *testing.T) {
	const (
		call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"name":"x"}}}`
	)
	tests := []struct {
		name, body, method, mcpName string
		want                        bool
	}{
		{"tools/call plain", call, "tools/call", "get_weather", true},
		{"tools/call encoded name", call, "tools/call", "=?base64?Z2V0X3dlYXRoZXI=?=", true},
		{"encoded method", call, "=?base64?dG9vbHMvY2FsbA==?=", "get_weather", true},
		{"name mismatch", call, "tools/call", "delete_everything", false},
		{"name differs in case", call, "tools/call", "Get_Weather", false},
		{"name prefix", call, "tools/call", "get_weathe", false},
		{"encoded name mismatch", call, "tools/call", "=?base64?Z2V0X3dlYXRoZXY=?=", false},
		{"method mismatch", call, "tools/list", "get_weather", false},
		{"method case differs", call, "Tools/Call", "get_weather", false},
		{"missing method on a request", call, "", "get_weather", false},
		{"missing name for tools/call", call, "tools/call", "", false},
		{"malformed encoded name", call, "tools/call", "=?base64?Z2V0X3dlYXRoZXI?=", false},
		{"name sent with a control character", call, "tools/call", "get_weather\n", false},
		{
			"non-ascii name encoded",
			`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"héllo"}}`,
			"tools/call", "=?base64?aMOpbGxv?=", true,
		},
		{
			"non-ascii name escaped in the body",
			`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"h\u00e9llo"}}`,
			"tools/call", "=?base64?aMOpbGxv?=", true,
		},
		{
			"non-ascii name sent raw",
			`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"héllo"}}`,
			"tools/call", "héllo", false,
		},
		{
			"spec example: name that looks like the sentinel, encoded",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"=?base64?literal?="}}`,
			"tools/call", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", true,
		},
		{
			"name that looks like the sentinel, sent plain",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"=?base64?literal?="}}`,
			"tools/call", "=?base64?literal?=", false,
		},
		{
			"name with surrounding spaces, encoded",
			`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":" padded "}}`,
			"prompts/get", "=?base64?IHBhZGRlZCA=?=", true,
		},
		{
			"prompts/get",
			`{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"review"}}`,
			"prompts/get", "review", true,
		},
		{
			"missing name for prompts/get",
			`{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"review"}}`,
			"prompts/get", "", false,
		},
		{
			"resources/read matches uri",
			`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///projects/myapp/config.json"}}`,
			"resources/read", "file:///projects/myapp/config.json", true,
		},
		{
			"resources/read ignores a decoy params.name",
			`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"name":"public","uri":"file:///etc/shadow"}}`,
			"resources/read", "public", false,
		},
		{
			"missing name for resources/read",
			`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a"}}`,
			"resources/read", "", false,
		},
		{
			"tools/call does not match params.uri",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"uri":"file:///a"}}`,
			"tools/call", "file:///a", false,
		},
		{
			"tools/call with an empty name",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}`,
			"tools/call", "=?base64??=", false,
		},
		{
			"tools/call with a non-string name",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}`,
			"tools/call", "5", false,
		},
		{"tools/list without a name", `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`, "tools/list", "", true},
		{"tools/list with a stray name", `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`, "tools/list", "x", false},
		{
			"other method with a matching name",
			`{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{},"name":"n"}}`,
			"completion/complete", "n", true,
		},
		{"notification without headers", `{"jsonrpc":"2.0","method":"notifications/cancelled"}`, "", "", true},
		{"notification with matching method", `{"jsonrpc":"2.0","method":"notifications/cancelled"}`, "notifications/cancelled", "", true},
		{"notification with other method", `{"jsonrpc":"2.0","method":"notifications/cancelled"}`, "tools/call", "", false},
		{
			"duplicate name is refused",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"rm_rf"}}`,
			"tools/call", "safe", false,
		},
		{
			"case-variant method is refused",
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call"}`,
			"tools/list", "", false,
		},
		{"response body", `{"jsonrpc":"2.0","id":1,"result":{}}`, "", "", false},
		{"batch body", `[` + call + `]`, "tools/call", "get_weather", false},
		{"invalid body", `{"id":1,`, "tools/call", "get_weather", false},
		{"empty body", ``, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := envelope.Parse([]byte(tt.body), 0)
			if got := envelope.MatchesHeaders(r, tt.method, tt.mcpName); got != tt.want {
				t.Errorf("MatchesHeaders(%s, %q, %q) = %v, want %v", tt.body, tt.method, tt.mcpName, got, tt.want)
			}
		})
	}
}

func TestEncodeHeader(t *testing.T) {
	for in, want := range map[string]string{
		"tools/call":         "tools/call",
		"two words":          "two words",
		"file:///a/b.json":   "file:///a/b.json",
		"Hello, 世界":          "=?base64?SGVsbG8sIOS4lueVjA==?=",
		" padded ":           "=?base64?IHBhZGRlZCA=?=",
		"line1\nline2":       "=?base64?bGluZTEKbGluZTI=?=",
		"=?base64?literal?=": "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=",
	} {
		if got := envelope.EncodeHeader(in); got != want {
			t.Errorf("EncodeHeader(%q) = %q, want %q", in, got, want)
		}
	}
}
