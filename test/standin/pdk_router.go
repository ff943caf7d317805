package standin

import (
	"google.golang.org/protobuf/proto"
)

const routerPhases = phAccess | phHeaderFilter | phResponse | phBodyFilter | phLog

// kong/pdk/router.lua
var routerMethods = map[string]pdkHandler{
	"kong.router.get_route": inPhases(routerPhases, func(c *call) (proto.Message, error) {
		m, _ := c.r.ctx["route"].(map[string]any)
		return routePB(m), nil
	}),
	"kong.router.get_service": inPhases(routerPhases, func(c *call) (proto.Message, error) {
		m, _ := c.r.ctx["service"].(map[string]any)
		return servicePB(m), nil
	}),
}
