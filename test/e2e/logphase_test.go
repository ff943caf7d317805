package e2e

import (
	"github.com/mcp-relay/mcp-relay/test/standin"
)

// withLogPhase starts the plugin with -log-phase, in Kong's start command
// and in its query command (-dump then declares the Log phase): Kong then
// sends it a Log event for every request.
func withLogPhase(o *nodeOptions) {
	o.pluginArgs = append(o.pluginArgs, "-log-phase")
	o.logPhase = true
}

// callsOf counts one PDK call of a request in every phase.
func callsOf(rec standin.RequestRecord, name string) int {
	n := 0
	for _, calls := range rec.Calls {
		n += calls[name]
	}
	return n
}
