package standin

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
)

// luaErr is a Lua error raised while Kong runs a PDK function for the
// plugin (a phase check, a bad argument, an API not available in a timer).
// call_pdk does not catch it: the plugin's handler fails (a 500 in access and
// response, an error log line in the log timer).
type luaErr struct{ msg string }

func (e *luaErr) Error() string { return e.msg }

func luaError(msg string) error { return &luaErr{msg: msg} }

// call is one PDK call of an event.
type call struct {
	r      *reqCtx
	p      *collectedPlugin
	method string
	args   []byte
}

func (c *call) phase() phase { return c.r.phase }

func (c *call) check(accepted phase) error { return checkPhase(c.r.phase, accepted) }

// clientAPI is the guard of kong.client's connection getters: any phase but
// init_worker, and only while the request is live (not in the log timer).
func (c *call) clientAPI() error {
	if err := checkNotPhase(c.phase(), phInitWorker); err != nil {
		return err
	}
	return c.r.requestAPI()
}

type pdkHandler func(c *call) (proto.Message, error)

// pdkMethod is an entry of rpc_service (load_service in pb_rpc.lua).
type pdkMethod struct {
	name    string // Kong's lower_name, the frame the plugin sends
	rpc     string // Kong.<Rpc_Name> in pluginsocket.proto
	input   protoreflect.FullName
	output  protoreflect.FullName
	handler pdkHandler
}

var (
	lowerNameRe = regexp.MustCompile(`([a-z][0-9]*)([A-Z])`)
	pdkMethods  map[string]*pdkMethod // set by init, after pdkHandlers
)

// loadService is load_service of pb_rpc.lua: every rpc of the Kong service
// in pluginsocket.proto, named by its MethodName option or by
// "Kong.Client_GetIp" -> "kong.client.get_ip".
func loadService() map[string]*pdkMethod {
	out := map[string]*pdkMethod{}
	fd := pb.File_server_kong_plugin_protocol_pluginsocket_proto
	svc := fd.Services().ByName("Kong")
	for i := 0; i < svc.Methods().Len(); i++ {
		m := svc.Methods().Get(i)
		full := "Kong." + string(m.Name())
		name := ""
		if opts := m.Options(); opts != nil && proto.HasExtension(opts, pb.E_MethodName) {
			name, _ = proto.GetExtension(opts, pb.E_MethodName).(string)
		}
		if name == "" {
			name = strings.ReplaceAll(full, "_", ".")
			name = strings.ToLower(lowerNameRe.ReplaceAllString(name, "${1}_${2}"))
		}
		out[name] = &pdkMethod{name: name, rpc: full, input: m.Input().FullName(), output: m.Output().FullName(),
			handler: pdkHandlers[name]}
	}
	return out
}

// PDKMethods lists the PDK method names the plugin socket serves (every rpc
// of pluginsocket.proto's Kong service), sorted.
func PDKMethods() []string {
	out := make([]string, 0, len(pdkMethods))
	for k := range pdkMethods {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- decoding arguments (pb_unwrap) and encoding replies (pb_wrap) ----

func decode[T proto.Message](c *call, m T) (T, error) {
	if err := proto.Unmarshal(c.args, m); err != nil {
		return m, luaError("assertion failed! " + err.Error())
	}
	return m, nil
}

// luaValue is structpb_value of pb_unwrap: false becomes nil (`v.bool_value
// or ...`), null becomes the enum name "NULL_VALUE" (lua-protobuf decodes
// enums as names), lists and structs recursively.
func luaValue(v *structpb.Value) any {
	if v == nil {
		return nil
	}
	switch k := v.Kind.(type) {
	case *structpb.Value_BoolValue:
		if k.BoolValue {
			return true
		}
		return nil
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		return k.NumberValue
	case *structpb.Value_NullValue:
		return "NULL_VALUE"
	case *structpb.Value_ListValue:
		return luaList(k.ListValue)
	case *structpb.Value_StructValue:
		return luaStruct(k.StructValue)
	}
	return nil
}

func luaList(l *structpb.ListValue) []any {
	out := []any{}
	for _, e := range l.GetValues() {
		out = append(out, luaValue(e))
	}
	return out
}

func luaStruct(s *structpb.Struct) map[string]any {
	out := map[string]any{}
	for k, v := range s.GetFields() {
		if lv := luaValue(v); lv != nil {
			out[k] = lv
		}
	}
	return out
}

// pbValue is structpb_value of pb_wrap: a Lua table is a list when t[1] is
// set, a struct otherwise (so an empty table is an empty struct).
func pbValue(v any) *structpb.Value {
	switch v := v.(type) {
	case nil:
		return &structpb.Value{Kind: &structpb.Value_NullValue{NullValue: structpb.NullValue(1)}}
	case bool:
		return structpb.NewBoolValue(v)
	case string:
		return structpb.NewStringValue(v)
	case float64:
		return structpb.NewNumberValue(v)
	case int64:
		return structpb.NewNumberValue(float64(v))
	case int:
		return structpb.NewNumberValue(float64(v))
	case []any:
		if len(v) == 0 {
			return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{}})
		}
		return structpb.NewListValue(pbList(v))
	case []string:
		return pbValue(anyList(v))
	case map[string]any:
		return structpb.NewStructValue(pbStruct(v))
	}
	return structpb.NewStringValue(fmt.Sprint(v))
}

func pbList(l []any) *structpb.ListValue {
	out := &structpb.ListValue{}
	for _, e := range l {
		out.Values = append(out.Values, pbValue(e))
	}
	return out
}

func pbStruct(m map[string]any) *structpb.Struct {
	out := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range m {
		out.Fields[k] = pbValue(v)
	}
	return out
}

func pbString(s string) *pb.String { return &pb.String{V: s} }

// optString answers a String reply for a Lua value that may be nil.
func optString(s string, ok bool) proto.Message {
	if !ok {
		return nil
	}
	return pbString(s)
}

func pbInt(i int) *pb.Int { return &pb.Int{V: int32(i)} }

func entityString(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func entityInt(m map[string]any, k string) int64 {
	f, _ := toFloat(m[k])
	return int64(f)
}

func entityStrings(m map[string]any, k string) []string {
	raw, _ := m[k].([]any)
	out := make([]string, 0, len(raw))
	for _, e := range raw {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func consumerPB(m map[string]any) proto.Message {
	if m == nil {
		return nil
	}
	return &pb.Consumer{Id: entityString(m, "id"), CreatedAt: entityInt(m, "created_at"),
		Username: entityString(m, "username"), CustomId: entityString(m, "custom_id"), Tags: entityStrings(m, "tags")}
}

func credentialPB(m map[string]any) proto.Message {
	if m == nil {
		return nil
	}
	// a key-auth credential has consumer = {id = ...} and no consumer_id,
	// so the plugin gets an empty ConsumerId
	return &pb.AuthenticatedCredential{Id: entityString(m, "id"), ConsumerId: entityString(m, "consumer_id")}
}

func routePB(m map[string]any) proto.Message {
	if m == nil {
		return nil
	}
	rt := &pb.Route{Id: entityString(m, "id"), CreatedAt: entityInt(m, "created_at"), UpdatedAt: entityInt(m, "updated_at"),
		Name: entityString(m, "name"), Protocols: entityStrings(m, "protocols"), Methods: entityStrings(m, "methods"),
		Hosts: entityStrings(m, "hosts"), Paths: entityStrings(m, "paths"),
		HttpsRedirectStatusCode: int32(entityInt(m, "https_redirect_status_code")),
		RegexPriority:           int32(entityInt(m, "regex_priority")),
		Snis:                    entityStrings(m, "snis"), Tags: entityStrings(m, "tags")}
	rt.StripPath, _ = m["strip_path"].(bool)
	rt.PreserveHost, _ = m["preserve_host"].(bool)
	if s, ok := m["service"].(map[string]any); ok {
		rt.Service = &pb.ServiceKey{Id: entityString(s, "id")}
	}
	return rt
}

func servicePB(m map[string]any) proto.Message {
	if m == nil {
		return nil
	}
	return &pb.Service{Id: entityString(m, "id"), CreatedAt: entityInt(m, "created_at"), UpdatedAt: entityInt(m, "updated_at"),
		Name: entityString(m, "name"), Retries: int32(entityInt(m, "retries")), Protocol: entityString(m, "protocol"),
		Host: entityString(m, "host"), Port: int32(entityInt(m, "port")), Path: entityString(m, "path"),
		ConnectTimeout: int32(entityInt(m, "connect_timeout")), WriteTimeout: int32(entityInt(m, "write_timeout")),
		ReadTimeout: int32(entityInt(m, "read_timeout")), Tags: entityStrings(m, "tags")}
}

// headerValueStrings validates a header value as validate_header
// (kong/pdk/private/checks.lua) and normalizes it (normalize_multi_header).
func headerValueStrings(name string, v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case float64, bool:
		return []string{luaToString(v)}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			switch e.(type) {
			case string, float64, bool:
				out = append(out, luaToString(e))
			default:
				return nil, luaError(fmt.Sprintf("invalid header value in array %q: got %s, expected string, number or boolean",
					name, luaType(e)))
			}
		}
		return out, nil
	}
	return nil, luaError(fmt.Sprintf("invalid header value for %q: got %s, expected array of string, string, number or boolean",
		name, luaType(v)))
}

func luaType(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case string:
		return "string"
	case float64, int64, int:
		return "number"
	case bool:
		return "boolean"
	}
	return "table"
}

func validateHeaderName(name string) error {
	if name == "" {
		return luaError("invalid header name \"\": got string, expected string")
	}
	return nil
}

// ---- the handlers ----

// authAndLater is AUTH_AND_LATER of kong/pdk/client.lua.
const authAndLater = phAccess | phHeaderFilter | phResponse | phBodyFilter | phLog

// rewriteAccessHeader is rewrite_access_header of kong/pdk/response.lua.
const rewriteAccessHeader = phRewrite | phAccess | phResponse | phBalancer | phHeaderFilter | phError | phAdminAPI

// headerBodyLog is header_body_log of kong/pdk/response.lua.
const headerBodyLog = phResponse | phHeaderFilter | phBodyFilter | phLog | phError | phAdminAPI

// serviceHeaderBodyLog is header_body_log of kong/pdk/service/response.lua.
const serviceHeaderBodyLog = phResponse | phHeaderFilter | phBodyFilter | phLog

// phasesWithCtx is phases_with_ctx of kong/pdk/log.lua.
const phasesWithCtx = phRewrite | phAccess | phHeaderFilter | phResponse | phBodyFilter | phLog

// beforeContent is before_content of kong/pdk/request.lua.
const beforeContent = phRewrite | phAccess | phResponse | phError | phAdminAPI

const accessAndRewrite = phRewrite | phAccess
const accessRewriteBalancer = phRewrite | phAccess | phBalancer
const routerPhases = phAccess | phHeaderFilter | phResponse | phBodyFilter | phLog

func reqPhase(c *call) error {
	if err := c.check(phRequest); err != nil {
		return err
	}
	return c.r.requestAPI()
}

func logHandler(level int) pdkHandler {
	return func(c *call) (proto.Message, error) {
		l, err := decode(c, &structpb.ListValue{})
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		for _, e := range luaList(l) {
			switch e := e.(type) {
			case map[string]any, []any:
				j, _ := json.Marshal(e)
				b.Write(j)
			default:
				b.WriteString(luaToString(e))
			}
		}
		c.r.node.log.logf(level, "[kong] %s [%s] %s", c.r.logSource(), c.p.plugin.Name, b.String())
		return nil, nil
	}
}

var pdkHandlers map[string]pdkHandler

func init() {
	pdkHandlers = map[string]pdkHandler{
		// kong/pdk/client.lua
		"kong.client.get_ip": func(c *call) (proto.Message, error) {
			if err := c.clientAPI(); err != nil {
				return nil, err
			}
			return pbString(c.r.remoteIP), nil
		},
		"kong.client.get_forwarded_ip": func(c *call) (proto.Message, error) {
			if err := c.clientAPI(); err != nil {
				return nil, err
			}
			return pbString(c.r.remoteIP), nil
		},
		"kong.client.get_port": func(c *call) (proto.Message, error) {
			if err := c.clientAPI(); err != nil {
				return nil, err
			}
			return pbInt(c.r.remotePort), nil
		},
		"kong.client.get_forwarded_port": func(c *call) (proto.Message, error) {
			if err := c.clientAPI(); err != nil {
				return nil, err
			}
			return pbInt(c.r.remotePort), nil
		},
		"kong.client.get_credential": func(c *call) (proto.Message, error) {
			if err := c.check(authAndLater); err != nil {
				return nil, err
			}
			m, _ := c.r.ctx["authenticated_credential"].(map[string]any)
			return credentialPB(m), nil
		},
		"kong.client.load_consumer": func(c *call) (proto.Message, error) {
			if err := c.check(authAndLater); err != nil {
				return nil, err
			}
			spec, err := decode(c, &pb.ConsumerSpec{})
			if err != nil {
				return nil, err
			}
			if spec.Id == "" {
				return nil, luaError("consumer_id must be a string")
			}
			isUUID := uuidRe.MatchString(spec.Id)
			if !isUUID && !spec.ByUsername {
				return nil, luaError("cannot load a consumer with an id that is not a uuid")
			}
			for _, cons := range c.r.node.deck.Consumers {
				if isUUID && cons.ID == spec.Id {
					return consumerPB(copyEntity(cons.entity)), nil
				}
			}
			if spec.ByUsername {
				for _, cons := range c.r.node.deck.Consumers {
					if cons.Username == spec.Id {
						return consumerPB(copyEntity(cons.entity)), nil
					}
				}
			}
			return nil, nil
		},
		"kong.client.get_consumer": func(c *call) (proto.Message, error) {
			if err := c.check(authAndLater); err != nil {
				return nil, err
			}
			m, _ := c.r.ctx["authenticated_consumer"].(map[string]any)
			return consumerPB(m), nil
		},
		"kong.client.authenticate": func(c *call) (proto.Message, error) {
			if err := c.check(phAccess); err != nil {
				return nil, err
			}
			a, err := decode(c, &pb.AuthenticateArgs{})
			if err != nil {
				return nil, err
			}
			if a.Consumer == nil && a.Credential == nil {
				return nil, luaError("either credential or consumer must be provided")
			}
			setOrDelete(c.r.ctx, "authenticated_consumer", pbConsumerTable(a.Consumer))
			setOrDelete(c.r.ctx, "authenticated_credential", pbCredentialTable(a.Credential))
			return nil, nil
		},
		"kong.client.get_protocol": func(c *call) (proto.Message, error) {
			if err := c.check(authAndLater); err != nil {
				return nil, err
			}
			route, _ := c.r.ctx["route"].(map[string]any)
			if route == nil {
				return nil, nil
			}
			protos := entityStrings(route, "protocols")
			if len(protos) == 1 {
				return pbString(protos[0]), nil
			}
			if err := c.r.requestAPI(); err != nil { // is_trusted(get_ip())
				return nil, err
			}
			return pbString("http"), nil
		},

		// kong/runloop/plugin_servers/plugin.lua exposed_api: kong.ctx.shared
		"kong.ctx.shared.set": func(c *call) (proto.Message, error) {
			kv, err := decode(c, &pb.KV{})
			if err != nil {
				return nil, err
			}
			setOrDelete(c.r.shared, kv.K, luaValue(kv.V))
			return nil, nil
		},
		"kong.ctx.shared.get": func(c *call) (proto.Message, error) {
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			return pbValue(c.r.shared[s.V]), nil
		},

		// kong/pdk/ip.lua (trusted_ips)
		"kong.ip.is_trusted": func(c *call) (proto.Message, error) {
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			return &pb.Bool{V: c.r.node.isTrusted(s.V)}, nil
		},

		// kong/pdk/log.lua
		"kong.log.alert":  logHandler(lvlAlert),
		"kong.log.crit":   logHandler(lvlCrit),
		"kong.log.err":    logHandler(lvlErr),
		"kong.log.warn":   logHandler(lvlWarn),
		"kong.log.notice": logHandler(lvlNotice),
		"kong.log.info":   logHandler(lvlInfo),
		"kong.log.debug":  logHandler(lvlDebug),
		"kong.log.set_serialize_value": func(c *call) (proto.Message, error) {
			if err := c.check(phasesWithCtx); err != nil {
				return nil, err
			}
			kv, err := decode(c, &pb.KV{})
			if err != nil {
				return nil, err
			}
			c.r.serializes = append(c.r.serializes, serializeValue{key: kv.K, value: luaValue(kv.V), mode: "set"})
			return nil, nil
		},
		"kong.log.serialize": func(c *call) (proto.Message, error) {
			if c.r.saved != nil {
				return pbString(c.r.saved.serialized), nil
			}
			if err := c.check(phLog); err != nil {
				return nil, err
			}
			return pbString(string(encodeCJSON(c.r.serialize()))), nil
		},

		// kong/pdk/nginx.lua and plugin.lua exposed_api
		"kong.nginx.get_var": func(c *call) (proto.Message, error) {
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			if err := c.r.requestAPI(); err != nil {
				return nil, err
			}
			return optString(c.r.variable(s.V)), nil
		},
		"kong.nginx.get_tls1_version_str": func(c *call) (proto.Message, error) {
			return nil, nil // plain HTTP: no TLS version
		},
		"kong.nginx.set_ctx": func(c *call) (proto.Message, error) {
			kv, err := decode(c, &pb.KV{})
			if err != nil {
				return nil, err
			}
			setOrDelete(c.r.ctx, kv.K, luaValue(kv.V))
			return nil, nil
		},
		"kong.nginx.get_ctx": func(c *call) (proto.Message, error) {
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			return pbValue(c.r.ctxValue(s.V)), nil
		},
		"kong.nginx.req_start_time": func(c *call) (proto.Message, error) {
			if c.r.saved != nil {
				return &pb.Number{V: c.r.saved.reqStartTime}, nil
			}
			return &pb.Number{V: float64(c.r.startTime.UnixMilli()) / 1000}, nil
		},
		"kong.nginx.get_subsystem": func(c *call) (proto.Message, error) {
			return pbString("http"), nil
		},

		// kong/pdk/node.lua
		"kong.node.get_id": func(c *call) (proto.Message, error) {
			return pbString(c.r.node.id), nil
		},
		"kong.node.get_memory_stats": func(c *call) (proto.Message, error) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return &pb.MemoryStats{
				LuaSharedDicts: &pb.MemoryStats_LuaSharedDicts{
					Kong:        &pb.MemoryStats_LuaSharedDicts_DictStats{AllocatedSlabs: 40960, Capacity: 5242880},
					KongDbCache: &pb.MemoryStats_LuaSharedDicts_DictStats{AllocatedSlabs: 798720, Capacity: 134217728},
				},
				WorkersLuaVms: []*pb.MemoryStats_WorkerLuaVm{{HttpAllocatedGc: int64(ms.HeapAlloc), Pid: int64(os.Getpid())}},
			}, nil
		},

		// kong/pdk/request.lua
		"kong.request.get_scheme": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			return pbString("http"), nil
		},
		"kong.request.get_host": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			return pbString(c.r.host), nil
		},
		"kong.request.get_port": func(c *call) (proto.Message, error) {
			if err := c.clientAPI(); err != nil {
				return nil, err
			}
			return pbInt(c.r.serverPort), nil
		},
		"kong.request.get_forwarded_scheme": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			if c.r.node.isTrusted(c.r.remoteIP) {
				if v, ok := c.r.headers.first("X-Forwarded-Proto"); ok {
					return pbString(strings.ToLower(v)), nil
				}
			}
			return pbString("http"), nil
		},
		"kong.request.get_forwarded_host": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			if c.r.node.isTrusted(c.r.remoteIP) {
				if v, ok := c.r.headers.first("X-Forwarded-Host"); ok {
					if i := strings.IndexByte(v, '@'); i >= 0 {
						v = v[i+1:]
					}
					if i := strings.IndexByte(v, ':'); i >= 0 {
						v = v[:i]
					}
					return pbString(strings.ToLower(v)), nil
				}
			}
			return pbString(c.r.host), nil
		},
		"kong.request.get_forwarded_port": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			if c.r.node.isTrusted(c.r.remoteIP) {
				if v, ok := c.r.headers.first("X-Forwarded-Port"); ok {
					if p, err := strconv.Atoi(v); err == nil && p >= 1 && p <= 65535 {
						return pbInt(p), nil
					}
				}
			}
			return pbInt(c.r.serverPort), nil
		},
		"kong.request.get_http_version": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			return &pb.Number{V: c.r.httpVersion}, nil
		},
		"kong.request.get_method": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			if c.r.ctxTruthy("KONG_UNEXPECTED") && c.r.httpVersion < 2 {
				return pbString(c.r.origMethod), nil
			}
			return pbString(c.r.method), nil
		},
		"kong.request.get_path": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			u := c.r.requestURI
			if i := strings.IndexByte(u[min(1, len(u)):], '?'); i >= 0 {
				u = u[:i+min(1, len(u))]
			}
			return pbString(normalizePath(u)), nil
		},
		"kong.request.get_path_with_query": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			return pbString(c.r.requestURI), nil
		},
		"kong.request.get_raw_query": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			return pbString(c.r.args), nil
		},
		"kong.request.get_query_arg": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			v := queryTable(c.r.args, 100)[s.V]
			if l, ok := v.([]any); ok {
				v = l[0]
			}
			switch v := v.(type) {
			case string:
				return pbString(v), nil
			case bool:
				// a String reply of a boolean: lua-protobuf refuses it
				return nil, luaError("string expected for field 'v', got boolean")
			}
			return nil, nil
		},
		"kong.request.get_query": func(c *call) (proto.Message, error) {
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			in, err := decode(c, &pb.Int{})
			if err != nil {
				return nil, err
			}
			max := int(in.V)
			if err := checkMax("max_args", max, 1000); err != nil {
				return nil, err
			}
			return pbStruct(queryTable(c.r.args, max)), nil
		},
		"kong.request.get_header": func(c *call) (proto.Message, error) {
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			if c.r.saved != nil {
				v := luaTableGet(c.r.saved.requestHeaders, s.V)
				if l, ok := v.([]any); ok && len(l) > 0 {
					v = l[0]
				}
				sv, ok := v.(string)
				return optString(sv, ok), nil
			}
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			return optString(c.r.headers.first(s.V)), nil
		},
		"kong.request.get_headers": func(c *call) (proto.Message, error) {
			in, err := decode(c, &pb.Int{})
			if err != nil {
				return nil, err
			}
			if c.r.saved != nil {
				return pbStruct(c.r.saved.requestHeaders), nil
			}
			if err := reqPhase(c); err != nil {
				return nil, err
			}
			max := int(in.V)
			if err := checkMax("max_headers", max, 1000); err != nil {
				return nil, err
			}
			return pbStruct(c.r.headers.luaTable(max)), nil
		},
		"kong.request.get_raw_body": func(c *call) (proto.Message, error) {
			if err := c.check(beforeContent); err != nil {
				return nil, err
			}
			if err := c.r.requestAPI(); err != nil {
				return nil, err
			}
			body, err := c.r.readBody()
			if err != nil {
				return &pb.RawBodyResult{Kind: &pb.RawBodyResult_Error{Error: "failed to read request body: " + err.Error()}}, nil
			}
			c.r.bodyMu.Lock()
			file := c.r.bodyFile
			c.r.bodyMu.Unlock()
			if file != "" {
				// get_raw_body() returns nil, "request body did not fit into
				// client body buffer"; pb_wrap then sends the temp file's path
				return &pb.RawBodyResult{Kind: &pb.RawBodyResult_BodyFilepath{BodyFilepath: file}}, nil
			}
			return &pb.RawBodyResult{Kind: &pb.RawBodyResult_Content{Content: body}}, nil
		},
		"kong.request.get_uri_captures": func(c *call) (proto.Message, error) {
			if c.r.saved == nil {
				if err := c.check(phRequest); err != nil {
					return nil, err
				}
			}
			res := &pb.UriCapturesResult{Named: map[string][]byte{}}
			if c.r.matchT != nil {
				for _, u := range c.r.matchT.unnamed {
					res.Unnamed = append(res.Unnamed, []byte(u))
				}
				for k, v := range c.r.matchT.named {
					res.Named[k] = []byte(v)
				}
			}
			return res, nil
		},

		// kong/pdk/response.lua and plugin.lua exposed_api
		"kong.response.get_status": func(c *call) (proto.Message, error) {
			if c.r.saved != nil {
				return pbInt(c.r.saved.responseStatus), nil
			}
			if err := c.check(headerBodyLog); err != nil {
				return nil, err
			}
			return pbInt(c.r.status), nil
		},
		"kong.response.get_header": func(c *call) (proto.Message, error) {
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			if c.r.saved != nil {
				v := luaTableGet(c.r.saved.responseHeaders, s.V)
				if l, ok := v.([]any); ok && len(l) > 0 {
					v = l[0]
				}
				sv, ok := v.(string)
				return optString(sv, ok), nil
			}
			if err := c.check(headerBodyLog); err != nil {
				return nil, err
			}
			return optString(c.r.respHeaders.first(s.V)), nil
		},
		"kong.response.get_headers": func(c *call) (proto.Message, error) {
			in, err := decode(c, &pb.Int{})
			if err != nil {
				return nil, err
			}
			if c.r.saved != nil {
				return pbStruct(c.r.saved.responseHeaders), nil
			}
			if err := c.check(headerBodyLog); err != nil {
				return nil, err
			}
			if err := checkMax("max_headers", int(in.V), 1000); err != nil {
				return nil, err
			}
			return pbStruct(c.r.respHeaders.luaTable(int(in.V))), nil
		},
		"kong.response.get_source": func(c *call) (proto.Message, error) {
			if c.r.saved == nil {
				if err := c.check(headerBodyLog); err != nil {
					return nil, err
				}
			}
			return pbString(c.r.responseSource()), nil
		},
		"kong.response.set_status": func(c *call) (proto.Message, error) {
			if err := c.check(rewriteAccessHeader); err != nil {
				return nil, err
			}
			if c.r.headersSent {
				return nil, luaError("headers have already been sent")
			}
			in, err := decode(c, &pb.Int{})
			if err != nil {
				return nil, err
			}
			if in.V < 100 || in.V > 599 {
				return nil, luaError("code must be a number between 100 and 599")
			}
			c.r.status = int(in.V)
			return nil, nil
		},
		"kong.response.set_header": func(c *call) (proto.Message, error) {
			return respHeaderOp(c, "set")
		},
		"kong.response.add_header": func(c *call) (proto.Message, error) {
			return respHeaderOp(c, "add")
		},
		"kong.response.clear_header": func(c *call) (proto.Message, error) {
			if err := c.check(rewriteAccessHeader); err != nil {
				return nil, err
			}
			if c.r.headersSent {
				return nil, luaError("headers have already been sent")
			}
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			c.r.respHeaders.clear(s.V)
			return nil, nil
		},
		"kong.response.set_headers": func(c *call) (proto.Message, error) {
			if err := c.check(rewriteAccessHeader); err != nil {
				return nil, err
			}
			if c.r.headersSent {
				return nil, luaError("headers have already been sent")
			}
			set, err := decodeHeaderTable(c)
			if err != nil {
				return nil, err
			}
			for k, v := range set {
				if isTransferEncoding(k) {
					c.r.node.log.logf(lvlWarn, "[kong] manually setting Transfer-Encoding. Ignored.")
					continue
				}
				c.r.respHeaders.set(k, v)
			}
			return nil, nil
		},
		"kong.response.exit": func(c *call) (proto.Message, error) {
			if err := c.check(rewriteAccessHeader); err != nil {
				return nil, err
			}
			if c.r.headersSent {
				return nil, luaError("headers have already been sent")
			}
			a, err := decode(c, &pb.ExitArgs{})
			if err != nil {
				return nil, err
			}
			if a.Status < 100 || a.Status > 599 {
				return nil, luaError("code must be a number between 100 and 599")
			}
			var hdrs map[string][]string
			if a.Headers != nil {
				hdrs = map[string][]string{}
				for k, v := range luaStruct(a.Headers) {
					vals, err := headerValueStrings(k, v)
					if err != nil {
						return nil, err
					}
					hdrs[k] = vals
				}
			}
			c.r.exit(int(a.Status), a.Body, true, hdrs)
			// exit yields the handler's coroutine (delayed response) or calls
			// ngx.exit: either way Kong never answers this call
			return nil, &eventAbort{}
		},

		// kong/pdk/router.lua
		"kong.router.get_route": func(c *call) (proto.Message, error) {
			if err := c.check(routerPhases); err != nil {
				return nil, err
			}
			m, _ := c.r.ctx["route"].(map[string]any)
			return routePB(m), nil
		},
		"kong.router.get_service": func(c *call) (proto.Message, error) {
			if err := c.check(routerPhases); err != nil {
				return nil, err
			}
			m, _ := c.r.ctx["service"].(map[string]any)
			return servicePB(m), nil
		},

		// kong/pdk/service.lua
		"kong.service.set_upstream": func(c *call) (proto.Message, error) {
			if err := c.check(phAccess); err != nil {
				return nil, err
			}
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			if c.r.node.deck.UpstreamByName(s.V) == nil {
				return &pb.Bool{}, nil // nil, "could not find an Upstream named ..."
			}
			if c.r.balancer == nil {
				return nil, luaError("attempt to index field 'balancer_data' (a nil value)")
			}
			c.r.balancer.host = s.V
			return &pb.Bool{V: true}, nil
		},
		"kong.service.set_target": func(c *call) (proto.Message, error) {
			if err := c.check(phRewrite | phAccess | phBalancer | phPreread); err != nil {
				return nil, err
			}
			t, err := decode(c, &pb.Target{})
			if err != nil {
				return nil, err
			}
			if t.Port < 0 || t.Port > 65535 {
				return nil, luaError(fmt.Sprintf("port must be an integer between 0 and 65535: given %d", t.Port))
			}
			c.r.upstreamHost = t.Host
			if c.r.balancer == nil {
				return nil, luaError("attempt to index field 'balancer_data' (a nil value)")
			}
			c.r.balancer.host = t.Host
			c.r.balancer.port = int(t.Port)
			c.r.rec.Target = fmt.Sprintf("%s:%d", t.Host, t.Port)
			return nil, nil
		},

		// kong/pdk/service/request.lua
		"kong.service.request.set_scheme": func(c *call) (proto.Message, error) {
			if err := c.check(accessRewriteBalancer); err != nil {
				return nil, err
			}
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			if s.V != "http" && s.V != "https" {
				return nil, luaError("invalid scheme: " + s.V)
			}
			c.r.upstreamScheme = s.V
			if c.r.balancer != nil {
				c.r.balancer.scheme = s.V
			}
			return nil, nil
		},
		"kong.service.request.set_path": func(c *call) (proto.Message, error) {
			if err := c.check(accessRewriteBalancer); err != nil {
				return nil, err
			}
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			if !strings.HasPrefix(s.V, "/") {
				return nil, luaError("path must start with /")
			}
			c.r.upstreamURI = escapeURI(s.V)
			return nil, nil
		},
		"kong.service.request.set_raw_query": func(c *call) (proto.Message, error) {
			if err := c.check(accessAndRewrite); err != nil {
				return nil, err
			}
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			c.r.args = s.V
			return nil, nil
		},
		"kong.service.request.set_method": func(c *call) (proto.Message, error) {
			if err := c.check(accessAndRewrite); err != nil {
				return nil, err
			}
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			switch s.V {
			case "GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE", "PROPFIND",
				"PROPPATCH", "LOCK", "UNLOCK", "PATCH", "TRACE":
				c.r.method = s.V
				return nil, nil
			}
			return nil, luaError("invalid method: " + s.V)
		},
		"kong.service.request.set_query": func(c *call) (proto.Message, error) {
			if err := c.check(accessAndRewrite); err != nil {
				return nil, err
			}
			st, err := decode(c, &structpb.Struct{})
			if err != nil {
				return nil, err
			}
			c.r.args = encodeArgs(luaStruct(st))
			return nil, nil
		},
		"kong.service.request.set_header": func(c *call) (proto.Message, error) {
			if err := c.check(accessRewriteBalancer); err != nil {
				return nil, err
			}
			kv, err := decode(c, &pb.KV{})
			if err != nil {
				return nil, err
			}
			if err := validateHeaderName(kv.K); err != nil {
				return nil, err
			}
			vals, err := headerValueStrings(kv.K, luaValue(kv.V))
			if err != nil {
				return nil, err
			}
			lk := strings.ToLower(kv.K)
			if lk == "host" {
				c.r.upstreamHost = strings.Join(vals, ", ")
			}
			if lk == ":authority" {
				return nil, nil // nil, "cannot set :authority pseudo-header on non-grpc requests"
			}
			c.r.headers.set(kv.K, vals)
			return nil, nil
		},
		"kong.service.request.add_header": func(c *call) (proto.Message, error) {
			if err := c.check(accessAndRewrite); err != nil {
				return nil, err
			}
			kv, err := decode(c, &pb.KV{})
			if err != nil {
				return nil, err
			}
			if err := validateHeaderName(kv.K); err != nil {
				return nil, err
			}
			vals, err := headerValueStrings(kv.K, luaValue(kv.V))
			if err != nil {
				return nil, err
			}
			if strings.EqualFold(kv.K, "host") {
				c.r.upstreamHost = strings.Join(vals, ", ")
			}
			for _, v := range vals {
				c.r.headers.add(kv.K, v)
			}
			return nil, nil
		},
		"kong.service.request.clear_header": func(c *call) (proto.Message, error) {
			if err := c.check(accessAndRewrite); err != nil {
				return nil, err
			}
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			c.r.headers.clear(s.V)
			return nil, nil
		},
		"kong.service.request.set_headers": func(c *call) (proto.Message, error) {
			if err := c.check(accessAndRewrite); err != nil {
				return nil, err
			}
			set, err := decodeHeaderTable(c)
			if err != nil {
				return nil, err
			}
			for k, v := range set {
				if strings.EqualFold(k, "host") {
					c.r.upstreamHost = strings.Join(v, ", ")
				}
				c.r.headers.set(k, v)
			}
			return nil, nil
		},
		"kong.service.request.set_raw_body": func(c *call) (proto.Message, error) {
			if err := c.check(accessRewriteBalancer); err != nil {
				return nil, err
			}
			b, err := decode(c, &pb.ByteString{})
			if err != nil {
				return nil, err
			}
			c.r.setBody(b.V)
			return nil, nil
		},

		// kong/pdk/service/response.lua
		"kong.service.response.get_status": func(c *call) (proto.Message, error) {
			if err := c.check(serviceHeaderBodyLog); err != nil {
				return nil, err
			}
			if st, ok := toFloat(c.r.ctx["buffered_status"]); ok {
				return pbInt(int(st)), nil
			}
			if err := c.r.requestAPI(); err != nil {
				return nil, err
			}
			us := c.r.upstreamStatus
			if len(us) >= 3 {
				if n, err := strconv.Atoi(us[len(us)-3:]); err == nil {
					return pbInt(n), nil
				}
			}
			return nil, nil
		},
		"kong.service.response.get_header": func(c *call) (proto.Message, error) {
			if err := c.check(serviceHeaderBodyLog); err != nil {
				return nil, err
			}
			s, err := decode(c, &pb.String{})
			if err != nil {
				return nil, err
			}
			if c.r.bufHeaders != nil {
				return optString(c.r.bufHeaders.first(s.V)), nil
			}
			if err := c.r.requestAPI(); err != nil {
				return nil, err
			}
			if c.r.upstreamStatus == "" {
				return nil, nil // no upstream_http_* variable
			}
			return optString(c.r.respHeaders.first(s.V)), nil
		},
		"kong.service.response.get_headers": func(c *call) (proto.Message, error) {
			if err := c.check(serviceHeaderBodyLog); err != nil {
				return nil, err
			}
			in, err := decode(c, &pb.Int{})
			if err != nil {
				return nil, err
			}
			if err := checkMax("max_headers", int(in.V), 1000); err != nil {
				return nil, err
			}
			if c.r.bufHeaders != nil {
				// attach_buffered_headers_mt returns an empty table whose
				// __index looks names up: pairs() sees nothing, so the
				// plugin receives an empty map (get_header still works)
				return &structpb.Struct{Fields: map[string]*structpb.Value{}}, nil
			}
			if err := c.r.requestAPI(); err != nil {
				return nil, err
			}
			return pbStruct(c.r.respHeaders.luaTable(int(in.V))), nil
		},
		"kong.service.response.get_raw_body": func(c *call) (proto.Message, error) {
			if err := c.check(serviceHeaderBodyLog); err != nil {
				return nil, err
			}
			if !c.r.ctxTruthy("buffered_proxying") {
				return nil, luaError("service body is only available with buffered proxying " +
					"(see: kong.service.request.enable_buffering function)")
			}
			return &pb.ByteString{V: c.r.bufBody}, nil
		},
	}
	pdkMethods = loadService()
}

// decodeHeaderTable reads a set_headers argument: a Lua table of header
// names to a string or an array of strings, checked as Kong checks it.
func decodeHeaderTable(c *call) (map[string][]string, error) {
	st, err := decode(c, &structpb.Struct{})
	if err != nil {
		return nil, err
	}
	set := map[string][]string{}
	for k, v := range luaStruct(st) {
		vals, err := headerValueStrings(k, v)
		if err != nil {
			return nil, err
		}
		set[k] = vals
	}
	return set, nil
}

func isTransferEncoding(k string) bool {
	lk := strings.ToLower(k)
	return lk == "transfer-encoding" || lk == "transfer_encoding"
}

func checkMax(name string, v, max int) error {
	if v < 1 {
		return luaError(fmt.Sprintf("%s must be >= 1", name))
	}
	if v > max {
		return luaError(fmt.Sprintf("%s must be <= %d", name, max))
	}
	return nil
}

func respHeaderOp(c *call, op string) (proto.Message, error) {
	if err := c.check(rewriteAccessHeader); err != nil {
		return nil, err
	}
	if c.r.headersSent {
		return nil, luaError("headers have already been sent")
	}
	kv, err := decode(c, &pb.KV{})
	if err != nil {
		return nil, err
	}
	if err := validateHeaderName(kv.K); err != nil {
		return nil, err
	}
	vals, err := headerValueStrings(kv.K, luaValue(kv.V))
	if err != nil {
		return nil, err
	}
	if op == "set" {
		if isTransferEncoding(kv.K) {
			c.r.node.log.logf(lvlWarn, "[kong] manually setting Transfer-Encoding. Ignored.")
			return nil, nil
		}
		c.r.respHeaders.set(kv.K, vals)
		return nil, nil
	}
	for _, v := range vals {
		c.r.respHeaders.add(kv.K, v)
	}
	return nil, nil
}

func setOrDelete(m map[string]any, k string, v any) {
	if v == nil {
		delete(m, k)
		return
	}
	m[k] = v
}

func pbConsumerTable(c *pb.Consumer) any {
	if c == nil {
		return nil
	}
	m := map[string]any{}
	if c.Id != "" {
		m["id"] = c.Id
	}
	if c.CreatedAt != 0 {
		m["created_at"] = float64(c.CreatedAt)
	}
	if c.Username != "" {
		m["username"] = c.Username
	}
	if c.CustomId != "" {
		m["custom_id"] = c.CustomId
	}
	if len(c.Tags) > 0 {
		m["tags"] = anyList(c.Tags)
	}
	return m
}

func pbCredentialTable(c *pb.AuthenticatedCredential) any {
	if c == nil {
		return nil
	}
	m := map[string]any{}
	if c.Id != "" {
		m["id"] = c.Id
	}
	if c.ConsumerId != "" {
		m["consumer_id"] = c.ConsumerId
	}
	return m
}

// copyEntity copies an entity table, as the DAO returns a fresh one.
func copyEntity(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return deepCopy(m).(map[string]any)
}
