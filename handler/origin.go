package handler

import (
	"strings"

	"github.com/mcp-relay/mcp-relay/kong"
)

// hOrigin is the browser's Origin request header. The MCP specification asks
// servers to check it against DNS rebinding: a page of a foreign site whose
// name was rebound to the server's address sends its own origin.
const hOrigin = "origin"

// originAllowList is config.origin.allow, normalised for comparison: lower
// case, no trailing slash. nil means no check.
type originAllowList map[string]struct{}

func newOriginAllowList(origins []string) originAllowList {
	if len(origins) == 0 {
		return nil
	}
	l := make(originAllowList, len(origins))
	for _, o := range origins {
		l[normalizeOrigin(o)] = struct{}{}
	}
	return l
}

func normalizeOrigin(o string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o), "/"))
}

// allows reports whether a request with these headers may pass: no list, no
// Origin (clients other than browsers send none), or a listed one. Several
// Origin headers pass only when each is listed.
func (l originAllowList) allows(h map[string][]string) bool {
	if l == nil {
		return true
	}
	for _, o := range h[hOrigin] {
		if _, ok := l[normalizeOrigin(o)]; !ok {
			return false
		}
	}
	return true
}

// rejectOrigin answers a request from a foreign origin: an envelope for MCP
// traffic, a plain 403 otherwise (a CORS preflight, a page). It costs no PDK
// call beyond the answer: the headers and body are already read.
func (p *Plugin) rejectOrigin(k kong.PDK, r *request) {
	if r.bodyUnread { // the envelope echoes the id
		p.readBody(k, r)
	}
	logger.Warn("request from an origin not in config.origin.allow", "origin", truncate(first(r.headers, hOrigin), 200))
	if !r.mcp {
		envelopes.WithLabelValues(reasonOrigin.name + "_plain").Inc()
		k.Exit(403, []byte(`{"message":"Origin not allowed"}`), jsonOnly)
		return
	}
	p.reply(k, r, reasonOrigin, "")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
