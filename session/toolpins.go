package session

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Tool pins are what pinned tool definitions (the plugin's
// config.tools.pin) keep per scope, a Kong service or route: the digest of
// each tool's first definition seen (trust on first use), whether a
// complete tool list was seen (after which new names are not trusted), and
// the definitions seen that were not accepted (held). Every Kong node and
// every plugin process must agree on them, so they live where sessions do:
// in Redis for a Redis store; in this process (kept in the sessions file)
// for the memory store and for no store at all.

// PinSet is one scope's tool pins. A PinSet a store returns is shared:
// callers must not change it.
type PinSet struct {
	// Baseline is the digest first recorded for each tool name.
	Baseline map[string]string
	// Held is, per tool name, the last definition seen that was not
	// accepted.
	Held map[string]Hold
	// Sealed: a complete list (an answer without nextCursor) was seen.
	Sealed bool
}

// Hold is a definition seen that was not accepted, and when it was last seen.
type Hold struct {
	Digest string
	Seen   time.Time
}

// PinWrite is one change of a scope's pins.
type PinWrite struct {
	// First are digests to record for names that have none (SET NX: a
	// name's first digest, from any node, stays).
	First map[string]string
	// Seal marks the scope's list complete.
	Seal bool
	// Hold records definitions seen that were not accepted.
	Hold map[string]Hold
}

// Empty reports a write that changes nothing.
func (w PinWrite) Empty() bool { return len(w.First) == 0 && !w.Seal && len(w.Hold) == 0 }

// Bounds of one scope's pins: a server listing ever more tool names cannot
// grow them without end. Names beyond them are not recorded, and so never
// trusted.
const (
	MaxPinnedTools = 10_000
	MaxHeldTools   = 10_000
)

// ToolPins keeps tool pins per scope. Methods are safe for concurrent use.
type ToolPins interface {
	// Pins returns the scope's pins (an empty set when none were written).
	Pins(ctx context.Context, scope string) (*PinSet, error)
	// WritePins applies w and returns the scope's pins after it.
	WritePins(ctx context.Context, scope string, w PinWrite) (*PinSet, error)
}

// ToolPinsOf returns where tool pins live with store s: the Redis store's
// own (shared by every node), else the process's (memory store, or none).
func ToolPinsOf(s Store) ToolPins {
	switch st := s.(type) {
	case *handle:
		return handlePins{st}
	case ToolPins:
		return st
	}
	return localPins
}

// handlePins follows a handle to its current shared store.
type handlePins struct{ h *handle }

func (p handlePins) pins() (ToolPins, error) {
	st, err := p.h.get()
	if err != nil {
		return nil, err
	}
	if tp, ok := st.(ToolPins); ok {
		return tp, nil
	}
	return localPins, nil
}

func (p handlePins) Pins(ctx context.Context, scope string) (*PinSet, error) {
	tp, err := p.pins()
	if err != nil {
		return nil, err
	}
	return tp.Pins(ctx, scope)
}

func (p handlePins) WritePins(ctx context.Context, scope string, w PinWrite) (*PinSet, error) {
	tp, err := p.pins()
	if err != nil {
		return nil, err
	}
	return tp.WritePins(ctx, scope, w)
}

// apply returns a copy of s with w applied (s may be nil), and whether
// anything changed.
func (s *PinSet) apply(w PinWrite) (*PinSet, bool) {
	out := &PinSet{Baseline: map[string]string{}, Held: map[string]Hold{}}
	if s != nil {
		out.Baseline, out.Held, out.Sealed = maps.Clone(s.Baseline), maps.Clone(s.Held), s.Sealed
	}
	changed := false
	for name, d := range w.First {
		if _, ok := out.Baseline[name]; !ok && len(out.Baseline) < MaxPinnedTools {
			out.Baseline[name] = d
			changed = true
		}
	}
	if w.Seal && !out.Sealed {
		out.Sealed, changed = true, true
	}
	for name, h := range w.Hold {
		old, ok := out.Held[name]
		if !ok && len(out.Held) >= MaxHeldTools {
			continue
		}
		if !ok || h.Seen.After(old.Seen) {
			out.Held[name] = h
			changed = true
		}
	}
	return out, changed
}

// merge adds what another copy of a scope's pins knows (a sessions file
// another process wrote): first digests stay, the later hold wins.
func (s *PinSet) merge(o *PinSet) *PinSet {
	out, _ := s.apply(PinWrite{First: o.Baseline, Seal: o.Sealed, Hold: o.Held})
	return out
}

// processPins are the tool pins of this process: the memory store's, and
// those of routes without a store. The sessions file keeps them across
// restarts.
type processPins struct {
	mu      sync.Mutex
	scopes  map[string]*PinSet
	version atomic.Uint64 // bumped by every change, for the sessions file
}

var localPins = &processPins{scopes: map[string]*PinSet{}}

var emptyPins = &PinSet{Baseline: map[string]string{}, Held: map[string]Hold{}}

func (p *processPins) Pins(_ context.Context, scope string) (*PinSet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.scopes[scope]; s != nil {
		return s, nil
	}
	return emptyPins, nil
}

func (p *processPins) WritePins(_ context.Context, scope string, w PinWrite) (*PinSet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, changed := p.scopes[scope].apply(w)
	if !changed {
		if old := p.scopes[scope]; old != nil {
			return old, nil
		}
		return emptyPins, nil
	}
	p.scopes[scope] = s
	p.version.Add(1)
	return s, nil
}

// snapshot returns every scope's pins and the version they are at.
func (p *processPins) snapshot() (map[string]*PinSet, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.scopes), p.version.Load()
}

// restore merges pins read from a sessions file.
func (p *processPins) restore(scopes map[string]*PinSet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for scope, s := range scopes {
		if old := p.scopes[scope]; old != nil {
			p.scopes[scope] = old.merge(s)
		} else {
			p.scopes[scope], _ = (*PinSet)(nil).apply(PinWrite{First: s.Baseline, Seal: s.Sealed, Hold: s.Held})
		}
	}
}
