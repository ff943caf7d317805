package peers_test

import (
	"os"
	"testing"

	"github.com/mcp-relay/mcp-relay/test/peers"
)

func TestMain(m *testing.M) {
	code := m.Run()
	peers.RemoveBinaries()
	os.Exit(code)
}
