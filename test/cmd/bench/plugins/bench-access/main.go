// Command bench-access is a Go plugin with an Access phase only, which makes
// the PDK calls its configuration lists (none: the cost of the event alone).
package main

import (
	"github.com/Kong/go-pdk"

	"github.com/mcp-relay/mcp-relay/test/cmd/bench/plugins/pdkcalls"
)

// plugin has Config's fields at the top level of its schema.
type plugin pdkcalls.Config

func (p *plugin) c() *pdkcalls.Config { return (*pdkcalls.Config)(p) }

func (p *plugin) Access(k *pdk.PDK) { p.c().Phase(k, p.AccessCalls) }

func main() { pdkcalls.Serve(func() interface{} { return &plugin{} }) }
