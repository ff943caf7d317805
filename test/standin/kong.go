package standin

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// KongVersion is the Kong release whose behaviour the stand-in follows.
const KongVersion = "3.9.3"

// serverTokens is meta._SERVER_TOKENS (kong/meta.lua).
const serverTokens = "kong/" + KongVersion

// defaultWorkspaceID is constants.DECLARATIVE_DEFAULT_WORKSPACE_ID
// (kong/constants.lua): the default workspace of a DB-less node.
const defaultWorkspaceID = "0dc6f45b-8f8d-40d2-a504-473544ee190b"

// phase is a bit of PHASES in kong/pdk/private/phases.lua; ngx.ctx.KONG_PHASE
// holds one of them while a plugin handler runs.
type phase uint32

const (
	phInitWorker      phase = 0x00000001
	phCertificate     phase = 0x00000002
	phClientHello     phase = 0x00000008
	phRewrite         phase = 0x00000010
	phAccess          phase = 0x00000020
	phBalancer        phase = 0x00000040
	phResponse        phase = 0x00000080
	phClusterListener phase = 0x00000100
	phHeaderFilter    phase = 0x00000200
	phBodyFilter      phase = 0x00000400
	phLog             phase = 0x00002000
	phPreread         phase = 0x00004000
	phError           phase = 0x01000000
	phAdminAPI        phase = 0x10000000
)

// phRequest is the "request" alias of kong/pdk/private/phases.lua.
const phRequest = phRewrite | phAccess | phBalancer | phResponse | phHeaderFilter |
	phBodyFilter | phLog | phError | phAdminAPI | phClusterListener

var phaseNames = map[phase]string{
	phInitWorker: "init_worker", phCertificate: "certificate", phClientHello: "client_hello",
	phRewrite: "rewrite", phAccess: "access", phBalancer: "balancer", phResponse: "response",
	phClusterListener: "cluster_listener", phHeaderFilter: "header_filter", phBodyFilter: "body_filter",
	phLog: "log", phPreread: "preread", phError: "error", phAdminAPI: "admin_api",
}

func (p phase) String() string {
	if n, ok := phaseNames[p]; ok {
		return n
	}
	return "'unknown phase'"
}

// names lists the phases of a mask in bit order, as get_phases_names does
// (kong/pdk/private/phases.lua).
func (p phase) names() string {
	var out []string
	for bit := phase(1); bit != 0 && bit <= 1<<30; bit <<= 1 {
		if p&bit != 0 {
			if n, ok := phaseNames[bit]; ok {
				out = append(out, n)
			}
		}
	}
	return strings.Join(out, ", ")
}

// checkPhase is check_phase of kong/pdk/private/phases.lua.
func checkPhase(current, accepted phase) error {
	if current&accepted != 0 {
		return nil
	}
	return luaError(fmt.Sprintf("function cannot be called in %s phase (only in: %s)", current, accepted.names()))
}

// checkNotPhase is check_not_phase of kong/pdk/private/phases.lua.
func checkNotPhase(current, rejected phase) error {
	if current&rejected == 0 {
		return nil
	}
	return luaError(fmt.Sprintf("function cannot be called in %s phase (can be called in any phases except: %s)",
		current, rejected.names()))
}

// Header names of constants.HEADERS (kong/constants.lua).
const (
	hdrProxyLatency     = "X-Kong-Proxy-Latency"
	hdrResponseLatency  = "X-Kong-Response-Latency"
	hdrUpstreamLatency  = "X-Kong-Upstream-Latency"
	hdrConsumerID       = "X-Consumer-ID"
	hdrConsumerCustomID = "X-Consumer-Custom-ID"
	hdrConsumerUsername = "X-Consumer-Username"
	hdrCredentialID     = "X-Credential-Identifier"
	hdrAnonymous        = "X-Anonymous-Consumer"
	hdrRequestID        = "X-Kong-Request-Id"
)

// httpErrorMessages is HTTP_ERROR_MESSAGES of kong/pdk/response.lua
// (kong.response.error); kong/error_handlers.lua's BODIES agree on the
// statuses both list.
var httpErrorMessages = map[int]string{
	400: "Bad request", 401: "Unauthorized", 402: "Payment required", 403: "Forbidden",
	404: "Not found", 405: "Method not allowed", 406: "Not acceptable",
	407: "Proxy authentication required", 408: "Request timeout", 409: "Conflict", 410: "Gone",
	411: "Length required", 412: "Precondition failed", 413: "Payload too large", 414: "URI too long",
	415: "Unsupported media type", 416: "Range not satisfiable", 417: "Expectation failed",
	418: "I'm a teapot", 421: "Misdirected request", 422: "Unprocessable entity", 423: "Locked",
	424: "Failed dependency", 425: "Too early", 426: "Upgrade required", 428: "Precondition required",
	429: "Too many requests", 431: "Request header fields too large",
	451: "Unavailable for legal reasons", 494: "Request header or cookie too large",
	500: "An unexpected error occurred", 501: "Not implemented",
	502: "An invalid response was received from the upstream server",
	503: "The upstream server is currently unavailable",
	504: "The upstream server is timing out", 505: "HTTP version not supported",
	506: "Variant also negotiates", 507: "Insufficient storage", 508: "Loop detected",
	510: "Not extended", 511: "Network authentication required",
}

// errorMessage is get_http_error_message (kong/pdk/response.lua) and get_body
// (kong/error_handlers.lua).
func errorMessage(status int) string {
	if m, ok := httpErrorMessages[status]; ok {
		return m
	}
	return fmt.Sprintf("The upstream server responded with %d", status)
}

// MIME types and error templates of kong/tools/http.lua.
const (
	mimeJSON  = "application/json; charset=utf-8"
	mimeHTML  = "text/html; charset=utf-8"
	mimePlain = "text/plain; charset=utf-8"
	mimeXML   = "application/xml; charset=utf-8"
)

var mimeTypes = map[string]string{
	"application/grpc": "",
	"text/html":        mimeHTML,
	"application/json": mimeJSON,
	"text/plain":       mimePlain,
	"application/xml":  mimeXML,
	"application":      mimeJSON,
	"text":             mimePlain,
	"default":          mimeJSON,
}

var errorTemplates = map[string]string{
	mimeHTML: "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n" +
		"  </head>\n  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n    <p>request_id: %s</p>\n  </body>\n</html>\n",
	mimeJSON:  "{\n  \"message\":\"%s\",\n  \"request_id\":\"%s\"\n}",
	mimePlain: "%s\nrequest_id: %s\n",
	mimeXML: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>%s</message>\n" +
		"  <requestid>%s</requestid>\n</error>\n",
}

// getMimeType is get_mime_type of kong/tools/http.lua (use_default = true).
func getMimeType(contentHeader string) string {
	contentHeader = strings.TrimSpace(contentHeader)
	contentHeader, _, _ = strings.Cut(contentHeader, ";")
	entries := strings.Split(contentHeader, "/")
	var mt string
	var ok bool
	if len(entries) > 1 {
		if entries[1] == "*" {
			if entries[0] == "*" {
				mt, ok = mimeTypes["default"], true
			} else {
				mt, ok = mimeTypes[entries[0]]
			}
		} else {
			mt, ok = mimeTypes[contentHeader]
		}
	}
	if ok {
		return mt
	}
	return mimeTypes["default"]
}

var acceptValueRe = regexp.MustCompile(`(?i)^((?:[a-z0-9][a-z0-9!#$&^_+.-]+|\*)\s*/\s*(?:[a-z0-9][a-z0-9!#$&^_+.-]+|\*))` +
	`(?:\s*;\s*q\s*=\s*(1(?:\.0{0,3}|)|0(?:\.\d{0,3}|))|\s*;\s*[a-z0-9][a-z0-9!#$&^_+.-]+(?:=[^;]*|))*`)

// getResponseType is get_response_type of kong/tools/http.lua: the MIME type
// of Kong's own error bodies, negotiated from Accept (highest q wins, the
// first on a tie).
func getResponseType(accept string, present bool) string {
	contentType := mimeTypes["default"]
	if !present {
		return contentType
	}
	maxQ := 0.0
	for _, v := range strings.Split(accept, ",") {
		v = strings.TrimSpace(v)
		m := acceptValueRe.FindStringSubmatch(v)
		if m == nil {
			continue
		}
		q := 1.0
		if m[2] != "" {
			if f, err := strconv.ParseFloat(m[2], 64); err == nil {
				q = f
			}
		}
		if q > maxQ {
			maxQ = q
			contentType = getMimeType(strings.ReplaceAll(m[1], " ", ""))
		}
	}
	return contentType
}

// errorBody formats one of Kong's error templates: kong.conf's
// error_template_json replaces the JSON one (get_error_template in
// kong/tools/http.lua).
func (n *Node) errorBody(mime, message, requestID string) string {
	t, ok := errorTemplates[mime]
	if mime == mimeJSON && n.errorTemplateJSON != "" {
		t, ok = n.errorTemplateJSON, true
	}
	if !ok {
		return ""
	}
	return fmt.Sprintf(t, message, requestID)
}
