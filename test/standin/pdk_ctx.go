package standin

import (
	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// kong/runloop/plugin_servers/plugin.lua exposed_api: kong.ctx.shared
var ctxMethods = map[string]pdkHandler{
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
}
