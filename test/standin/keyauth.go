package standin

import (
	"fmt"
	"net/url"
	"strings"
)

// keyAuthSchema is kong/plugins/key-auth/schema.lua in the JSON form of a
// dumped schema (typedefs.no_consumer, protocols_http, header_name).
var keyAuthSchema = map[string]any{
	"name": "key-auth",
	"fields": []any{
		map[string]any{"consumer": map[string]any{"type": "foreign", "reference": "consumers", "eq": nil}},
		map[string]any{"protocols": map[string]any{"type": "set", "required": true,
			"default":  []any{"grpc", "grpcs", "http", "https"},
			"elements": map[string]any{"type": "string", "one_of": []any{"grpc", "grpcs", "http", "https", "ws", "wss"}}}},
		map[string]any{"config": map[string]any{"type": "record", "fields": []any{
			map[string]any{"key_names": map[string]any{"type": "array", "required": true, "default": []any{"apikey"},
				"elements": map[string]any{"type": "string", "match": "^[A-Za-z0-9_-]+$"}}},
			map[string]any{"hide_credentials": map[string]any{"type": "boolean", "required": true, "default": false}},
			map[string]any{"anonymous": map[string]any{"type": "string"}},
			map[string]any{"key_in_header": map[string]any{"type": "boolean", "required": true, "default": true}},
			map[string]any{"key_in_query": map[string]any{"type": "boolean", "required": true, "default": true}},
			map[string]any{"key_in_body": map[string]any{"type": "boolean", "required": true, "default": false}},
			map[string]any{"run_on_preflight": map[string]any{"type": "boolean", "required": true, "default": true}},
			map[string]any{"realm": map[string]any{"type": "string", "required": false}},
		}}},
	},
}

// keyAuthPriority is KeyAuthHandler.PRIORITY (kong/plugins/key-auth/handler.lua).
const keyAuthPriority = 1250

type authFailure struct {
	status  int
	message string
	headers map[string][]string
}

// keyAuthAccess is KeyAuthHandler:access of Kong 3.9.3. It returns a Lua
// error when the handler would raise one.
func (n *Node) keyAuthAccess(r *reqCtx, conf map[string]any) error {
	if run, _ := conf["run_on_preflight"].(bool); !run && r.method == "OPTIONS" {
		return nil
	}
	if anon, ok := conf["anonymous"].(string); ok && anon != "" {
		// logical_OR_authentication
		if r.ctx["authenticated_credential"] != nil {
			return nil
		}
		if fail := n.keyAuthenticate(r, conf); fail != nil {
			// set_anonymous_consumer: kong.client.load_consumer(anonymous, true)
			var consumer *Consumer
			if uuidRe.MatchString(anon) {
				for _, c := range n.deck.Consumers {
					if c.ID == anon {
						consumer = c
					}
				}
			}
			if consumer == nil {
				consumer = n.deck.ConsumerByUsername(anon)
			}
			if consumer == nil {
				// set_consumer(nil) -> kong.client.authenticate(nil, nil)
				return luaError("either credential or consumer must be provided")
			}
			setConsumer(r, consumer, nil)
		}
		return nil
	}
	if fail := n.keyAuthenticate(r, conf); fail != nil {
		r.kongError(fail.status, fail.message, fail.headers)
	}
	return nil
}

// keyAuthenticate is do_authentication.
func (n *Node) keyAuthenticate(r *reqCtx, conf map[string]any) *authFailure {
	www := "Key"
	if realm, ok := conf["realm"].(string); ok {
		www = fmt.Sprintf(`Key realm="%s"`, realm)
	}
	unauthorized := func(msg string) *authFailure {
		return &authFailure{status: 401, message: msg, headers: map[string][]string{"WWW-Authenticate": {www}}}
	}
	keyNames, _ := conf["key_names"].([]any)
	if keyNames == nil {
		return &authFailure{status: 500, message: "Invalid plugin configuration"}
	}
	inHeader, _ := conf["key_in_header"].(bool)
	inQuery, _ := conf["key_in_query"].(bool)
	hide, _ := conf["hide_credentials"].(bool)
	headers := r.headers.luaTable(100)
	query := queryTable(r.args, 100)
	key := ""
	for _, kn := range keyNames {
		name, _ := kn.(string)
		var v any
		if inHeader {
			v = luaTableGet(headers, name)
		}
		if v == nil && inQuery {
			v = query[name]
		}
		switch v := v.(type) {
		case string:
			key = v
			if hide {
				r.args = searchRemove(r.args, name)
				r.headers.clear(name)
			}
		case []any:
			return unauthorized("Duplicate API key found")
		default:
			continue
		}
		break
	}
	if key == "" {
		return unauthorized("No API key found in request")
	}
	var cred *KeyAuthCredential
	for _, c := range n.deck.Credentials {
		if c.Key == key {
			cred = c
		}
	}
	if cred == nil {
		return unauthorized("Unauthorized")
	}
	setConsumer(r, cred.Consumer, cred)
	return nil
}

// searchRemove drops every argument called name from a query string
// (kong.service.request.clear_query_arg).
func searchRemove(args, name string) string {
	var keep []string
	for _, part := range strings.Split(args, "&") {
		k, _, _ := strings.Cut(part, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == name {
			continue
		}
		if part != "" {
			keep = append(keep, part)
		}
	}
	return strings.Join(keep, "&")
}

// setConsumer is set_consumer of the key-auth handler: kong.client.authenticate
// and the X-Consumer-* headers, through kong.service.request.set_header, so
// kong.request.get_headers shows them too.
func setConsumer(r *reqCtx, consumer *Consumer, cred *KeyAuthCredential) {
	if consumer != nil {
		r.ctx["authenticated_consumer"] = copyEntity(consumer.entity)
	} else {
		delete(r.ctx, "authenticated_consumer")
	}
	if cred != nil {
		r.ctx["authenticated_credential"] = copyEntity(cred.entity)
	} else {
		delete(r.ctx, "authenticated_credential")
	}
	setOrClear := func(name, value string) {
		if value != "" {
			r.headers.set(name, []string{value})
		} else {
			r.headers.clear(name)
		}
	}
	if consumer != nil {
		setOrClear(hdrConsumerID, consumer.ID)
		setOrClear(hdrConsumerCustomID, consumer.CustomID)
		setOrClear(hdrConsumerUsername, consumer.Username)
	} else {
		setOrClear(hdrConsumerID, "")
		setOrClear(hdrConsumerCustomID, "")
		setOrClear(hdrConsumerUsername, "")
	}
	if cred != nil {
		setOrClear(hdrCredentialID, cred.ID)
		r.headers.clear(hdrAnonymous)
	} else {
		r.headers.clear(hdrCredentialID)
		r.headers.set(hdrAnonymous, []string{"true"})
	}
}
