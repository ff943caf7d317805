// Command echoplugin is a small go-pdk plugin for the stand-in's tests. Its
// behaviour is chosen per request by the X-Test-Mode header; what it sees
// is reported to the upstream in X-Echo-* headers and, from the Log phase,
// in files under $ECHO_OUT named after the request id.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Config is the plugin configuration (see schema below for its defaults).
type Config struct {
	Greeting string   `json:"greeting"`
	Tags     []string `json:"tags"`
	Limits   struct {
		Max  int    `json:"max"`
		Mode string `json:"mode"`
	} `json:"limits"`
	Optional string `json:"optional"`
	Seq      int    `json:"__seq__"`
	Key      string `json:"__key__"`
	PluginID string `json:"__plugin_id"`
	RouteID  string `json:"route_id"`
}

const priority = 1000

func New() any { return &Config{} }

func dumpSchema(name string) map[string]any {
	if f := os.Getenv("ECHO_SCHEMA_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err == nil {
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				m["name"] = name
				return m
			}
		}
	}
	return map[string]any{
		"name": name,
		"fields": []any{
			map[string]any{"protocols": map[string]any{"type": "set", "required": true, "default": []string{"http", "https"},
				"elements": map[string]any{"type": "string", "one_of": []string{"http", "https"}}}},
			map[string]any{"config": map[string]any{"type": "record", "required": true, "fields": []any{
				map[string]any{"greeting": map[string]any{"type": "string", "required": true, "default": "hello"}},
				map[string]any{"tags": map[string]any{"type": "array", "required": true, "default": []string{},
					"elements": map[string]any{"type": "string"}}},
				map[string]any{"limits": map[string]any{"type": "record", "required": true, "fields": []any{
					map[string]any{"max": map[string]any{"type": "integer", "required": true, "default": 10, "between": []int{1, 100}}},
					map[string]any{"mode": map[string]any{"type": "string", "required": true, "default": "soft",
						"one_of": []string{"soft", "hard"}}},
				}}},
				map[string]any{"optional": map[string]any{"type": "string"}},
			}}},
		},
	}
}

// phases are the phases -dump declares: access, response and log, unless
// ECHO_PHASES or the argument -phases=a,b says otherwise.
func phases() []string {
	list := os.Getenv("ECHO_PHASES")
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "-phases="); ok {
			list = v
		}
	}
	if list == "" {
		return []string{"access", "response", "log"}
	}
	return strings.Split(list, ",")
}

func main() {
	for _, a := range os.Args[1:] {
		if a == "-dump" || a == "--dump" {
			exe, _ := os.Executable()
			name := filepath.Base(exe)
			out, _ := json.Marshal(map[string]any{
				"Protocol": "ProtoBuf:1", "SocketPath": "/usr/local/kong/" + name + ".socket",
				"Plugins": []any{map[string]any{"Name": name, "Phases": phases(),
					"Version": "0.1.0", "Priority": priority, "Schema": dumpSchema(name)}},
			})
			fmt.Println(string(out))
			return
		}
	}
	var args []string // go-pdk parses the command line: -phases is ours
	for _, a := range os.Args {
		if !strings.HasPrefix(a, "-phases=") {
			args = append(args, a)
		}
	}
	os.Args = args
	if err := server.StartServer(New, "0.1.0", priority); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func mode(kong *pdk.PDK) string {
	m, _ := kong.Request.GetHeader("X-Test-Mode")
	return m
}

func (c *Config) Access(kong *pdk.PDK) {
	m := mode(kong)
	switch m {
	case "exit", "exit-then-call":
		kong.Response.Exit(418, []byte("teapot"), map[string][]string{"X-Exit": {"1"}, "Content-Type": {"text/plain"}})
		if m == "exit-then-call" {
			_, err := kong.Request.GetMethod()
			fmt.Fprintf(os.Stderr, "after exit: GetMethod err=%v\n", err)
		}
		return
	case "violation":
		_, err := kong.ServiceResponse.GetStatus()
		fmt.Fprintf(os.Stderr, "violation returned: %v\n", err)
		return
	case "unknown":
		_ = kong.Log.Ask("kong.does.not_exist", nil, nil)
		return
	case "panic":
		panic("echoplugin: asked to panic")
	case "log-warn":
		_ = kong.Log.Warn("echoplugin: a warning from Access")
	case "env": // what reached the plugin process's environment
		_ = kong.Response.SetHeader("X-Echo-Env", os.Getenv("ECHO_TEST_ENV")+"|"+os.Getenv("ECHO_OUT"))
	case "stream":
		if err := kong.Nginx.SetCtx("buffered_proxying", false); err != nil {
			fmt.Fprintf(os.Stderr, "set_ctx: %v\n", err)
		}
	case "target":
		t, _ := kong.Request.GetHeader("X-Test-Target")
		host, port, _ := strings.Cut(t, ":")
		p, _ := strconv.Atoi(port)
		if err := kong.Service.SetTarget(host, p); err != nil {
			fmt.Fprintf(os.Stderr, "set_target: %v\n", err)
		}
	case "host-header": // a string value: Kong stores it in upstream_host as is
		_ = kong.ServiceRequest.SetHeader("Host", "example.test:9")
	case "host-headers": // go-pdk sends every value as an array
		_ = kong.ServiceRequest.SetHeaders(map[string][]string{"Host": {"example.test:9"}, "X-Other": {"o"}})
	case "edit", "edit-report":
		_ = kong.ServiceRequest.SetPath("/edited")
		_ = kong.ServiceRequest.SetRawQuery("x=1&y=2")
		_ = kong.ServiceRequest.SetMethod("PUT")
		_ = kong.ServiceRequest.SetRawBody("new body")
		_ = kong.ServiceRequest.SetHeader("X-Edited", "yes")
		_ = kong.ServiceRequest.ClearHeader("X-Remove-Me")
	}
	if m == "body" {
		b, err := kong.Request.GetRawBody()
		_ = kong.ServiceRequest.SetHeader("X-Echo-Body-Len", strconv.Itoa(len(b)))
		if err != nil {
			_ = kong.ServiceRequest.SetHeader("X-Echo-Body-Err", err.Error())
		}
	}
	cfg, _ := json.Marshal(c)
	_ = kong.ServiceRequest.SetHeader("X-Echo-Config", string(cfg))
	if cons, err := kong.Client.GetConsumer(); err == nil {
		_ = kong.ServiceRequest.SetHeader("X-Echo-Consumer", cons.Username)
	}
	buf, _ := kong.Nginx.GetCtxAny("buffered_proxying")
	_ = kong.ServiceRequest.SetHeader("X-Echo-Buffered", fmt.Sprint(buf))
	addr, _ := kong.Nginx.GetVar("upstream_addr")
	_ = kong.ServiceRequest.SetHeader("X-Echo-Upstream-Addr", addr)
	meth, _ := kong.Nginx.GetVar("request_method")
	_ = kong.ServiceRequest.SetHeader("X-Echo-Var-Method", meth)
	_ = kong.Ctx.SetShared("shared-key", "shared-value")
	_ = kong.Nginx.SetCtx("my-ctx", "ctx-value")
	_ = kong.Response.SetHeader("X-Access-Ran", "1")
}

func (c *Config) Response(kong *pdk.PDK) {
	m := mode(kong)
	st, _ := kong.ServiceResponse.GetStatus()
	body, err := kong.ServiceResponse.GetRawBody()
	summary := fmt.Sprintf("%d/%d", st, len(body))
	if err != nil {
		summary = fmt.Sprintf("%d/err:%v", st, err)
	}
	_ = kong.Response.SetHeader("X-Response-Phase", summary)
	switch m {
	case "resp-exit":
		kong.Response.Exit(200, []byte(`{"rewritten":true}`), map[string][]string{"Content-Type": {"application/json"}})
		return
	case "resp-status":
		_ = kong.Response.SetStatus(201)
	case "resp-violation":
		_ = kong.Service.SetTarget("127.0.0.1", 1)
	case "resp-facts": // what a buffered Response phase reads of Access and of Kong's balancing
		ctxv, err := kong.Nginx.GetCtxString("my-ctx")
		_ = kong.Response.SetHeader("X-Resp-Ctx", fmt.Sprintf("%s/%v", ctxv, err))
		host, _ := kong.Nginx.GetVar("upstream_host")
		_ = kong.Response.SetHeader("X-Resp-Upstream-Host", host)
		scheme, _ := kong.Nginx.GetVar("upstream_scheme")
		_ = kong.Response.SetHeader("X-Resp-Upstream-Scheme", scheme)
		route, err := kong.Router.GetRoute()
		_ = kong.Response.SetHeader("X-Resp-Route", fmt.Sprintf("preserve_host=%v service=%s err=%v", route.PreserveHost, route.Service.Id, err))
	case "resp-report", "edit-report":
		report(kong)
		return
	case "resp-balancer-data": // a table holding the balancer object
		_, err := kong.Nginx.GetCtxAny("balancer_data")
		fmt.Fprintf(os.Stderr, "get_ctx balancer_data: %v\n", err)
		return
	case "resp-headers":
		h, _ := kong.ServiceResponse.GetHeaders(-1)
		_ = kong.Response.SetHeader("X-Svc-Headers", strconv.Itoa(len(h)))
		v, _ := kong.ServiceResponse.GetHeader("X-Upstream")
		_ = kong.Response.SetHeader("X-Svc-Header", v)
		rh, _ := kong.Response.GetHeaders(-1)
		_ = kong.Response.SetHeader("X-Resp-Headers-Has-Upstream", fmt.Sprint(len(rh["x-upstream"]) > 0))
	}
}

// report answers with what a buffered Response phase reads of the request
// (as Access left it: mode edit-report edits it first) and of Kong's
// balancing, one JSON member per call.
func report(kong *pdk.PDK) {
	out := map[string]any{}
	note := func(k string, v any, err error) {
		if err != nil {
			out[k] = "error: " + err.Error()
			return
		}
		out[k] = v
	}
	m, err := kong.Request.GetMethod()
	note("request.get_method", m, err)
	h, err := kong.Request.GetHeaders(-1)
	note("request.get_headers", h, err)
	b, err := kong.Request.GetRawBody()
	note("request.get_raw_body", string(b), err)
	for _, v := range []string{"upstream_host", "upstream_addr", "request_method"} {
		s, err := kong.Nginx.GetVar(v)
		note("nginx.get_var:"+v, s, err)
	}
	sid, err := kong.ServiceResponse.GetHeader("X-Upstream")
	note("service.response.get_header:X-Upstream", sid, err)
	body, _ := json.Marshal(out)
	kong.Response.Exit(200, body, map[string][]string{"Content-Type": {"application/json"}})
}

func (c *Config) Log(kong *pdk.PDK) {
	m, _ := kong.Request.GetHeader("X-Test-Mode")
	if m == "log-mark" {
		fmt.Fprintf(os.Stderr, "echoplugin: Log event\n")
	}
	if m == "log-warn" {
		_ = kong.Log.Warn("echoplugin: a warning from Log")
	}
	dir := os.Getenv("ECHO_OUT")
	if dir == "" {
		return
	}
	if m == "slow-log" {
		time.Sleep(300 * time.Millisecond)
	}
	ser, serr := kong.Log.Serialize()
	status, _ := kong.Response.GetStatus()
	shared, _ := kong.Ctx.GetSharedString("shared-key")
	ctxv, _ := kong.Nginx.GetCtxString("my-ctx")
	start, _ := kong.Nginx.ReqStartTime()
	reqHdrs, _ := kong.Request.GetHeaders(-1)
	respHdr, _ := kong.Response.GetHeader("X-Access-Ran")
	cons, _ := kong.Client.GetConsumer()
	// last: it fails in the log timer, and Kong then stops answering
	_, varErr := kong.Nginx.GetVar("request_method")
	var s struct {
		Request struct {
			ID string `json:"id"`
		} `json:"request"`
	}
	_ = json.Unmarshal([]byte(ser), &s)
	out, _ := json.Marshal(map[string]any{
		"serialize": json.RawMessage(orNull(ser)), "serialize_err": fmt.Sprint(serr), "status": status,
		"shared": shared, "ctx": ctxv, "start": start, "getvar_err": fmt.Sprint(varErr), "mode": m,
		"request_headers": reqHdrs, "resp_header": respHdr, "consumer": cons.Username,
	})
	_ = os.WriteFile(filepath.Join(dir, s.Request.ID+".json"), out, 0o644)
}

func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}
