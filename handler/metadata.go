package handler

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/schema"
)

// wellKnownPRM is RFC 9728's well-known path of protected-resource metadata.
const wellKnownPRM = "/.well-known/oauth-protected-resource"

// resourceMetadata serves RFC 9728 protected-resource metadata for the route
// and names it in auth envelopes' WWW-Authenticate, so that OAuth clients
// (Claude, VS Code, MCP Inspector, mcp-remote) find the authorization server.
type resourceMetadata struct {
	cfg schema.ResourceMetadata
	// fixedURL is the metadata URL when config.resource is set: then no
	// request needs a call to build it.
	fixedURL string
}

func newResourceMetadata(c schema.ResourceMetadata) (*resourceMetadata, error) {
	const path = "config.auth.resource_metadata"
	fieldErr := func(field, format string, args ...any) error {
		return &schema.FieldError{Path: path + "." + field, Msg: fmt.Sprintf(format, args...)}
	}
	if len(c.AuthorizationServers) == 0 {
		switch {
		case len(c.ScopesSupported) > 0:
			return nil, fieldErr("authorization_servers", "must be set when scopes_supported is set")
		case c.Resource != "":
			return nil, fieldErr("authorization_servers", "must be set when resource is set")
		}
		return nil, nil
	}
	for i, s := range c.AuthorizationServers {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fieldErr(fmt.Sprintf("authorization_servers[%d]", i), "must be an http or https URL (got %q)", s)
		}
	}
	m := &resourceMetadata{cfg: c}
	if c.Resource != "" {
		u, err := url.Parse(c.Resource)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
			return nil, fieldErr("resource", "must be an http or https URL without fragment (got %q)", c.Resource)
		}
		m.fixedURL = u.Scheme + "://" + u.Host + wellKnownPRM + strings.TrimSuffix(u.EscapedPath(), "/")
	}
	return m, nil
}

// document is the JSON metadata for resource.
func (m *resourceMetadata) document(resource string) []byte {
	doc := struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported,omitempty"`
		BearerMethods        []string `json:"bearer_methods_supported"`
	}{resource, m.cfg.AuthorizationServers, m.cfg.ScopesSupported, []string{"header"}}
	b, _ := json.Marshal(doc)
	return b
}

// serveMetadata answers a request for the metadata document, before the
// anonymous check (the client has no credential yet), and reports whether it
// did. Only bodyless requests without a session can be such a request: they
// pay one call (the path) while metadata is configured; the document itself
// costs one more (the scheme) unless config.resource is set.
func (p *Plugin) serveMetadata(k kong.PDK, r *request) (exited bool) {
	if p.metadata == nil || r.mayHaveBody() || len(r.headers[hSessionID]) > 0 {
		return false
	}
	path, err := k.RequestPath()
	if err != nil {
		logger.Error("reading request path", "err", err)
		return false
	}
	rest, ok := strings.CutPrefix(path, wellKnownPRM)
	if !ok || (rest != "" && rest[0] != '/') {
		return false
	}
	cors := map[string][]string{
		"Access-Control-Allow-Origin":  {"*"},
		"Access-Control-Allow-Methods": {"GET, OPTIONS"},
		"Access-Control-Allow-Headers": {"MCP-Protocol-Version, Authorization"},
	}
	if r.method == "OPTIONS" { // a browser client's preflight
		k.Exit(204, nil, cors)
		return true
	}
	resource := p.metadata.cfg.Resource
	if resource == "" {
		origin, err := p.origin(k, r)
		if err != nil {
			logger.Error("reading request scheme", "err", err)
			return false
		}
		resource = origin + rest
	}
	cors["Content-Type"] = []string{"application/json"}
	cors["Cache-Control"] = []string{"max-age=300"}
	metadataServed.Inc()
	k.Exit(200, p.metadata.document(resource), cors)
	return true
}

// origin is scheme://host as the client reached Kong.
func (p *Plugin) origin(k kong.PDK, r *request) (string, error) {
	scheme, err := k.ForwardedScheme()
	if err != nil {
		return "", err
	}
	host := first(r.headers, "host")
	if !validHost(host) || (scheme != "http" && scheme != "https") {
		return "", fmt.Errorf("cannot build a URL from scheme %q and Host %q", scheme, host)
	}
	return scheme + "://" + host, nil
}

// validHost accepts what a URL authority may hold (name or IP, port), so a
// forged Host cannot break the quoted WWW-Authenticate value or the JSON.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// wwwAuthenticate is the WWW-Authenticate value of auth envelopes: the
// configured one, else one naming the metadata document of this endpoint
// (two calls, path and scheme, unless config.resource is set), else none.
func (p *Plugin) wwwAuthenticate(k kong.PDK, r *request) string {
	if v := p.cfg.Auth.WWWAuthenticate; v != "" || p.metadata == nil {
		return v
	}
	u := p.metadata.fixedURL
	if u == "" {
		path, err := k.RequestPath()
		if err != nil {
			logger.Error("reading request path", "err", err)
			return ""
		}
		origin, err := p.origin(k, r)
		if err != nil {
			logger.Error("reading request scheme", "err", err)
			return ""
		}
		u = origin + wellKnownPRM + strings.TrimSuffix(path, "/")
	}
	return `Bearer resource_metadata="` + u + `"`
}
