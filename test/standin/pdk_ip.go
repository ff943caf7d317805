package standin

import (
	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// kong/pdk/ip.lua (trusted_ips)
var ipMethods = map[string]pdkHandler{
	"kong.ip.is_trusted": func(c *call) (proto.Message, error) {
		s, err := decode(c, &pb.String{})
		if err != nil {
			return nil, err
		}
		return &pb.Bool{V: c.r.node.isTrusted(s.V)}, nil
	},
}
