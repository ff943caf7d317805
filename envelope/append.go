package envelope

import (
	"strconv"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// JSON-RPC and MCP error codes the plugin answers with.
const (
	// CodeInvalidRequest is JSON-RPC's "Invalid Request": the body is not a
	// usable JSON-RPC request (also the Python SDK's unknown-session code).
	CodeInvalidRequest = -32600
	// CodeInternalError is JSON-RPC's "Internal error": the gateway itself failed.
	CodeInternalError = -32603
	// CodeSessionNotFound is what the TypeScript SDK sends with its 404 for an
	// unknown session. Legacy range; the Python SDK reads it as "request
	// timeout", so data.reason says what happened.
	CodeSessionNotFound = -32001
	// CodeGateway marks a failure of the gateway or of the upstream it
	// reached (502/503/504): an application code, outside JSON-RPC's
	// reserved -32768..-32000 (where -32002 is MCP's "Resource not found"),
	// beside envelope.modern_auth_code's default -31001. Kong's own 502/504
	// carry it too, through kong/error_template.json.
	CodeGateway = -31002
	// CodeHeaderMismatch is 2026-07-28's HeaderMismatch: Mcp-Method or Mcp-Name
	// missing, malformed, or not matching the body. Sent with HTTP 400.
	CodeHeaderMismatch = -32020
	// CodeUnsupportedVersion is 2026-07-28's UnsupportedProtocolVersion. Sent
	// with HTTP 400.
	CodeUnsupportedVersion = -32022
)

// Data is the envelope's error.data: machine-readable facts so a client never
// has to guess from a code that SDKs disagree on.
type Data struct {
	// Status is the HTTP status the rejection started as (401, 403, 404,
	// 502, ...); 0 leaves it out.
	Status int
	// Reason is a machine-readable cause such as "unauthorized", "forbidden",
	// "upstream_error", "upstream_timeout", "session_not_found",
	// "invalid_session_id", "header_mismatch", "internal_error",
	// "store_unavailable"; "" leaves it out.
	Reason string
	// WWWAuthenticate repeats the WWW-Authenticate challenge; "" leaves it out.
	WWWAuthenticate string
}

// Error is one JSON-RPC error object.
type Error struct {
	Code    int
	Message string
	Data    Data
}

// Append appends the envelope(s) answering r with e to dst and reports whether
// it wrote anything. It does not allocate when dst has room.
//
//   - Single: one {"jsonrpc":"2.0","error":{...},"id":ID}, ID echoed byte for
//     byte, or null when r has no valid id.
//   - Batch: a JSON array with one envelope per element that needs an answer, in
//     order. Notifications and responses need none; every other element does
//     (non-objects and objects without a valid id get id null). If no element
//     needs one, nothing is written and ok is false (JSON-RPC 2.0). An empty
//     batch gets a single envelope with id null (JSON-RPC: invalid request).
//   - Empty or Invalid: one envelope with id null.
//
// error.data holds status, reason and www_authenticate in that order, each only
// when set; data itself is left out when none is. Strings are escaped as JSON
// requires; invalid UTF-8 becomes U+FFFD.
func Append(dst []byte, r Request, e Error) (out []byte, ok bool) {
	if r.Kind != Batch {
		return appendEnvelope(dst, r.ID, &e), true
	}
	start := len(dst)
	elements, answered := 0, 0
	r.Elements(func(el Request) bool {
		elements++
		if el.IsNotification() || el.IsResponse() {
			return true
		}
		if answered == 0 {
			dst = append(dst, '[')
		} else {
			dst = append(dst, ',')
		}
		answered++
		dst = appendEnvelope(dst, el.ID, &e)
		return true
	})
	switch {
	case elements == 0:
		return appendEnvelope(dst[:start], "", &e), true
	case answered == 0:
		return dst[:start], false
	}
	return append(dst, ']'), true
}

func appendEnvelope(dst []byte, id string, e *Error) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, e.Message)
	if d := &e.Data; d.Status != 0 || d.Reason != "" || d.WWWAuthenticate != "" {
		dst = append(dst, `,"data":{`...)
		sep := false
		if d.Status != 0 {
			dst = append(dst, `"status":`...)
			dst = strconv.AppendInt(dst, int64(d.Status), 10)
			sep = true
		}
		if d.Reason != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"reason":`...)
			dst = appendString(dst, d.Reason)
			sep = true
		}
		if d.WWWAuthenticate != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"www_authenticate":`...)
			dst = appendString(dst, d.WWWAuthenticate)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `},"id":`...)
	if validID(id) {
		dst = append(dst, id...)
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, '}')
}

// validID reports whether id can be echoed as is: a JSON string or number.
// Parse only produces such ids; this guards hand-built Requests so the output
// stays valid JSON.
func validID(id string) bool {
	if id == "" {
		return false
	}
	switch c := id[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
	default:
		return false
	}
	return gjson.Valid(id) && utf8.ValidString(id)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string. Beyond what JSON requires it escapes
// U+2028 and U+2029 (as encoding/json does) so the output is also safe in
// JavaScript source.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
