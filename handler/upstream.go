package handler

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/mcp-relay/mcp-relay/kong"
)

// maxUpstreamDetail bounds the upstream's own words carried into an
// envelope's message and the log, in bytes.
const maxUpstreamDetail = 200

// upstreamDetail reads why the upstream answered 401 or 403, so that the
// envelope does not dress a refusal that is no auth decision (a Host or
// Origin check, a misconfigured server) as a bad key. It costs one PDK call,
// on this error path only, and logs what the upstream answered.
func (p *Plugin) upstreamDetail(k kong.PDK, status int) string {
	body, err := k.UpstreamBody()
	if err != nil {
		logger.Warn("upstream rejected the request; its body could not be read", "status", status, "err", err)
		return ""
	}
	detail := upstreamMessage(body)
	logger.Warn("upstream rejected the request", "status", status, "reason", detail)
	return detail
}

// upstreamMessage is the short reason an upstream body gives: a JSON-RPC
// error's message, a JSON error/message/detail string, an HTML title, or
// the text itself. It is bounded to maxUpstreamDetail bytes, single-line,
// valid UTF-8, and never says "Unauthorized" with that capital letter:
// mcp-remote reads any error message containing it as an OAuth challenge
// and waits for a browser sign-in.
func upstreamMessage(body []byte) string {
	if len(body) > 4096 { // a reason is at the start; never scan a large page
		body = body[:4096]
	}
	text := strings.TrimSpace(string(body))
	switch {
	case text == "":
		return ""
	case gjson.Valid(text):
		for _, path := range []string{"error.message", "error", "message", "error_description", "detail"} {
			if v := gjson.Get(text, path); v.Type == gjson.String && v.Str != "" {
				return cleanDetail(v.Str)
			}
		}
		if v := gjson.Get(text, "error.message"); v.Exists() {
			return cleanDetail(v.Raw)
		}
		return ""
	case text[0] == '<':
		lower := strings.ToLower(text)
		start := strings.Index(lower, "<title>")
		end := strings.Index(lower, "</title>")
		if start < 0 || end < start {
			return ""
		}
		return cleanDetail(text[start+len("<title>") : end])
	}
	return cleanDetail(text)
}

// cleanDetail makes s one bounded line: control characters and runs of
// spaces become one space, invalid UTF-8 is dropped, and it is cut at a
// rune boundary.
func cleanDetail(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		n := utf8.RuneLen(r)
		if space {
			n++
		}
		if b.Len()+n > maxUpstreamDetail {
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return strings.ReplaceAll(b.String(), "Unauthorized", "unauthorized")
}

// warnAuthMessage flags an envelope.auth_message that mcp-remote would take
// for an OAuth challenge (it then waits for a browser sign-in forever).
func warnAuthMessage(message string) {
	if strings.Contains(message, "Unauthorized") {
		logger.Warn("config.envelope.auth_message contains \"Unauthorized\": mcp-remote takes such errors for an OAuth challenge and waits for a browser sign-in", "auth_message", message)
	}
}
