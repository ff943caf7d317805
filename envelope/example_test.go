package envelope_test

import (
	"fmt"

	"github.com/mcp-relay/mcp-relay/envelope"
)

func ExampleAppend() {
	body := []byte(`{"jsonrpc":"2.0","id":"req-7","method":"tools/call","params":{"name":"echo"}}`)
	r := envelope.Parse(body, 1<<20)
	out, ok := envelope.Append(nil, r, envelope.Error{
		Code:    envelope.CodeSessionNotFound,
		Message: "Unauthorized: invalid API key",
		Data: envelope.Data{
			Status:          401,
			Reason:          "unauthorized",
			WWWAuthenticate: `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`,
		},
	})
	fmt.Println(ok)
	fmt.Println(string(out))
	// Output:
	// true
	// {"jsonrpc":"2.0","error":{"code":-32001,"message":"Unauthorized: invalid API key","data":{"status":401,"reason":"unauthorized","www_authenticate":"Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource\""}},"id":"req-7"}
}

func ExampleAppend_batch() {
	body := []byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`)
	out, ok := envelope.Append(nil, envelope.Parse(body, 0), envelope.Error{Code: envelope.CodeGateway, Message: "Upstream timed out"})
	fmt.Println(ok, string(out))

	notifications := []byte(`[{"jsonrpc":"2.0","method":"notifications/initialized"}]`)
	out, ok = envelope.Append(nil, envelope.Parse(notifications, 0), envelope.Error{Code: envelope.CodeGateway, Message: "Upstream timed out"})
	fmt.Println(ok, len(out))
	// Output:
	// true [{"jsonrpc":"2.0","error":{"code":-31002,"message":"Upstream timed out"},"id":1}]
	// false 0
}

func ExampleMatchesHeaders() {
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"héllo","arguments":{}}}`)
	r := envelope.Parse(body, 0)
	fmt.Println(envelope.MatchesHeaders(r, "tools/call", "=?base64?aMOpbGxv?="))
	fmt.Println(envelope.MatchesHeaders(r, "tools/call", "hello"))
	fmt.Println(envelope.MatchesHeaders(r, "tools/call", ""))
	// Output:
	// true
	// false
	// false
}

func ExampleDecodeHeader() {
	fmt.Println(envelope.DecodeHeader("=?base64?SGVsbG8sIOS4lueVjA==?="))
	fmt.Println(envelope.DecodeHeader("get_weather"))
	fmt.Println(envelope.DecodeHeader("=?base64?not base64?="))
	// Output:
	// Hello, 世界 true
	// get_weather true
	//  false
}
