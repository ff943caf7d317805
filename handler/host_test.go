package handler

import "testing"

func TestPinnedHostFollowsKong(t *testing.T) {
	tests := []struct {
		name      string
		config    string
		serialize string // the Log phase's kong.log.serialize() of an initialize; "" none seen yet
		target    string
		client    string // the client's Host
		wantHost  string // "" : no set_header call
	}{
		{name: "IP target, no route seen yet: ip:port", target: "10.0.0.7:8080", wantHost: "10.0.0.7:8080"},
		{name: "http on port 80: bare IP, no call", target: "10.0.0.7:80",
			serialize: `{"service":{"protocol":"http"},"route":{"preserve_host":false}}`},
		{name: "https on port 443: bare IP, no call", target: "10.0.0.7:443",
			serialize: `{"service":{"protocol":"https"},"route":{"preserve_host":false}}`},
		{name: "https on port 80: port kept", target: "10.0.0.7:80", wantHost: "10.0.0.7:80",
			serialize: `{"service":{"protocol":"https"},"route":{"preserve_host":false}}`},
		{name: "IPv6 target", target: "[fd00::7]:9101", wantHost: "[fd00::7]:9101"},
		{name: "preserve_host: the client's Host", target: "10.0.0.7:8080", client: "mcp.example.com", wantHost: "mcp.example.com",
			serialize: `{"service":{"protocol":"http"},"route":{"preserve_host":true}}`},
		{name: "preserve_host without a client Host: no call", target: "10.0.0.7:8080",
			serialize: `{"service":{"protocol":"http"},"route":{"preserve_host":true}}`},
		{name: "host_header wins", config: `{"upstream":{"host_header":"mcp.internal"}}`, target: "10.0.0.7:8080", client: "x",
			wantHost: "mcp.internal", serialize: `{"route":{"preserve_host":true}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := tt.config
			if config == "" {
				config = `{}`
			}
			p, mem := pinned(t, config)
			if tt.serialize != "" {
				p.hosts.learn([]byte(tt.serialize))
			}
			learn(t, mem, "sess-1", tt.target, "")
			h := hdr("mcp-session-id", "sess-1")
			if tt.client != "" {
				h["host"] = []string{tt.client}
			}
			f := &fakeKong{method: "POST", headers: h, body: []byte(callBody)}
			p.access(f)
			got, set := f.upstreamSet["Host"]
			if tt.wantHost == "" {
				if set {
					t.Errorf("set Host %q, want no call (set_target's bare host is Kong's)", got)
				}
				if len(f.calls) != 4 {
					t.Errorf("PDK calls %v, want 4", f.calls)
				}
				return
			}
			if got != tt.wantHost {
				t.Errorf("Host %q, want %q", got, tt.wantHost)
			}
			if len(f.calls) != 5 || f.calls[2] != "service.set_target" || f.calls[3] != "service.request.set_header" {
				t.Errorf("PDK calls %v: want set_header right after set_target", f.calls)
			}
		})
	}
}

func TestPinnedHostOfTheRecoveryCall(t *testing.T) {
	p := newPlugin(t, storeOff)
	if got := p.pinnedHost(hdr(), "10.0.0.7:8080"); got != "10.0.0.7:8080" {
		t.Errorf("IP target: %q", got)
	}
	if got := p.pinnedHost(hdr(), "10.0.0.7:80"); got != "10.0.0.7" {
		t.Errorf("port 80: %q", got)
	}
	p.hosts.learn([]byte(`{"route":{"preserve_host":true}}`))
	if got := p.pinnedHost(map[string][]string{"host": {"mcp.example.com"}}, "10.0.0.7:8080"); got != "mcp.example.com" {
		t.Errorf("preserve_host: %q", got)
	}
	if got := newPlugin(t, `{"upstream":{"host_header":"mcp.internal"},"session":{"store":"off"}}`).pinnedHost(hdr(), "10.0.0.7:8080"); got != "mcp.internal" {
		t.Errorf("host_header: %q", got)
	}
}
