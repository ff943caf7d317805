package standin

import (
	"strconv"
	"strings"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// beforeContent is before_content of kong/pdk/request.lua.
const beforeContent = phRewrite | phAccess | phResponse | phError | phAdminAPI

// reqPhase is the guard of most kong.request getters: a request phase,
// while the request is live (not in the log timer).
func reqPhase(c *call) error {
	if err := c.check(phRequest); err != nil {
		return err
	}
	return c.r.requestAPI()
}

// kong/pdk/request.lua
var requestMethods = map[string]pdkHandler{
	"kong.request.get_scheme": guarded(reqPhase, func(c *call) (proto.Message, error) {
		return pbString("http"), nil
	}),
	"kong.request.get_host": guarded(reqPhase, func(c *call) (proto.Message, error) {
		return pbString(c.r.host), nil
	}),
	"kong.request.get_port": guarded((*call).clientAPI, func(c *call) (proto.Message, error) {
		return pbInt(c.r.serverPort), nil
	}),
	"kong.request.get_forwarded_scheme": guarded(reqPhase, func(c *call) (proto.Message, error) {
		if c.r.node.isTrusted(c.r.remoteIP) {
			if v, ok := c.r.headers.first("X-Forwarded-Proto"); ok {
				return pbString(strings.ToLower(v)), nil
			}
		}
		return pbString("http"), nil
	}),
	"kong.request.get_forwarded_host": guarded(reqPhase, func(c *call) (proto.Message, error) {
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
	}),
	"kong.request.get_forwarded_port": guarded(reqPhase, func(c *call) (proto.Message, error) {
		if c.r.node.isTrusted(c.r.remoteIP) {
			if v, ok := c.r.headers.first("X-Forwarded-Port"); ok {
				if p, err := strconv.Atoi(v); err == nil && p >= 1 && p <= 65535 {
					return pbInt(p), nil
				}
			}
		}
		return pbInt(c.r.serverPort), nil
	}),
	"kong.request.get_http_version": guarded(reqPhase, func(c *call) (proto.Message, error) {
		return &pb.Number{V: c.r.httpVersion}, nil
	}),
	"kong.request.get_method": guarded(reqPhase, func(c *call) (proto.Message, error) {
		if c.r.ctxTruthy("KONG_UNEXPECTED") && c.r.httpVersion < 2 {
			return pbString(c.r.origMethod), nil
		}
		return pbString(c.r.method), nil
	}),
	"kong.request.get_path": guarded(reqPhase, func(c *call) (proto.Message, error) {
		u := c.r.requestURI
		if i := strings.IndexByte(u[min(1, len(u)):], '?'); i >= 0 {
			u = u[:i+min(1, len(u))]
		}
		return pbString(normalizePath(u)), nil
	}),
	"kong.request.get_path_with_query": guarded(reqPhase, func(c *call) (proto.Message, error) {
		return pbString(c.r.requestURI), nil
	}),
	"kong.request.get_raw_query": guarded(reqPhase, func(c *call) (proto.Message, error) {
		return pbString(c.r.args), nil
	}),
	"kong.request.get_query_arg": guarded(reqPhase, func(c *call) (proto.Message, error) {
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
	}),
	"kong.request.get_query": guarded(reqPhase, func(c *call) (proto.Message, error) {
		in, err := decode(c, &pb.Int{})
		if err != nil {
			return nil, err
		}
		max := int(in.V)
		if err := checkMax("max_args", max, 1000); err != nil {
			return nil, err
		}
		return pbStruct(queryTable(c.r.args, max)), nil
	}),
	"kong.request.get_header": func(c *call) (proto.Message, error) {
		s, err := decode(c, &pb.String{})
		if err != nil {
			return nil, err
		}
		if c.r.saved != nil {
			return savedHeader(c.r.saved.requestHeaders, s.V), nil
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
	"kong.request.get_raw_body": inPhases(beforeContent, func(c *call) (proto.Message, error) {
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
	}),
	"kong.request.get_uri_captures": liveInPhases(phRequest, func(c *call) (proto.Message, error) {
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
	}),
}
