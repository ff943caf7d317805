// Command bench-access-response is a Go plugin with Access and Response
// phases, each making the PDK calls its configuration lists. Its Response
// phase makes Kong buffer the upstream answer (buffered proxying), unless
// Access clears that; with report set it answers with what its Response
// calls returned (the bench's probe).
package main

import (
	"github.com/Kong/go-pdk"

	"github.com/mcp-relay/mcp-relay/test/cmd/bench/plugins/pdkcalls"
)

// plugin has Config's fields at the top level of its schema.
type plugin pdkcalls.Config

func (p *plugin) c() *pdkcalls.Config { return (*pdkcalls.Config)(p) }

func (p *plugin) Access(k *pdk.PDK)   { p.c().Phase(k, p.AccessCalls) }
func (p *plugin) Response(k *pdk.PDK) { p.c().Respond(k) }

func main() { pdkcalls.Serve(func() interface{} { return &plugin{} }) }
