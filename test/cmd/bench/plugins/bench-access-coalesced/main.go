// Command bench-access-coalesced is bench-access served by pdkcalls'
// own plugin-server loop, whose connections send each PDK call's frames in
// one write (pdkcalls.ServeCoalesced): the bench compares the two servers'
// cost per call.
package main

import (
	"github.com/Kong/go-pdk"

	"github.com/mcp-relay/mcp-relay/test/cmd/bench/plugins/pdkcalls"
)

// plugin has Config's fields at the top level of its schema.
type plugin pdkcalls.Config

func (p *plugin) c() *pdkcalls.Config { return (*pdkcalls.Config)(p) }

func (p *plugin) Access(k *pdk.PDK) { p.c().Phase(k, p.AccessCalls) }

func main() { pdkcalls.ServeCoalesced(func() interface{} { return &plugin{} }) }
