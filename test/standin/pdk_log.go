package standin

import (
	"encoding/json"
	"strings"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// phasesWithCtx is phases_with_ctx of kong/pdk/log.lua.
const phasesWithCtx = phRewrite | phAccess | phHeaderFilter | phResponse | phBodyFilter | phLog

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
		// Not namespaced: pb_rpc.lua's load_service bound kong.log.<level>
		// once, at worker start, to the global logger, so every line names
		// the RPC dispatcher as its source and no plugin, in every phase.
		c.r.node.log.logf(level, "[kong] pb_rpc.lua:233 %s", b.String())
		return nil, nil
	}
}

// kong/pdk/log.lua
var logMethods = map[string]pdkHandler{
	"kong.log.alert":  logHandler(lvlAlert),
	"kong.log.crit":   logHandler(lvlCrit),
	"kong.log.err":    logHandler(lvlErr),
	"kong.log.warn":   logHandler(lvlWarn),
	"kong.log.notice": logHandler(lvlNotice),
	"kong.log.info":   logHandler(lvlInfo),
	"kong.log.debug":  logHandler(lvlDebug),
	"kong.log.set_serialize_value": inPhases(phasesWithCtx, func(c *call) (proto.Message, error) {
		kv, err := decode(c, &pb.KV{})
		if err != nil {
			return nil, err
		}
		c.r.serializes = append(c.r.serializes, serializeValue{key: kv.K, value: luaValue(kv.V), mode: "set"})
		return nil, nil
	}),
	"kong.log.serialize": liveInPhases(phLog, func(c *call) (proto.Message, error) {
		if c.r.saved != nil {
			return pbString(c.r.saved.serialized), nil
		}
		return pbString(string(encodeCJSON(c.r.serialize()))), nil
	}),
}
