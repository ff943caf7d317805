// Package schema holds mcp-relay's configuration: its Go types, defaults,
// validation, and the Kong schema that `mcp-relay -dump` prints. One field
// table drives all of them, so they cannot drift apart.
package schema

// Config is one plugin instance's configuration (one per route or service).
// Kong sends it as JSON when it starts the instance; Parse decodes it.
// Defaults, allowed values and documentation of every field are in the field
// table (fields.go), which also produces the Kong schema and docs/configuration.md's
// configuration reference.
type Config struct {
	Auth     Auth     `json:"auth"`
	Envelope Envelope `json:"envelope"`
	Upstream Upstream `json:"upstream"`
	// Tools, Prompts and Resources decide which consumer may use which
	// tool, prompt or resource (rules.go); Tools also pins tool
	// definitions (toolpin.go).
	Tools     Tools       `json:"tools"`
	Prompts   AccessRules `json:"prompts"`
	Resources AccessRules `json:"resources"`
	Log       Log         `json:"log"`
	Metrics   Metrics     `json:"metrics"`
	Origin    Origin      `json:"origin"`
	Session   Session     `json:"session"`
}

// Origin is the gateway's Origin check (DNS-rebinding protection).
type Origin struct {
	// Allow lists the origins allowed to send requests; empty: no check.
	Allow []string `json:"allow"`
}

// Auth says how rejections decided by Kong's auth plugins are recognised.
type Auth struct {
	// Anonymous is the consumer (id or username) that the route's auth plugins
	// use as `anonymous`. A request arriving as this consumer is answered with
	// the auth envelope. Empty: only X-Anonymous-Consumer is looked at.
	Anonymous string `json:"anonymous"`
	// WWWAuthenticate is sent with auth envelopes, e.g.
	// `Bearer resource_metadata="https://example.com/.well-known/oauth-protected-resource"`.
	WWWAuthenticate string `json:"www_authenticate"`
	// ResourceMetadata is the RFC 9728 protected-resource metadata the
	// plugin serves (rules.go).
	ResourceMetadata ResourceMetadata `json:"resource_metadata"`
}

// Envelope shapes the JSON-RPC error answers the plugin writes.
type Envelope struct {
	// Status: "auto" (default), "keep" or "200".
	Status string `json:"status"`
	// AuthCode is the JSON-RPC code of auth errors for legacy requests (-32001).
	AuthCode int `json:"auth_code"`
	// AuthMessage is the message of auth errors (DefaultAuthMessage).
	AuthMessage string `json:"auth_message"`
	// ModernAuthCode is the code of auth errors for 2026-07-28 requests; that
	// spec reserves -32000..-32099, so it must lie outside -32768..-32000.
	ModernAuthCode int `json:"modern_auth_code"`
	// MaxBodyBytes: request bodies larger than this are not parsed (id null).
	MaxBodyBytes int `json:"max_body_bytes"`
}

// Upstream says which upstream answers are rewritten, and so which requests
// must be buffered for that to be possible.
type Upstream struct {
	RewriteStatuses []int    `json:"rewrite_statuses"`
	BufferMethods   []string `json:"buffer_methods"`
	// HostHeader, when set, is sent as Host on pinned requests instead of
	// the Host Kong sends when it balances (which the plugin restores).
	HostHeader string `json:"host_header"`
	// CheckMethodHeaders: 2026-07-28 Mcp-Method/Mcp-Name must match the body.
	CheckMethodHeaders bool `json:"check_method_headers"`
	// SetMethodHeaders: legacy requests get the Mcp-Method and Mcp-Name
	// headers of a 2026-07-28 request, from their body, so that Kong plugins
	// running after mcp-relay can key on the method and tool.
	SetMethodHeaders bool `json:"set_method_headers"`
}

// Session configures pinning of legacy MCP sessions to replicas.
type Session struct {
	Store          string `json:"store"` // "memory" (default), "redis", "off"
	TTL            int    `json:"ttl"`   // seconds of inactivity before a record expires
	LearnWaitMS    int    `json:"learn_wait_ms"`
	Unknown        string `json:"unknown"` // "reject" (404, default) or "pass"
	BindConsumer   bool   `json:"bind_consumer"`
	MaxSessions    int    `json:"max_sessions"` // memory store bound (LRU)
	MaxIDLength    int    `json:"max_id_length"`
	StoreError     string `json:"store_error"`      // "pass" (default) or "reject"
	ReplicaProbeMS int    `json:"replica_probe_ms"` // 0: no probes
	Recover        bool   `json:"recover"`
	Redis          Redis  `json:"redis"`
}

// Redis follows the field names of Kong's own Redis settings
// (kong/tools/redis/schema.lua), plus a key prefix.
type Redis struct {
	Host             string     `json:"host"`
	Port             int        `json:"port"`
	Username         string     `json:"username"`
	Password         string     `json:"password"`
	Database         int        `json:"database"`
	SSL              bool       `json:"ssl"`
	SSLVerify        bool       `json:"ssl_verify"`
	ServerName       string     `json:"server_name"`
	Timeout          int        `json:"timeout"` // milliseconds
	SentinelMaster   string     `json:"sentinel_master"`
	SentinelUsername string     `json:"sentinel_username"`
	SentinelPassword string     `json:"sentinel_password"`
	SentinelNodes    []HostPort `json:"sentinel_nodes"`
	ClusterNodes     []IPPort   `json:"cluster_nodes"`
	KeyPrefix        string     `json:"key_prefix"`
}

// HostPort is a Sentinel node, as Kong names it.
type HostPort struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// IPPort is a Cluster node, as Kong names it.
type IPPort struct {
	IP   string `json:"ip"`
	Port int    `json:"port"`
}
