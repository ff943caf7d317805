package handler

import (
	"encoding/json"
	"testing"
)

func TestOriginAllowList(t *testing.T) {
	const allow = `{"origin":{"allow":["https://App.example.com/","null"]},"session":{"store":"off"}}`
	body := `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`
	tests := []struct {
		name       string
		config     string
		headers    map[string][]string
		method     string
		body       string
		wantStatus int // 0: passes
		wantReason string
	}{
		{name: "no list: any origin passes", config: storeOff, headers: hdr("origin", "http://evil.example"), body: body},
		{name: "no Origin passes", config: allow, headers: hdr(), body: body},
		{name: "listed origin passes, case and slash ignored", config: allow, headers: hdr("origin", "https://app.EXAMPLE.com"), body: body},
		{name: "null passes when listed", config: allow, headers: hdr("origin", "null"), body: body},
		{name: "foreign origin: 403 envelope", config: allow, headers: hdr("origin", "http://evil.example"), body: body,
			wantStatus: 403, wantReason: "origin_forbidden"},
		{name: "one foreign among several", config: allow, headers: hdr("origin", "https://app.example.com", "origin", "http://evil.example"),
			body: body, wantStatus: 403, wantReason: "origin_forbidden"},
		{name: "null not listed", config: `{"origin":{"allow":["https://app.example.com"]},"session":{"store":"off"}}`,
			headers: hdr("origin", "null"), body: body, wantStatus: 403, wantReason: "origin_forbidden"},
		{name: "foreign preflight: plain 403", config: allow, method: "OPTIONS",
			headers:    map[string][]string{"origin": {"http://evil.example"}, "access-control-request-method": {"POST"}},
			wantStatus: 403},
		{name: "foreign origin beats a missing key", config: allow,
			headers: hdr("origin", "http://evil.example", "x-anonymous-consumer", "true"), body: body,
			wantStatus: 403, wantReason: "origin_forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, tt.config)
			method := tt.method
			if method == "" {
				method = "POST"
			}
			f := &fakeKong{method: method, headers: tt.headers, body: []byte(tt.body)}
			p.access(f)
			if tt.wantStatus == 0 {
				if f.exited {
					t.Fatalf("answered %d %s", f.exitStatus, f.exitBody)
				}
				return
			}
			if !f.exited || f.exitStatus != tt.wantStatus {
				t.Fatalf("exited=%v status %d, want %d", f.exited, f.exitStatus, tt.wantStatus)
			}
			if tt.wantReason == "" {
				return
			}
			var env struct {
				ID    json.RawMessage
				Error struct {
					Code    int
					Message string
					Data    struct{ Reason string }
				}
			}
			if err := json.Unmarshal(f.exitBody, &env); err != nil {
				t.Fatalf("%v: %s", err, f.exitBody)
			}
			if env.Error.Data.Reason != tt.wantReason || string(env.ID) != "5" || env.Error.Code != -32600 {
				t.Errorf("envelope %s", f.exitBody)
			}
		})
	}
}
