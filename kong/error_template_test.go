package kong

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/mcp-relay/mcp-relay/envelope"
)

// TestErrorTemplate: error_template.json, filled as Kong fills it (the
// message, then the request id), is a JSON-RPC error envelope with the
// plugin's gateway code, which lies outside JSON-RPC's reserved range.
func TestErrorTemplate(t *testing.T) {
	tmpl, err := os.ReadFile("error_template.json")
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(string(tmpl), "An invalid response was received from the upstream server", "0a1b2c")
	var msg struct {
		JSONRPC string `json:"jsonrpc"`
		Error   struct {
			Code    int
			Message string
			Data    struct {
				Reason    string
				RequestID string `json:"request_id"`
			}
		}
		ID any `json:"id"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil {
		t.Fatalf("filled template is not JSON: %v\n%s", err, body)
	}
	if msg.JSONRPC != "2.0" || msg.ID != nil || msg.Error.Data.Reason != "gateway_error" || msg.Error.Data.RequestID != "0a1b2c" {
		t.Errorf("template envelope %s", body)
	}
	if msg.Error.Code != envelope.CodeGateway {
		t.Errorf("template code %d, want the plugin's gateway code %d", msg.Error.Code, envelope.CodeGateway)
	}
	if c := msg.Error.Code; c >= -32768 && c <= -32000 {
		t.Errorf("template code %d is in JSON-RPC's reserved range", c)
	}
}
