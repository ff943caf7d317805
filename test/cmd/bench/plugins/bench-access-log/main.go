// Command bench-access-log is a Go plugin with Access and Log phases, each
// making the PDK calls its configuration lists (none: the cost of the two
// events, Kong's log timer included).
package main

import (
	"github.com/Kong/go-pdk"

	"github.com/mcp-relay/mcp-relay/test/cmd/bench/plugins/pdkcalls"
)

// plugin has Config's fields at the top level of its schema.
type plugin pdkcalls.Config

func (p *plugin) c() *pdkcalls.Config { return (*pdkcalls.Config)(p) }

func (p *plugin) Access(k *pdk.PDK) { p.c().Phase(k, p.AccessCalls) }
func (p *plugin) Log(k *pdk.PDK)    { p.c().Phase(k, p.LogCalls) }

func main() { pdkcalls.Serve(func() interface{} { return &plugin{} }) }
