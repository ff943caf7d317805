package schema

// AccessRules decide which consumer may use which tool (prompt, resource).
// Patterns are globs: `*` matches any run of characters, `?` one character,
// `\` escapes the next one.
type AccessRules struct {
	// Deny applies to every consumer, before any rule.
	Deny []string `json:"deny"`
	// Rules are tried in order; the first whose consumers or groups name the
	// caller (or that names neither) decides.
	Rules []AccessRule `json:"rules"`
}

// AccessRule is one consumer's (or group's) allow and deny lists.
type AccessRule struct {
	Consumers []string `json:"consumers"` // ids or usernames
	Groups    []string `json:"groups"`    // kong.ctx.shared.authenticated_groups
	Allow     []string `json:"allow"`     // set: only these
	Deny      []string `json:"deny"`      // checked before allow
}

// Configured reports whether any pattern can deny anything.
func (a AccessRules) Configured() bool { return len(a.Deny) > 0 || len(a.Rules) > 0 }

// UsesCallers reports whether a decision depends on who calls.
func (a AccessRules) UsesCallers() bool { return len(a.Rules) > 0 }

// ResourceMetadata is the RFC 9728 protected-resource metadata document.
type ResourceMetadata struct {
	// AuthorizationServers turns the document on (issuer URLs).
	AuthorizationServers []string `json:"authorization_servers"`
	ScopesSupported      []string `json:"scopes_supported"`
	// Resource is the protected resource's identifier; empty: the MCP
	// endpoint's own URL, as the request reached Kong.
	Resource string `json:"resource"`
}

// Log adds MCP fields to Kong's log serializer.
type Log struct {
	Serialize bool `json:"serialize"`
}

// Metrics bounds the labels of the process's metrics.
type Metrics struct {
	ToolLabels int `json:"tool_labels"`
}

// toolsField is config.tools: the access rules of tools and pinning.
func toolsField() *field {
	f := accessRulesField("tools", "tool names", "tools/call", "tools/list")
	f.doc += " Also pins tool definitions (pin)."
	f.fields = append(f.fields, toolPinField)
	return f
}

// accessRulesField builds the record of one kind of MCP primitive.
func accessRulesField(name, what, call, list string) *field {
	glob := &field{typ: kString, required: true, noControl: true}
	return &field{
		name: name, typ: kRecord, required: true,
		doc: "Which consumer may use which " + name + " (" + call + " refused with a JSON-RPC error, " +
			list + " answers filtered). Patterns are globs on " + what + ": `*` matches any characters, `?` one, `\\` escapes.",
		fields: []*field{
			{
				name: "deny", typ: kSet, elements: glob,
				doc: "Patterns of " + what + " denied to every consumer, before any rule.",
			},
			{
				name: "rules", typ: kArray,
				doc: "Per-consumer and per-group rules, tried in order: the first rule whose consumers or groups " +
					"name the caller (or that names neither: every caller) decides, and its deny list wins over its allow list. " +
					"No rule matching: allowed.",
				elements: &field{typ: kRecord, required: true, fields: []*field{
					{
						name: "consumers", typ: kSet, elements: &field{typ: kString, required: true},
						doc: "Consumers (id or username, as Kong's auth plugins set X-Consumer-ID and X-Consumer-Username) this rule is for.",
					},
					{
						name: "groups", typ: kSet, elements: &field{typ: kString, required: true},
						doc: "Groups this rule is for, read from kong.ctx.shared.authenticated_groups " +
							"(set by auth plugins that authenticate groups, such as ldap-auth; one PDK call when reached).",
					},
					{
						name: "allow", typ: kSet, elements: glob,
						doc: "Patterns allowed to these callers; when set, everything else is denied to them.",
					},
					{
						name: "deny", typ: kSet, elements: glob,
						doc: "Patterns denied to these callers, checked before allow.",
					},
				}},
			},
		},
	}
}

var resourceMetadataField = &field{
	name: "resource_metadata", typ: kRecord, required: true,
	doc: "RFC 9728 protected-resource metadata, served at /.well-known/oauth-protected-resource[/<path>] " +
		"(add those paths to the route) and named in the WWW-Authenticate header of auth envelopes, " +
		"so OAuth clients find the authorization server. Served when authorization_servers is set.",
	fields: []*field{
		{
			name: "authorization_servers", typ: kSet,
			elements: &field{typ: kString, required: true, noControl: true},
			doc:      "Issuer URLs of the authorization servers. Setting it turns the metadata document on.",
		},
		{
			name: "scopes_supported", typ: kSet,
			elements: &field{typ: kString, required: true, noControl: true},
			doc:      "Scopes listed in the document (needs authorization_servers, checked by the plugin).",
		},
		{
			name: "resource", typ: kString, noControl: true,
			doc: "The resource identifier (the MCP endpoint's URL). Unset: the URL the request reached, " +
				"from its forwarded scheme, Host header and path (needs authorization_servers, checked by the plugin).",
		},
	},
}

var logField = &field{
	name: "log", typ: kRecord, required: true,
	doc: "What the plugin adds to Kong's log serializer.",
	fields: []*field{
		{
			name: "serialize", typ: kBoolean, required: true, def: false,
			doc: "Whether to add an `mcp` object (method, tool, protocol, session fingerprint, reason) to " +
				"kong.log.serialize(), which Kong's logging plugins (http-log, file-log, datadog ...) send. One PDK call per MCP request.",
		},
	},
}

var metricsField = &field{
	name: "metrics", typ: kRecord, required: true,
	doc: "Labels of the plugin process's own metrics.",
	fields: []*field{
		{
			name: "tool_labels", typ: kInteger, required: true, def: 50, between: rng(0, 1000),
			doc: "Most distinct tool names the plugin process uses as the `tool` label of mcp_relay_requests_total; " +
				"later ones count as `other`.",
		},
	},
}
