package handler

import (
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session"
)

// TestHintsAcrossRestart: hints pending at a graceful stop, restored in the
// next process, make its Log phase learn those sessions; expired ones are
// neither kept nor restored.
func TestHintsAcrossRestart(t *testing.T) {
	now := time.Now()
	old := newLearnHints()
	old.addInit("pending", now, `{"capabilities":{}}`)
	old.add("stale", now.Add(-2*hintTTL))
	old.add("taken", now)
	if !old.take("taken", now) {
		t.Fatal("take: false")
	}
	saved := old.pendingHints(now)
	if len(saved) != 1 || saved[0].ID != "pending" || saved[0].Init != `{"capabilities":{}}` {
		t.Fatalf("pending hints = %+v, want only the live one", saved)
	}

	fresh := newLearnHints()
	if fresh.pending() {
		t.Fatal("a new process has hints")
	}
	fresh.restore(append(saved, session.Hint{ID: "expired", Until: now.Add(-time.Second)}), now)
	if !fresh.pending() {
		t.Fatal("restored hints do not wake the Log phase")
	}
	if fresh.take("expired", now) {
		t.Error("an expired hint was restored")
	}
	if ok, init := fresh.takeInit("pending", now); !ok || init != `{"capabilities":{}}` {
		t.Errorf("the restored hint: taken %v, initialize params %q (recovery needs them)", ok, init)
	}
	if fresh.pending() {
		t.Error("hints still pending after every one was taken")
	}
}
