package handler

import (
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/logging"
)

// flushKongLog writes the events waiting for Kong's error log (package
// logging queues every record at notice and above, at most one per kind per
// 10 s) through kong.log.err/warn/notice, one PDK call each. The Log phase
// calls it: Kong runs that phase after the client has its answer, so the
// calls cost the client nothing, and a request pays them only when
// something went wrong since the last flush (Pending is one atomic load).
func flushKongLog(k kong.PDK) {
	kl, ok := k.(kong.Logger)
	if !ok || !logging.Pending() {
		return
	}
	events := logging.Take()
	for i, e := range events {
		if err := kl.KongLog(e.Level, e.Line); err != nil {
			logging.Requeue(events[i:]) // the next request tries again
			return
		}
	}
}
