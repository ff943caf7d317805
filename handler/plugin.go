// Package handler holds mcp-relay's phase logic: what Access, Response and
// Log do with MCP traffic. It talks to Kong only through kong.PDK, and to the
// session store only through session.Store.
package handler

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/Kong/go-pdk"

	"github.com/mcp-relay/mcp-relay/handler/replica"
	"github.com/mcp-relay/mcp-relay/handler/rules"
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/schema"
	"github.com/mcp-relay/mcp-relay/session"
)

// Plugin is one instance of mcp-relay: one per route (or service) it is
// enabled on. go-pdk decodes Kong's config JSON into it with UnmarshalJSON and
// then shares it between all concurrent requests of that route, so it is
// read-only after decoding.
type Plugin struct {
	cfg schema.Config

	settings settings // cfg resolved once (settings.go)

	rewrite       [200]bool // statuses 400..599 that Response rewrites
	bufferMethods []string  // sorted, for binary search
	store         session.Store
	hints         *learnHints    // the process's; tests may give an instance its own
	logs          *logPhaseState // the process's; tests may give an instance its own
	replicas      *replica.Watch // the process's (replicas.go); nil: no probes

	rules    *rules.Set        // nil: no access rules (authz.go)
	pins     *pinning          // nil: tool definitions are not pinned (toolpin.go)
	scope    string            // the Kong service or route of the instance (toolpin.go)
	metadata *resourceMetadata // nil: no protected-resource metadata
	invalid  *invalidConfig    // set: the configuration was refused (configerr.go)
	health   *storeHealth      // the Redis store's watcher (storehealth.go)
	origins  originAllowList   // config.origin.allow; nil: no check
	hosts    hostRule          // how Kong sets Host when it balances
}

// New is the constructor go-pdk's server calls for each instance.
func New() any { return &Plugin{} }

// The phase handlers go-pdk looks for.
var (
	_ interface{ Access(*pdk.PDK) }   = (*Plugin)(nil)
	_ interface{ Response(*pdk.PDK) } = (*Plugin)(nil)
	_ interface{ Log(*pdk.PDK) }      = (*Plugin)(nil)
	_ json.Unmarshaler                = (*Plugin)(nil)
)

// UnmarshalJSON applies defaults, validates, and prepares the instance. A
// configuration the plugin refuses still starts the instance, which then
// answers config_invalid naming the fields (configerr.go).
func (p *Plugin) UnmarshalJSON(data []byte) (err error) {
	defer func() { // go-pdk calls this from its socket loop, without recover
		if v := recover(); v != nil {
			panics.Inc()
			err = fmt.Errorf("mcp-relay: config: %v", v)
		}
	}()
	cfg, err := schema.Parse(data)
	if err == nil {
		p.scope = scopeOf(data)
		err = p.init(cfg)
	}
	if err != nil {
		return p.startInvalid(err)
	}
	return nil
}

// NewFromConfig builds an instance from an already parsed configuration.
func NewFromConfig(cfg schema.Config) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Plugin{scope: scopeGlobal}
	return p, p.init(cfg)
}

func (p *Plugin) init(cfg schema.Config) error {
	p.cfg = cfg
	p.settings = resolveSettings(&cfg)
	for _, s := range cfg.Upstream.RewriteStatuses {
		if s >= 400 && s <= 599 {
			p.rewrite[s-400] = true
		}
	}
	p.bufferMethods = slices.Clone(cfg.Upstream.BufferMethods)
	if err := p.initAuthz(&cfg); err != nil {
		return err
	}
	p.origins = newOriginAllowList(cfg.Origin.Allow)
	warnAuthMessage(cfg.Envelope.AuthMessage)
	slices.Sort(p.bufferMethods)
	sessionOpts := sessionOptions(cfg.Session)
	sessionOpts.TargetSeen = replicaSeen
	sessionOpts.ReplicaGone = replicaGoneElsewhere
	store, err := session.Open(sessionOpts)
	if err != nil {
		return fmt.Errorf("config.session: %w", err)
	}
	p.store = store
	p.initPins(&cfg)
	p.hints = hints
	p.logs = logPhase
	if store != nil && p.settings.replicaProbe > 0 {
		p.replicas = watchFor(p.settings.replicaProbe, time.Duration(cfg.Session.TTL)*time.Second)
	}
	p.watchStore(sessionOpts.Redis)
	return nil
}

func (p *Plugin) rewrites(status int) bool {
	return status >= 400 && status <= 599 && p.rewrite[status-400]
}

func (p *Plugin) buffers(method string) bool {
	_, ok := slices.BinarySearch(p.bufferMethods, method)
	return ok
}

// Access, Response and Log are the entry points Kong calls. Each catches
// panics (panic.go): go-pdk does not, and one bad request must not take
// down the process that serves every request of the node.
func (p *Plugin) Access(k *pdk.PDK)   { p.access(kong.Wrap(k)) }
func (p *Plugin) Response(k *pdk.PDK) { p.response(kong.Wrap(k)) }
func (p *Plugin) Log(k *pdk.PDK)      { p.log(kong.Wrap(k)) }
