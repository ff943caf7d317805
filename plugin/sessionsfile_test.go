package main

import "testing"

func TestSessionsFilePath(t *testing.T) {
	tests := []struct{ flag, want string }{
		{"", "/usr/local/kong/mcp-relay.sessions"},
		{"off", ""},
		{"/var/lib/mcp-relay/sessions", "/var/lib/mcp-relay/sessions"},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			if got := sessionsFilePath(tt.flag, "/usr/local/kong", "/usr/local/bin/mcp-relay"); got != tt.want {
				t.Errorf("sessionsFilePath(%q) = %q, want %q", tt.flag, got, tt.want)
			}
		})
	}
}
