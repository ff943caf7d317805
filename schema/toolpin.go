package schema

import (
	"regexp"
	"strings"
)

// Tools is config.tools: the access rules of tools and their pinned
// definitions.
type Tools struct {
	Deny  []string     `json:"deny"`
	Rules []AccessRule `json:"rules"`
	Pin   ToolPin      `json:"pin"`
}

// Access returns the access rules of tools alone.
func (t Tools) Access() AccessRules { return AccessRules{Deny: t.Deny, Rules: t.Rules} }

// ToolPin pins tool definitions: a digest of each tool's definition is
// compared with the approved ones, or with the first one seen.
type ToolPin struct {
	// Mode: "off" (default), "detect" (count and log changes) or "enforce"
	// (also hide changed tools and refuse their calls until approved).
	Mode string `json:"mode"`
	// Approved lists the approved definitions; a tool listed here is
	// accepted only with one of its listed digests.
	Approved []ApprovedTool `json:"approved"`
	// HoldTTL is how many seconds a definition that is not approved keeps
	// its tool held after it was last seen.
	HoldTTL int `json:"hold_ttl"`
}

// ApprovedTool is one approved definition of a tool.
type ApprovedTool struct {
	Name   string `json:"name"`
	Digest string `json:"digest"` // "sha256:" and 64 hex digits
}

// Pin modes.
const (
	PinOff     = "off"
	PinDetect  = "detect"
	PinEnforce = "enforce"
)

// On reports whether tool definitions are pinned at all.
func (p ToolPin) On() bool { return p.Mode == PinDetect || p.Mode == PinEnforce }

// DigestPrefix starts every tool digest.
const DigestPrefix = "sha256:"

// digestPattern is what an approved digest looks like: the same rule in
// Go and, as a Lua pattern with a length, in Kong.
var digestPattern = &pattern{
	lua:    "^sha256:%x+$",
	length: len(DigestPrefix) + 64,
	re:     regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`),
	what:   "`sha256:` followed by 64 hexadecimal digits",
}

// NormalizeDigest lower-cases a digest's hexadecimal digits, as the plugin
// writes them.
func NormalizeDigest(d string) string { return strings.ToLower(d) }

var toolPinField = &field{
	name: "pin", typ: kRecord, required: true,
	doc: "Pinned tool definitions: a digest of each tool's definition in tools/list answers is compared with " +
		"the approved digests, or with the first definition seen (trust on first use), kept in the session store. " +
		"A changed or new definition is counted and logged with the deck entry that approves it. " +
		"See docs/tool-pinning.md.",
	fields: []*field{
		{
			name: "mode", typ: kString, required: true, def: PinOff,
			oneOf: []string{PinOff, PinDetect, PinEnforce},
			doc: "`off` pins nothing; `detect` counts and logs changed or new tool definitions; `enforce` also " +
				"hides such a tool from tools/list answers and answers its tools/call with a JSON-RPC error " +
				"(reason `tool_not_approved`) until its definition is approved.",
		},
		{
			name: "approved", typ: kArray,
			doc: "Approved tool definitions. A tool named here is accepted only with one of the digests listed for it; " +
				"other tools are accepted with the definition first seen. Paste the entry the log gives for a change.",
			elements: &field{typ: kRecord, required: true, fields: []*field{
				{
					name: "name", typ: kString, required: true, noControl: true,
					doc: "Name of the tool, as in tools/list.",
				},
				{
					name: "digest", typ: kString, required: true, match: digestPattern,
					doc: "Digest of the approved definition: `sha256:` and 64 hexadecimal digits, as the plugin logs it.",
				},
			}},
		},
		{
			name: "hold_ttl", typ: kInteger, required: true, def: 3600, between: rng(60, 2592000),
			doc: "Seconds a tool stays held (hidden and refused in enforce mode) after an answer last showed a definition " +
				"that is not approved; approving it releases the tool at once.",
		},
	},
}
