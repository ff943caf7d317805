// Package rules is the logic of access rules (config.tools, config.prompts,
// config.resources): whether a caller may use a tool, prompt or resource by
// name, and list answers filtered to what the caller may use. It knows
// nothing of Kong: the handler reads the caller and the answers through
// the PDK, and decides what to answer, log and count.
package rules

import (
	"github.com/mcp-relay/mcp-relay/schema"
)

// Kind is one kind of primitive that access rules cover, with its rules.
type Kind struct {
	Rules      *schema.AccessRules
	List       string // result member of its list answer: tools, prompts or resources
	nameKey    string // member of each listed entry that rules match
	ListMethod string // the method whose answers list it
}

// Allows decides whether who may use the primitive called name.
func (k *Kind) Allows(who *Caller, name string) bool { return Allowed(k.Rules, who, name) }

// Set is an instance's prepared rules.
type Set struct {
	kinds       []Kind // those with rules
	usesCallers bool   // a decision depends on who calls
}

// New prepares cfg's access rules; nil when none is configured.
func New(cfg *schema.Config) *Set {
	s := &Set{}
	tools := cfg.Tools.Access()
	for _, k := range []Kind{
		{&tools, "tools", "name", "tools/list"},
		{&cfg.Prompts, "prompts", "name", "prompts/list"},
		{&cfg.Resources, "resources", "uri", "resources/list"},
	} {
		if k.Rules.Configured() {
			s.kinds = append(s.kinds, k)
			s.usesCallers = s.usesCallers || k.Rules.UsesCallers()
		}
	}
	if len(s.kinds) == 0 {
		return nil
	}
	return s
}

// UsesCallers reports whether a decision depends on who calls: without,
// the caller need not be read.
func (s *Set) UsesCallers() bool { return s.usesCallers }

// ForCall is the primitive a JSON-RPC method uses by name, if it has rules.
func (s *Set) ForCall(method string) *Kind {
	var list string
	switch method {
	case "tools/call":
		list = "tools"
	case "prompts/get":
		list = "prompts"
	case "resources/read", "resources/subscribe":
		list = "resources"
	default:
		return nil
	}
	for i := range s.kinds {
		if s.kinds[i].List == list {
			return &s.kinds[i]
		}
	}
	return nil
}

// ListMethods are the methods whose answers are filtered: Access keeps
// them buffered whatever upstream.buffer_methods says.
func (s *Set) ListMethods() []string {
	out := make([]string, len(s.kinds))
	for i, k := range s.kinds {
		out[i] = k.ListMethod
	}
	return out
}
