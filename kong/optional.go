package kong

import (
	"github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/types/known/structpb"
)

// OptionalPDK is the part of the PDK used only by features a route may
// configure: access rules, the protected-resource metadata and the log
// fields. A route configured without them makes none of these calls.
type OptionalPDK interface {
	// ServiceResponseBody is the buffered upstream answer (Response phase).
	ServiceResponseBody() ([]byte, error)
	// RequestPath is the normalized path the client asked for.
	RequestPath() (string, error)
	// ForwardedScheme is the scheme the client used (X-Forwarded-Proto from
	// trusted_ips, else the connection's).
	ForwardedScheme() (string, error)
	// AuthenticatedGroups is kong.ctx.shared.authenticated_groups, the
	// groups auth plugins such as ldap-auth record for the acl plugin.
	AuthenticatedGroups() ([]string, error)
	// SetSerializeValue adds key to what kong.log.serialize() returns, so
	// Kong's logging plugins send it.
	SetSerializeValue(key string, value map[string]any) error
	// SetUpstreamHeaders sets request headers, each to its values, in one
	// call (kong.service.request.set_headers); no values removes the header.
	// Kong then shows them to later plugins too (ngx.req.set_header). Never
	// Host: Kong stores its array value in ngx.var.upstream_host as
	// "table: 0x..." (SetUpstreamHeader is the one for Host).
	SetUpstreamHeaders(headers map[string][]string) error
}

func (a Adapter) ServiceResponseBody() ([]byte, error) { return a.k.ServiceResponse.GetRawBody() }

func (a Adapter) RequestPath() (string, error) { return a.k.Request.GetPath() }

func (a Adapter) ForwardedScheme() (string, error) { return a.k.Request.GetForwardedScheme() }

func (a Adapter) SetUpstreamHeaders(headers map[string][]string) error {
	return a.k.ServiceRequest.SetHeaders(headers)
}

func (a Adapter) AuthenticatedGroups() ([]string, error) {
	v, err := a.k.Ctx.GetSharedAny("authenticated_groups")
	if err != nil {
		return nil, err
	}
	return stringList(v), nil
}

// stringList reads a Lua array of strings (a JSON list), ignoring anything
// else; a Lua table with string keys arrives as a map: its values count.
func stringList(v any) []string {
	var out []string
	switch l := v.(type) {
	case []any:
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	case map[string]any:
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	case string:
		out = append(out, l)
	}
	return out
}

// SetSerializeValue is kong.log.set_serialize_value(key, value): go-pdk
// v0.11.2 ships no wrapper for it, so the call is made with the protocol's
// own KV message, as its other wrappers do.
func (a Adapter) SetSerializeValue(key string, value map[string]any) error {
	v, err := structpb.NewValue(value)
	if err != nil {
		return err
	}
	return a.k.Log.Ask(`kong.log.set_serialize_value`, &kong_plugin_protocol.KV{K: key, V: v}, nil)
}
