package standin

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// serializeValue is an entry of ctx.serialize_values (kong.log.set_serialize_value).
type serializeValue struct {
	key   string
	value any
	mode  string
}

// savedData is what the log closure of build_phases
// (kong/runloop/plugin_servers/plugin.lua) hands to its timer.
type savedData struct {
	pluginName      string
	serialized      string // cjson.encode(kong.log.serialize())
	serializeData   map[string]any
	ngxCtx          map[string]any // clone(ngx.ctx)
	ctxShared       map[string]any // kong.ctx.shared (the same table)
	requestHeaders  map[string]any // ngx.req.get_headers()
	responseHeaders map[string]any // ngx.resp.get_headers()
	responseStatus  int            // ngx.status
	reqStartTime    float64        // ngx.req.start_time()
}

// arrayMT marks a Lua table carrying cjson.array_mt (encoded [] when empty).
type arrayMT []any

// serialize is kong.log.serialize() (kong/pdk/log.lua, http subsystem),
// computed in the request's log phase.
func (r *reqCtx) serialize() map[string]any {
	requestHeaders := r.headers.luaTable(100)
	if _, ok := requestHeaders["authorization"]; ok {
		requestHeaders["authorization"] = "REDACTED"
	}
	if _, ok := requestHeaders["proxy-authorization"]; ok {
		requestHeaders["proxy-authorization"] = "REDACTED"
	}
	responseHeaders := r.respHeaders.luaTable(100)

	upstreamURI := r.upstreamURI
	if upstreamURI != "" && !strings.Contains(upstreamURI, "?") {
		if strings.HasSuffix(r.requestURI, "?") {
			upstreamURI += "?"
		} else if r.args != "" {
			upstreamURI += "?" + r.args
		}
	}
	// var.upstream_status or ctx.buffered_status or "": the parent request
	// of a buffered proxying has no upstream variables
	var upstreamStatus any = ""
	if r.upstreamStatus != "" && !r.buffered {
		upstreamStatus = r.upstreamStatus
	} else if st, ok := toFloat(r.ctx["buffered_status"]); ok {
		upstreamStatus = st
	}
	method := r.method
	if r.ctxTruthy("KONG_UNEXPECTED") && r.httpVersion < 2 {
		method = r.origMethod
	}
	var kongLatency any = 0.0
	if r.proxyLatency > 0 || r.ctxTruthy("KONG_PROXIED") {
		kongLatency = math.Round(r.proxyLatency)
	} else if r.responseLatency > 0 {
		kongLatency = math.Round(r.responseLatency)
	}
	proxyLat := -1.0
	if r.ctxTruthy("KONG_PROXIED") {
		proxyLat = math.Round(r.waitingTime)
	}
	requestTime := math.Round(float64(time.Since(r.startTime).Milliseconds()))
	root := map[string]any{
		"request": map[string]any{
			"id":          r.id,
			"uri":         r.requestURI,
			"url":         fmt.Sprintf("http://%s:%d%s", r.host, r.serverPort, r.requestURI),
			"querystring": queryTable(r.args, 100),
			"method":      method,
			"headers":     requestHeaders,
			"size":        float64(r.reqLength),
		},
		"upstream_uri":    upstreamURI,
		"upstream_status": upstreamStatus,
		"response": map[string]any{
			"status":  float64(r.status),
			"headers": responseHeaders,
			"size":    float64(r.bytesSent),
		},
		"latencies": map[string]any{
			"kong":    kongLatency,
			"proxy":   proxyLat,
			"request": requestTime,
			"receive": math.Round(r.receiveTime),
		},
		"client_ip":      r.remoteIP,
		"started_at":     math.Floor(r.tProcessingStart),
		"source":         map[string]string{"error": "kong", "exit": "kong", "service": "upstream"}[r.responseSource()],
		"workspace":      defaultWorkspaceID,
		"workspace_name": "default",
	}
	if r.balancer != nil {
		tries := arrayMT{}
		for _, t := range r.balancer.tries {
			e := map[string]any{"balancer_start": math.Floor(t.BalancerStart), "balancer_start_ns": t.BalancerStartNS}
			if t.IP != "" {
				e["ip"] = t.IP
				e["port"] = float64(t.Port)
				e["balancer_latency"] = math.Round(t.BalancerLatency)
				e["balancer_latency_ns"] = t.BalancerLatencyNS
			}
			if t.State != "" {
				e["state"] = t.State
				e["code"] = float64(t.Code)
			}
			tries = append(tries, e)
		}
		root["tries"] = tries
	}
	if cred, ok := r.ctx["authenticated_credential"].(map[string]any); ok {
		ae := map[string]any{"id": cred["id"]}
		// build_authenticated_entity reads credential.consumer_id, then the
		// misspelt ctx.authenticate_consumer: key-auth credentials have
		// neither, so consumer_id stays out
		if cid, ok := cred["consumer_id"]; ok {
			ae["consumer_id"] = cid
		}
		root["authenticated_entity"] = ae
	}
	if m, ok := r.ctx["route"].(map[string]any); ok {
		root["route"] = deepCopy(m)
	}
	if m, ok := r.ctx["service"].(map[string]any); ok {
		root["service"] = deepCopy(m)
	}
	if m, ok := r.ctx["authenticated_consumer"].(map[string]any); ok {
		root["consumer"] = deepCopy(m)
	}
	for _, sv := range r.serializes {
		editResult(root, sv)
	}
	return root
}

// editResult applies one kong.log.set_serialize_value (edit_result).
func editResult(root map[string]any, sv serializeValue) {
	parts := strings.Split(sv.key, ".")
	node := root
	for _, p := range parts[:len(parts)-1] {
		next, ok := node[p]
		if !ok || next == nil {
			if sv.mode == "replace" {
				return
			}
			m := map[string]any{}
			node[p] = m
			node = m
			continue
		}
		m, ok := next.(map[string]any)
		if !ok {
			return
		}
		node = m
	}
	last := parts[len(parts)-1]
	_, exists := node[last]
	if sv.mode == "set" || (sv.mode == "add" && !exists) || (sv.mode == "replace" && exists) {
		if sv.value == nil {
			delete(node, last)
		} else {
			node[last] = sv.value
		}
	}
}

// encodeCJSON encodes a Lua value as OpenResty's lua-cjson does: "/" is
// escaped, numbers use %.14g, empty tables are objects unless they carry
// cjson.array_mt. Object keys are sorted (cjson follows Lua's table order).
func encodeCJSON(v any) []byte {
	var b bytes.Buffer
	cjsonValue(&b, v)
	return b.Bytes()
}

func cjsonValue(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case string:
		cjsonString(b, v)
	case float64:
		b.WriteString(cjsonNumber(v))
	case int64:
		b.WriteString(cjsonNumber(float64(v)))
	case int:
		b.WriteString(cjsonNumber(float64(v)))
	case arrayMT:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			cjsonValue(b, e)
		}
		b.WriteByte(']')
	case []any:
		if len(v) == 0 {
			b.WriteString("{}")
			return
		}
		cjsonValue(b, arrayMT(v))
	case map[string]string:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = e
		}
		cjsonValue(b, m)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			cjsonString(b, k)
			b.WriteByte(':')
			cjsonValue(b, v[k])
		}
		b.WriteByte('}')
	default:
		cjsonString(b, fmt.Sprint(v))
	}
}

func cjsonNumber(f float64) string {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return "null"
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e14 {
		return strconv.FormatInt(int64(f), 10)
	}
	s := strconv.FormatFloat(f, 'g', 14, 64)
	// C's %.14g trims trailing zeros of the mantissa, as 'g' does
	return s
}

func cjsonString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '/':
			b.WriteString(`\/`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 || c == 0x7f {
				fmt.Fprintf(b, `\u%04x`, c)
			} else if c < utf8.RuneSelf {
				b.WriteByte(c)
			} else {
				_, size := utf8.DecodeRuneInString(s[i:])
				b.WriteString(s[i : i+size])
				i += size
				continue
			}
		}
		i++
	}
	b.WriteByte('"')
}
