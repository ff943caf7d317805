package handler

import "testing"

func TestResponseRewrites(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		method     string
		headers    map[string][]string
		respHdr    map[string]string
		wantStatus int // 0: untouched
		wantCalls  int
	}{
		{name: "200 untouched with one call", status: 200, method: "POST", wantCalls: 1},
		{name: "bare 401 becomes 200 envelope", status: 401, method: "POST", wantStatus: 200, wantCalls: 6},
		{name: "401 with resource_metadata keeps 401", status: 401, method: "POST",
			respHdr:    map[string]string{"WWW-Authenticate": `Bearer resource_metadata="https://x/.well-known/oauth-protected-resource"`},
			wantStatus: 401, wantCalls: 6},
		{name: "504 becomes envelope", status: 504, method: "POST", wantStatus: 200, wantCalls: 4},
		{name: "404 is not in rewrite_statuses", status: 404, method: "POST", wantCalls: 1},
		{name: "preflight untouched", status: 401, method: "OPTIONS", wantCalls: 2,
			headers: map[string][]string{"access-control-request-method": {"POST"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, storeOff)
			h := tt.headers
			if h == nil {
				h = hdr()
			}
			f := &fakeKong{status: tt.status, method: tt.method, headers: h, respHeaders: tt.respHdr,
				body: []byte(`{"jsonrpc":"2.0","id":"abc","method":"initialize"}`)}
			p.response(f)
			if len(f.calls) != tt.wantCalls {
				t.Errorf("PDK calls %v, want %d", f.calls, tt.wantCalls)
			}
			if tt.wantStatus == 0 {
				if f.exited {
					t.Fatalf("rewrote %d: %s", f.exitStatus, f.exitBody)
				}
				return
			}
			if f.exitStatus != tt.wantStatus {
				t.Fatalf("status %d, want %d", f.exitStatus, tt.wantStatus)
			}
			env := f.exitJSON(t)
			if env["id"] != "abc" {
				t.Errorf("id not echoed: %s", f.exitBody)
			}
			if w := tt.respHdr["WWW-Authenticate"]; w != "" && f.exitHeaders["WWW-Authenticate"][0] != w {
				t.Errorf("upstream challenge lost: %v", f.exitHeaders)
			}
		})
	}
}
