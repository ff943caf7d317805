package standin

import (
	"os"
	"runtime"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// kong/pdk/node.lua
var nodeMethods = map[string]pdkHandler{
	"kong.node.get_id": func(c *call) (proto.Message, error) {
		return pbString(c.r.node.id), nil
	},
	"kong.node.get_memory_stats": func(c *call) (proto.Message, error) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return &pb.MemoryStats{
			LuaSharedDicts: &pb.MemoryStats_LuaSharedDicts{
				Kong:        &pb.MemoryStats_LuaSharedDicts_DictStats{AllocatedSlabs: 40960, Capacity: 5242880},
				KongDbCache: &pb.MemoryStats_LuaSharedDicts_DictStats{AllocatedSlabs: 798720, Capacity: 134217728},
			},
			WorkersLuaVms: []*pb.MemoryStats_WorkerLuaVm{{HttpAllocatedGc: int64(ms.HeapAlloc), Pid: int64(os.Getpid())}},
		}, nil
	},
}
