package e2e

import (
	"github.com/mcp-relay/mcp-relay/test/standin"
)

// withLogPhase starts the plugin with -log-phase (MCP_RELAY_LOG_PHASE=on,
// which -dump reads too): Kong then sends it a Log event for every request.
func withLogPhase(o *standin.Options) { o.Env = append(o.Env, "MCP_RELAY_LOG_PHASE=on") }

// callsOf counts one PDK call of a request in every phase.
func callsOf(rec standin.RequestRecord, name string) int {
	n := 0
	for _, calls := range rec.Calls {
		n += calls[name]
	}
	return n
}
