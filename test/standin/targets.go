package standin

import (
	"fmt"
	"math/rand"
	"time"
)

// SetTargets replaces the targets of the upstream named upstream at
// runtime, as adding and deleting targets through Kong's Admin API does:
// on a target event Kong invalidates the upstream's targets and recreates
// its balancer (targets_M.on_target_event calls
// balancers.create_balancer(upstream, true) in kong/runloop/balancer/targets.lua).
// Requests already past the balancer keep the peer they got. Each target is
// "host:port" with weight 100.
func (n *Node) SetTargets(upstream string, targets []string) error {
	u := n.deck.UpstreamByName(upstream)
	if u == nil {
		return fmt.Errorf("standin: SetTargets: no upstream named %q", upstream)
	}
	nu := *u
	nu.Targets = nil
	for _, t := range targets {
		tg, err := parseTarget(t, 100)
		if err != nil {
			return fmt.Errorf("standin: SetTargets %q: %v", t, err)
		}
		tg.ID = entityUUID("targets", "targets:*:"+u.ID+":"+tg.Target)
		nu.Targets = append(nu.Targets, tg)
	}
	b := newRRBalancer(&nu, rand.New(rand.NewSource(time.Now().UnixNano())))
	n.balMu.Lock()
	n.balancers[u.Name] = b
	n.balMu.Unlock()
	return nil
}
