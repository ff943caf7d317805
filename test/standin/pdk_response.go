package standin

import (
	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// headerBodyLog is header_body_log of kong/pdk/response.lua.
const headerBodyLog = phResponse | phHeaderFilter | phBodyFilter | phLog | phError | phAdminAPI

// rewriteAccessHeader is rewrite_access_header of kong/pdk/response.lua.
const rewriteAccessHeader = phRewrite | phAccess | phResponse | phBalancer | phHeaderFilter | phError | phAdminAPI

// beforeHeadersSent is the guard of kong.response's setters:
// check_phase(rewrite_access_header), then an error once ngx.headers_sent.
func beforeHeadersSent(c *call) error {
	if err := c.check(rewriteAccessHeader); err != nil {
		return err
	}
	if c.r.headersSent {
		return luaError("headers have already been sent")
	}
	return nil
}

// kong/pdk/response.lua and plugin.lua exposed_api
var responseMethods = map[string]pdkHandler{
	"kong.response.get_status": liveInPhases(headerBodyLog, func(c *call) (proto.Message, error) {
		if c.r.saved != nil {
			return pbInt(c.r.saved.responseStatus), nil
		}
		return pbInt(c.r.status), nil
	}),
	"kong.response.get_header": func(c *call) (proto.Message, error) {
		s, err := decode(c, &pb.String{})
		if err != nil {
			return nil, err
		}
		if c.r.saved != nil {
			return savedHeader(c.r.saved.responseHeaders, s.V), nil
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
	"kong.response.get_source": liveInPhases(headerBodyLog, func(c *call) (proto.Message, error) {
		return pbString(c.r.responseSource()), nil
	}),
	"kong.response.set_status": guarded(beforeHeadersSent, func(c *call) (proto.Message, error) {
		in, err := decode(c, &pb.Int{})
		if err != nil {
			return nil, err
		}
		if in.V < 100 || in.V > 599 {
			return nil, luaError("code must be a number between 100 and 599")
		}
		c.r.status = int(in.V)
		return nil, nil
	}),
	"kong.response.set_header": guarded(beforeHeadersSent, respHeaderOp("set")),
	"kong.response.add_header": guarded(beforeHeadersSent, respHeaderOp("add")),
	"kong.response.clear_header": guarded(beforeHeadersSent, func(c *call) (proto.Message, error) {
		s, err := decode(c, &pb.String{})
		if err != nil {
			return nil, err
		}
		c.r.respHeaders.clear(s.V)
		return nil, nil
	}),
	"kong.response.set_headers": guarded(beforeHeadersSent, func(c *call) (proto.Message, error) {
		set, _, err := decodeHeaderTable(c)
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
	}),
	"kong.response.exit": guarded(beforeHeadersSent, func(c *call) (proto.Message, error) {
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
	}),
}

// respHeaderOp is kong.response.set_header (op "set") or add_header ("add").
func respHeaderOp(op string) pdkHandler {
	return func(c *call) (proto.Message, error) {
		name, vals, _, err := decodeHeaderKV(c)
		if err != nil {
			return nil, err
		}
		if op == "set" {
			if isTransferEncoding(name) {
				c.r.node.log.logf(lvlWarn, "[kong] manually setting Transfer-Encoding. Ignored.")
				return nil, nil
			}
			c.r.respHeaders.set(name, vals)
			return nil, nil
		}
		for _, v := range vals {
			c.r.respHeaders.add(name, v)
		}
		return nil, nil
	}
}
