package handler

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcp-relay/mcp-relay/envelope"
	"github.com/mcp-relay/mcp-relay/handler/toolpin"
	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/logging"
	"github.com/mcp-relay/mcp-relay/schema"
	"github.com/mcp-relay/mcp-relay/session"
)

// Pinned tool definitions (config.tools.pin; docs/tool-pinning.md): every
// tools/list answer's definitions are digested and judged against the
// approved digests and the scope's pins in the session store (Response
// phase, on the body the list filter reads anyway); in enforce mode tools
// whose definition is not approved are withheld from the answer, and their
// calls refused in Access from the node's copy of the pins (no PDK call,
// and no store round trip while the copy is fresh).

// pinning is one instance's tool pinning.
type pinning struct {
	policy *toolpin.Policy
	// scope names the Kong entity the instance belongs to, whose tools
	// share one baseline: "service:<id>", "route:<id>" or "global".
	scope string
	book  session.ToolPins
}

// kongKeys are what Kong adds to an instance's configuration
// (plugins_iterator.lua get_plugin_config): the entity it is attached to.
type kongKeys struct {
	RouteID   *string `json:"route_id"`
	ServiceID *string `json:"service_id"`
}

// scopeOf names the entity an instance's configuration belongs to: its
// service, else its route, else "global".
func scopeOf(config []byte) string {
	var k kongKeys
	_ = json.Unmarshal(config, &k) // Parse already refused anything unreadable
	switch {
	case k.ServiceID != nil && *k.ServiceID != "":
		return "service:" + *k.ServiceID
	case k.RouteID != nil && *k.RouteID != "":
		return "route:" + *k.RouteID
	}
	return scopeGlobal
}

const scopeGlobal = "global"

// initPins prepares pinning once the store is open; tools/list answers are
// then always buffered.
func (p *Plugin) initPins(cfg *schema.Config) {
	policy := toolpin.NewPolicy(cfg.Tools.Pin)
	if policy == nil {
		return
	}
	p.pins = &pinning{policy: policy, scope: p.scope, book: session.ToolPinsOf(p.store)}
	if !slices.Contains(p.bufferMethods, "tools/list") {
		p.bufferMethods = append(p.bufferMethods, "tools/list")
		slices.Sort(p.bufferMethods)
	}
	if p.scope == scopeGlobal {
		logger.Warn("tool pinning on a plugin that is neither on a service nor on a route: every service shares one baseline; enable it per service")
	}
}

// judgeList judges a tools/list answer body (Response phase) and returns
// the filter hook withholding the tools not approved (enforce mode), or nil
// when nothing is withheld. reject: the store failed and
// session.store_error is reject (enforce mode): the answer must not pass.
func (p *Plugin) judgeList(body []byte) (hide func([]byte) bool, reject bool) {
	pn := p.pins
	pages, ok := toolpin.ReadAnswer(body)
	if !ok || len(pages) == 0 {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
	defer cancel()
	start := time.Now()
	set, err := pn.book.Pins(ctx, pn.scope)
	if err != nil {
		p.pinsFailed(err)
		return nil, pn.policy.Enforce && p.settings.storeErrorReject
	}
	now := time.Now()
	j := pn.policy.Judge(set, pages)
	changes := j.Changes
	w := session.PinWrite{First: j.First, Seal: j.Seal, Hold: pn.policy.Holds(set, changes, now)}
	if !w.Empty() {
		if after, err := pn.book.WritePins(ctx, pn.scope, w); err != nil {
			p.pinsFailed(err) // judged against what was read; held only in this answer
		} else {
			set = after
			if len(j.First) > 0 { // another node may have recorded a first digest first
				changes = pn.policy.Judge(set, pages).Changes
				if more := pn.policy.Holds(set, changes, now); len(more) > 0 {
					if after, err := pn.book.WritePins(ctx, pn.scope, session.PinWrite{Hold: more}); err == nil {
						set = after
					}
				}
			}
		}
	}
	storeLatency.WithLabelValues("tool_pins").Observe(time.Since(start).Seconds())
	p.reportChanges(changes, now)
	if !pn.policy.Enforce {
		return nil, false
	}
	withheld := false
	for _, page := range pages {
		for _, t := range page.Tools {
			withheld = withheld || pn.policy.Hidden(set, t, changes, now)
		}
	}
	if !withheld {
		return nil, false
	}
	return func(entry []byte) bool {
		return pn.policy.Hidden(set, toolpin.ReadTool(entry), changes, now)
	}, false
}

func (p *Plugin) pinsFailed(err error) {
	storeErrors.Inc()
	p.health.failed()
	logger.Warn("tool pins unavailable", "err", err, "store_error", p.cfg.Session.StoreError)
}

// refuseUnapproved answers, in enforce mode, a call of a tool whose
// definition is not approved (Access, after the access rules) and reports
// whether it did. A batch holding such a call is answered whole.
func (p *Plugin) refuseUnapproved(k kong.PDK, r *request) (exited bool) {
	if p.pins == nil || !p.pins.policy.Enforce {
		return false
	}
	if r.bodyUnread { // the body, not Mcp-Name, is what the server runs
		p.readBody(k, r)
	}
	calls := false
	switch r.rpc.Kind {
	case envelope.Single:
		calls = r.rpc.Method == "tools/call"
	case envelope.Batch:
		r.rpc.Elements(func(e envelope.Request) bool {
			calls = e.Method == "tools/call"
			return !calls
		})
	}
	if !calls {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.storeTimeout())
	set, err := p.pins.book.Pins(ctx, p.pins.scope)
	cancel()
	if err != nil {
		p.pinsFailed(err)
		if p.settings.storeErrorReject {
			p.reply(k, r, reasonStore, "")
			return true
		}
		return false
	}
	now := time.Now()
	refused := func(e envelope.Request) (reason, bool) {
		if e.Method == "tools/call" && !p.pins.policy.Callable(set, e.Name, now) {
			return reasonToolNotApproved, true
		}
		return reason{}, false
	}
	switch r.rpc.Kind {
	case envelope.Single:
		if _, no := refused(r.rpc); no {
			logger.Info("call of a tool not approved refused", "scope", p.pins.scope, "tool", r.rpc.Name)
			p.reply(k, r, reasonToolNotApproved, "")
			return true
		}
	case envelope.Batch:
		any := false
		r.rpc.Elements(func(e envelope.Request) bool {
			_, any = refused(e)
			return !any
		})
		if any {
			p.replyBatch(k, r, refused)
			return true
		}
	}
	return false
}

// reported remembers the changes this node logged, so that a changed
// definition is logged and counted once per node and hold time, not on
// every list answer showing it.
var reported struct {
	sync.Mutex
	at map[string]time.Time
}

const maxReported = 4096

// reportChanges logs and counts changes not reported lately: at warn, so
// that they reach Kong's log (package logging), with what to add to the
// deck to approve them.
func (p *Plugin) reportChanges(changes []toolpin.Change, now time.Time) {
	pn := p.pins
	for _, c := range changes {
		key := pn.scope + "\x00" + c.Tool + "\x00" + c.Kind + "\x00" + c.Digest
		reported.Lock()
		last, seen := reported.at[key]
		fresh := !seen || now.Sub(last) >= time.Duration(p.cfg.Tools.Pin.HoldTTL)*time.Second
		if fresh {
			if reported.at == nil || len(reported.at) >= maxReported {
				reported.at = map[string]time.Time{}
			}
			reported.at[key] = now
		}
		reported.Unlock()
		if !fresh {
			continue
		}
		toolChanges.WithLabelValues(toolLabel(c.Tool, p.cfg.Metrics.ToolLabels), c.Kind).Inc()
		action := "reported (detect mode)"
		if pn.policy.Enforce {
			action = "hidden from tools/list and its calls refused until approved"
		}
		if c.Kind == toolpin.KindUnreadable {
			logger.Warn("tool definition cannot be pinned", "scope", pn.scope, "tool", c.Tool, "err", c.Err,
				"action", action, logging.KindKey, "tool_change "+fingerprint(key))
			continue
		}
		logger.Warn("tool definition not approved", "scope", pn.scope, "tool", c.Tool, "change", c.Kind,
			"digest", c.Digest, "accepted", strings.Join(c.Accepted, ","), "action", action,
			"approve", "add to config.tools.pin.approved: "+approvalSnippet(c),
			logging.KindKey, "tool_change "+fingerprint(key))
	}
}

// approvalSnippet is the deck entries that approve a change, in YAML flow
// style: the new digest, and for a tool accepted by its first recorded
// definition that one too (approved entries replace it for that tool:
// keep it listed while replicas still serve it).
func approvalSnippet(c toolpin.Change) string {
	var entries []string
	if !c.Approved {
		for _, d := range c.Accepted {
			entries = append(entries, toolpin.DeckEntry(c.Tool, d))
		}
	}
	entries = append(entries, toolpin.DeckEntry(c.Tool, c.Digest))
	return "[" + strings.Join(entries, ", ") + "]"
}

// replyRequest answers a buffered request from the Response phase with
// why's envelope, reading the request again for its id.
func (p *Plugin) replyRequest(k kong.PDK, why reason) {
	headers, err := k.RequestHeaders()
	if err != nil {
		logger.Error("reading request headers", "err", err)
	}
	r := newRequest(headers)
	if r.mayHaveBody() {
		p.readBody(k, &r)
	}
	p.reply(k, &r, why, "")
}
