// Command dumpschema prints mcp-relay's Kong schema (schema.KongSchema) as
// JSON, so the stand-in's tests can validate kong/kong.yaml against the real
// schema with a test plugin named mcp-relay.
package main

import (
	"encoding/json"
	"os"

	"github.com/mcp-relay/mcp-relay/schema"
)

func main() {
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(schema.KongSchema()); err != nil {
		os.Exit(1)
	}
}
