package standin

import (
	"fmt"
	"regexp"
	"sort"
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

// pdkHandlers is the PDK table: every module's methods, as Kong's Lua PDK
// splits them (one file per module).
var pdkHandlers map[string]pdkHandler

// guarded runs guard, the phase check a Kong PDK function starts with,
// before h: an error from guard is the call's answer.
func guarded(guard func(*call) error, h pdkHandler) pdkHandler {
	return func(c *call) (proto.Message, error) {
		if err := guard(c); err != nil {
			return nil, err
		}
		return h(c)
	}
}

// inPhases is guarded by check_phase(accepted).
func inPhases(accepted phase, h pdkHandler) pdkHandler {
	return guarded(func(c *call) error { return c.check(accepted) }, h)
}

// liveInPhases is inPhases for a getter that plugin.lua's exposed_api
// answers from the data saved for the log timer: there no phase check runs.
func liveInPhases(accepted phase, h pdkHandler) pdkHandler {
	return guarded(func(c *call) error {
		if c.r.inTimer() {
			return nil
		}
		return c.check(accepted)
	}, h)
}

func init() {
	pdkHandlers = map[string]pdkHandler{}
	for _, module := range []map[string]pdkHandler{
		clientMethods,
		ctxMethods,
		ipMethods,
		logMethods,
		nginxMethods,
		nodeMethods,
		requestMethods,
		responseMethods,
		routerMethods,
		serviceMethods,
		serviceRequestMethods,
		serviceResponseMethods,
	} {
		for name, h := range module {
			if _, dup := pdkHandlers[name]; dup {
				panic("standin: PDK method registered twice: " + name)
			}
			pdkHandlers[name] = h
		}
	}
	pdkMethods = loadService()
}

// decodeHeaderKV reads a set_header or add_header argument: a header name
// and a value (a string, number, boolean or array of them), checked as Kong
// checks them.
func decodeHeaderKV(c *call) (name string, vals []string, raw any, err error) {
	kv, err := decode(c, &pb.KV{})
	if err != nil {
		return "", nil, nil, err
	}
	if err := validateHeaderName(kv.K); err != nil {
		return "", nil, nil, err
	}
	raw = luaValue(kv.V)
	vals, err = headerValueStrings(kv.K, raw)
	if err != nil {
		return "", nil, nil, err
	}
	return kv.K, vals, raw, nil
}

// upstreamHostValue is what ngx.var.upstream_host holds after Kong's
// set_header(s) assigned it a header value as it came (kong/pdk/service/
// request.lua: `ngx_var.upstream_host = value`): nginx variables are
// strings, and the variable setter (lua-resty-core resty/core/var.lua)
// calls tostring() on anything else. go-pdk sends set_headers values as
// arrays, so a Host given there reaches the upstream as "table: 0x...".
func upstreamHostValue(raw any) string { return luaToString(raw) }

// savedHeader is get_header on the header table saved for the log timer:
// the first value of name, or nil.
func savedHeader(headers map[string]any, name string) proto.Message {
	v := luaTableGet(headers, name)
	if l, ok := v.([]any); ok && len(l) > 0 {
		v = l[0]
	}
	s, ok := v.(string)
	return optString(s, ok)
}

// decodeHeaderTable reads a set_headers argument: a Lua table of header
// names to a string or an array of strings, checked as Kong checks it.
func decodeHeaderTable(c *call) (set map[string][]string, raw map[string]any, err error) {
	st, err := decode(c, &structpb.Struct{})
	if err != nil {
		return nil, nil, err
	}
	set = map[string][]string{}
	raw = luaStruct(st)
	for k, v := range raw {
		vals, err := headerValueStrings(k, v)
		if err != nil {
			return nil, nil, err
		}
		set[k] = vals
	}
	return set, raw, nil
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

func setOrDelete(m map[string]any, k string, v any) {
	if v == nil {
		delete(m, k)
		return
	}
	m[k] = v
}

// copyEntity copies an entity table, as the DAO returns a fresh one.
func copyEntity(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return deepCopy(m).(map[string]any)
}
