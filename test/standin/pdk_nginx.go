package standin

import (
	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// kong/pdk/nginx.lua and plugin.lua exposed_api
var nginxMethods = map[string]pdkHandler{
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
		if s.V == "balancer_data" && c.r.balancer != nil {
			// It holds the balancer object, whose cycles overflow
			// structpb_struct (pb_rpc.lua) before anything is sent.
			return nil, luaError("kong/runloop/plugin_servers/rpc/pb_rpc.lua:139: stack overflow")
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
}
