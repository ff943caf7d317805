package toolpin

import (
	"slices"
	"time"

	"github.com/mcp-relay/mcp-relay/schema"
	"github.com/mcp-relay/mcp-relay/session"
)

// Policy is one instance's pinning settings, prepared.
type Policy struct {
	Enforce bool
	// approved are the deck's digests per tool name (lower case).
	approved map[string][]string
	holdTTL  time.Duration
}

// NewPolicy prepares cfg; nil when pinning is off.
func NewPolicy(cfg schema.ToolPin) *Policy {
	if !cfg.On() {
		return nil
	}
	p := &Policy{Enforce: cfg.Mode == schema.PinEnforce, approved: map[string][]string{},
		holdTTL: time.Duration(cfg.HoldTTL) * time.Second}
	for _, a := range cfg.Approved {
		d := schema.NormalizeDigest(a.Digest)
		if !slices.Contains(p.approved[a.Name], d) {
			p.approved[a.Name] = append(p.approved[a.Name], d)
		}
	}
	return p
}

// Accepted returns the digests a tool is accepted with: the deck's when it
// lists the tool (approved true), else the one first recorded.
func (p *Policy) Accepted(set *session.PinSet, name string) (digests []string, approved bool) {
	if a := p.approved[name]; len(a) > 0 {
		return a, true
	}
	if d, ok := set.Baseline[name]; ok {
		return []string{d}, false
	}
	return nil, false
}

// Kinds of change.
const (
	KindChanged    = "changed"    // a tool with an accepted definition showed another one
	KindNew        = "new"        // a tool first seen after its list was complete, not in the deck
	KindUnreadable = "unreadable" // an entry whose definition cannot be digested
)

// Change is a definition seen that is not accepted.
type Change struct {
	Tool   string
	Kind   string
	Digest string // "" for KindUnreadable
	// Accepted are the digests the tool is accepted with (none for a new
	// tool); Approved: they are the deck's.
	Accepted []string
	Approved bool
	Err      error // why an entry is unreadable
}

// Judgement is what one answer means for a scope's pins.
type Judgement struct {
	// First are the digests to record as first seen (trust on first use):
	// tools without an accepted definition while the list is not complete.
	First map[string]string
	// Seal: the answer ends a list, which the scope had not seen yet.
	Seal    bool
	Changes []Change
}

// Judge compares the tools of an answer's pages with the scope's pins.
//
// Trust on first use: until the scope's list is complete (sealed: an
// answer without nextCursor was seen), a tool without an accepted
// definition has its first digest recorded (every page of a first list,
// from any replica: the first recorded digest of a name wins, on every
// node). Once sealed, such a tool is new: reported, and in enforce mode
// held until approved. A tool listed twice in one answer with two
// definitions records the first and reports the second.
func (p *Policy) Judge(set *session.PinSet, pages []Page) Judgement {
	var j Judgement
	for _, page := range pages {
		for _, t := range page.Tools {
			if t.Digest == "" {
				j.Changes = append(j.Changes, Change{Tool: t.Name, Kind: KindUnreadable, Err: t.Err})
				continue
			}
			accepted, approved := p.Accepted(set, t.Name)
			if first, ok := j.First[t.Name]; ok && !approved {
				accepted = []string{first} // recorded by this very answer
			}
			switch {
			case slices.Contains(accepted, t.Digest):
			case len(accepted) == 0 && !set.Sealed:
				if j.First == nil {
					j.First = map[string]string{}
				}
				j.First[t.Name] = t.Digest
			case len(accepted) == 0:
				j.Changes = append(j.Changes, Change{Tool: t.Name, Kind: KindNew, Digest: t.Digest})
			default:
				j.Changes = append(j.Changes, Change{Tool: t.Name, Kind: KindChanged, Digest: t.Digest,
					Accepted: accepted, Approved: approved})
			}
		}
		j.Seal = j.Seal || (page.Last && !set.Sealed)
	}
	return j
}

// Holds returns the holds to record for changes: a tool's held definition
// is written when it is new to the scope, and refreshed at most every
// tenth of the hold time while answers keep showing it.
func (p *Policy) Holds(set *session.PinSet, changes []Change, now time.Time) map[string]session.Hold {
	var out map[string]session.Hold
	for _, c := range changes {
		if c.Tool == "" {
			continue
		}
		if h, ok := set.Held[c.Tool]; ok && h.Digest == c.Digest && now.Sub(h.Seen) < p.holdTTL/10 {
			continue
		}
		if out == nil {
			out = map[string]session.Hold{}
		}
		out[c.Tool] = session.Hold{Digest: c.Digest, Seen: now}
	}
	return out
}

// Held reports whether tool name is held: a definition of it that is not
// accepted was seen within the hold time.
func (p *Policy) Held(set *session.PinSet, name string, now time.Time) bool {
	h, ok := set.Held[name]
	if !ok || now.Sub(h.Seen) >= p.holdTTL {
		return false
	}
	accepted, _ := p.Accepted(set, name)
	return !slices.Contains(accepted, h.Digest)
}

// Callable reports whether enforce mode lets a call of tool name through:
// it is not held, and it has an accepted definition, unless the scope's
// list is not complete yet (trust on first use).
func (p *Policy) Callable(set *session.PinSet, name string, now time.Time) bool {
	if p.Held(set, name, now) {
		return false
	}
	accepted, _ := p.Accepted(set, name)
	return len(accepted) > 0 || !set.Sealed
}

// Hidden reports whether a tool's entry is withheld from a list answer in
// enforce mode: it cannot be digested, it is held, or (the store could not
// record it) it is among the changes just seen.
func (p *Policy) Hidden(set *session.PinSet, t Tool, changes []Change, now time.Time) bool {
	if t.Digest == "" || p.Held(set, t.Name, now) {
		return true
	}
	for _, c := range changes {
		if c.Tool == t.Name {
			return true
		}
	}
	return false
}
