package handler

import (
	"time"

	"github.com/mcp-relay/mcp-relay/session"
)

// PendingHints returns the learn hints whose Log phase has not run yet, for
// the plugin process to keep in its session snapshot at a graceful stop:
// Kong sends a request's Log event to whichever process serves the socket
// by then, and with the hint the new process still records the session.
func PendingHints() []session.Hint {
	return hints.pendingHints(time.Now())
}

// ReplicaSeen tells the process that target, a replica of the Kong service
// service, answered an initialize once: the sessions file's TargetSeen
// (the sessions it restores are pinned to it).
func ReplicaSeen(service, target string) { replicaSeen(service, target) }

// RestoreHints adds hints a previous plugin process left in its snapshot.
func RestoreHints(hs []session.Hint) {
	hints.restore(hs, time.Now())
}

func (h *learnHints) pendingHints(now time.Time) []session.Hint {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]session.Hint, 0, len(h.ids))
	for id, x := range h.ids {
		if now.Before(x.until) {
			out = append(out, session.Hint{ID: id, Until: x.until, Init: x.init})
		}
	}
	return out
}

func (h *learnHints) restore(hs []session.Hint, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range hs {
		if len(h.ids) >= maxHints {
			break
		}
		if now.Before(x.Until) && x.ID != "" {
			h.ids[x.ID] = hint{until: x.Until, init: x.Init}
		}
	}
	h.waiting.Store(len(h.ids) > 0 || now.Before(h.overflow))
}
