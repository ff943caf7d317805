package standin

import (
	"fmt"
	"strconv"
	"strings"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// serviceHeaderBodyLog is header_body_log of kong/pdk/service/response.lua.
const serviceHeaderBodyLog = phResponse | phHeaderFilter | phBodyFilter | phLog

const accessAndRewrite = phRewrite | phAccess
const accessRewriteBalancer = phRewrite | phAccess | phBalancer

// kong/pdk/service.lua
var serviceMethods = map[string]pdkHandler{
	"kong.service.set_upstream": inPhases(phAccess, func(c *call) (proto.Message, error) {
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
	}),
	"kong.service.set_target": inPhases(phRewrite|phAccess|phBalancer|phPreread, func(c *call) (proto.Message, error) {
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
	}),
}

// kong/pdk/service/request.lua
var serviceRequestMethods = map[string]pdkHandler{
	"kong.service.request.set_scheme": inPhases(accessRewriteBalancer, func(c *call) (proto.Message, error) {
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
	}),
	"kong.service.request.set_path": inPhases(accessRewriteBalancer, func(c *call) (proto.Message, error) {
		s, err := decode(c, &pb.String{})
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(s.V, "/") {
			return nil, luaError("path must start with /")
		}
		c.r.upstreamURI = escapeURI(s.V)
		return nil, nil
	}),
	"kong.service.request.set_raw_query": inPhases(accessAndRewrite, func(c *call) (proto.Message, error) {
		s, err := decode(c, &pb.String{})
		if err != nil {
			return nil, err
		}
		c.r.args = s.V
		return nil, nil
	}),
	"kong.service.request.set_method": inPhases(accessAndRewrite, func(c *call) (proto.Message, error) {
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
	}),
	"kong.service.request.set_query": inPhases(accessAndRewrite, func(c *call) (proto.Message, error) {
		st, err := decode(c, &structpb.Struct{})
		if err != nil {
			return nil, err
		}
		c.r.args = encodeArgs(luaStruct(st))
		return nil, nil
	}),
	"kong.service.request.set_header": inPhases(accessRewriteBalancer, func(c *call) (proto.Message, error) {
		name, vals, raw, err := decodeHeaderKV(c)
		if err != nil {
			return nil, err
		}
		lk := strings.ToLower(name)
		if lk == "host" {
			c.r.upstreamHost = upstreamHostValue(raw)
		}
		if lk == ":authority" {
			return nil, nil // nil, "cannot set :authority pseudo-header on non-grpc requests"
		}
		c.r.headers.set(name, vals)
		return nil, nil
	}),
	"kong.service.request.add_header": inPhases(accessAndRewrite, func(c *call) (proto.Message, error) {
		name, vals, raw, err := decodeHeaderKV(c)
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(name, "host") {
			c.r.upstreamHost = upstreamHostValue(raw)
		}
		for _, v := range vals {
			c.r.headers.add(name, v)
		}
		return nil, nil
	}),
	"kong.service.request.clear_header": inPhases(accessAndRewrite, func(c *call) (proto.Message, error) {
		s, err := decode(c, &pb.String{})
		if err != nil {
			return nil, err
		}
		c.r.headers.clear(s.V)
		return nil, nil
	}),
	"kong.service.request.set_headers": inPhases(accessAndRewrite, func(c *call) (proto.Message, error) {
		set, raw, err := decodeHeaderTable(c)
		if err != nil {
			return nil, err
		}
		for k, v := range set {
			if strings.EqualFold(k, "host") {
				c.r.upstreamHost = upstreamHostValue(raw[k])
			}
			c.r.headers.set(k, v)
		}
		return nil, nil
	}),
	"kong.service.request.set_raw_body": inPhases(accessRewriteBalancer, func(c *call) (proto.Message, error) {
		b, err := decode(c, &pb.ByteString{})
		if err != nil {
			return nil, err
		}
		c.r.setBody(b.V)
		return nil, nil
	}),
}

// kong/pdk/service/response.lua
var serviceResponseMethods = map[string]pdkHandler{
	"kong.service.response.get_status": inPhases(serviceHeaderBodyLog, func(c *call) (proto.Message, error) {
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
	}),
	"kong.service.response.get_header": inPhases(serviceHeaderBodyLog, func(c *call) (proto.Message, error) {
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
	}),
	"kong.service.response.get_headers": inPhases(serviceHeaderBodyLog, func(c *call) (proto.Message, error) {
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
	}),
	"kong.service.response.get_raw_body": inPhases(serviceHeaderBodyLog, func(c *call) (proto.Message, error) {
		if !c.r.ctxTruthy("buffered_proxying") {
			return nil, luaError("service body is only available with buffered proxying " +
				"(see: kong.service.request.enable_buffering function)")
		}
		return &pb.ByteString{V: c.r.bufBody}, nil
	}),
}
