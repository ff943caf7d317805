// Package envelope reads the few JSON-RPC 2.0 members an MCP gateway needs from
// a request body (id, method, params.name or params.uri), checks the 2026-07-28
// Mcp-Method and Mcp-Name headers against them, and writes JSON-RPC error
// envelopes that echo the request id byte for byte.
//
// It exists so that a rejection (a bad key, an unknown session, an upstream that
// failed or timed out) reaches an MCP client as a JSON-RPC error for the request
// it sent, not as a bare HTTP status the client treats as a transport fault.
//
// Reading uses gjson over an unsafe string view of the body, so a typical
// request is read, and its envelope written, without allocating. The strings in
// a Request point into the body and are valid only while the body is.
package envelope
