package replica

import (
	"strings"
	"testing"
	"time"
)

func TestFleetCandidates(t *testing.T) {
	f := NewFleet()
	now := time.Now()
	for range 3 {
		f.Learned("svc", "busy:1", now)
	}
	f.Learned("svc", "idle:1", now)
	f.Learned("svc", "dead:1", now)
	f.Learned("svc", "down:1", now)
	f.Learned("svc", "old:1", now.Add(-2*fleetWindow))
	f.Learned("other-service", "other:1", now) // never for another service's sessions
	down := func(t string) bool { return t == "down:1" }
	pins := func(t string) float64 {
		if t == "idle:1" {
			return 5 // many pinned requests lately
		}
		return 0
	}
	got := f.Candidates("svc", now, "dead:1", down, pins)
	var names []string
	for _, c := range got {
		names = append(names, c.Target)
	}
	if strings.Join(names, ",") != "busy:1,idle:1" {
		t.Errorf("candidates = %v, want busy:1 (3 sessions) before idle:1 (1 session + 5 pins); no dead, down or old", names)
	}
	// Load decays: an hour later, both have about none.
	later := f.Candidates("svc", now.Add(time.Hour), "", nil, nil)
	for _, c := range later {
		if c.Load > 0.01 {
			t.Errorf("%s load %v an hour later", c.Target, c.Load)
		}
	}
}
