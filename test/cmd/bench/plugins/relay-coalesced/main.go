// Command relay-coalesced is mcp-relay's handler served by the bench's
// coalescing plugin-server loop (pdkcalls.ServeLoop: each PDK call's frames
// in one write) instead of go-pdk's server: a prototype the bench times
// against mcp-relay itself (-kong-baseline), not a build to deploy. It has
// no metrics listener and no sessions file.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mcp-relay/mcp-relay/handler"
	"github.com/mcp-relay/mcp-relay/logging"
	"github.com/mcp-relay/mcp-relay/schema"
	"github.com/mcp-relay/mcp-relay/test/cmd/bench/plugins/pdkcalls"
)

func main() {
	logPhase := flag.Bool("log-phase", false, "declare Kong's Log phase (as mcp-relay's flag)")
	flag.Parse() // go-pdk's server package registered -dump and -kong-prefix
	logging.Install()
	handler.DeclareLogPhase(*logPhase)
	if flag.Lookup("dump").Value.String() == "true" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		name := filepath.Base(exe)
		out, err := schema.DumpInfo(name, "0.1.0", 1000, handler.Phases(),
			filepath.Join(flag.Lookup("kong-prefix").Value.String(), name+".socket"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(string(out))
		return
	}
	pdkcalls.ServeLoop(handler.New)
}
