// Package session keeps the mapping from an MCP session id to the upstream
// replica that created it, shared by every Kong node that runs mcp-relay.
package session

import (
	"context"
	"errors"
	"time"
)

// State is where a session stands.
type State uint8

const (
	// Active sessions are pinned to their replica.
	Active State = iota + 1
	// Lost sessions had their replica fail; clients get 404 and re-initialise.
	Lost
	// Ended sessions were deleted by the client (DELETE answered 2xx/404/405).
	Ended
)

// Record is what the store keeps per session id.
type Record struct {
	Target   string // "ip:port" of the replica that answered initialize
	Consumer string // Kong consumer id that created it ("" without auth)
	Created  time.Time
	State    State
}

// ErrUnavailable wraps every backend failure (Redis down, timeout). Callers
// decide with session.store_error whether to pass or reject.
var ErrUnavailable = errors.New("session store unavailable")

// Store is the contract every backend satisfies (memory, redis).
// All methods are safe for concurrent use.
type Store interface {
	// Lookup returns the record of id. When no record exists yet it waits up
	// to wait for one to be learned (the Log phase runs after the client got
	// the initialize answer) and returns found=false if none arrives. Lookups
	// of known records slide their expiry without writing on every call.
	// Tombstones (Lost, Ended) are returned as records, without waiting. If
	// ctx ends first, err satisfies errors.Is(err, ctx.Err()).
	Lookup(ctx context.Context, id string, wait time.Duration) (rec Record, found bool, err error)
	// Learn records id -> rec with the store's TTL and wakes its waiters.
	Learn(ctx context.Context, id string, rec Record) error
	// MarkLost and End keep a short tombstone so that later requests are
	// answered 404 at once (no learn wait), on every node.
	MarkLost(ctx context.Context, id string) error
	End(ctx context.Context, id string) error
	// Close releases connections and goroutines.
	Close() error
}
