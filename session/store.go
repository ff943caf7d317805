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
	// Init is the params object of the initialize request that opened the
	// session (JSON, at most MaxInitBytes): what a recovery replays to open
	// a new upstream session for the same client. "" means not recoverable.
	Init string
	// Upstream is the session id to send to Target when it differs from the
	// id the record is stored under (the client's id after a recovery).
	Upstream string
	// Alias is, on the records a recovery wrote for other ids, the client's
	// original session id: the one every recovery of the family is keyed by.
	Alias string
	// Service is the id of the Kong service whose replicas serve the
	// session: a recovery opens the new session on a replica of the same
	// service.
	Service string
}

// MaxInitBytes bounds Record.Init: larger initialize params are not kept
// (the session then cannot be recovered).
const MaxInitBytes = 4096

// Flight is implemented by stores shared between Kong nodes, so that one
// node recovers a session while the others wait for its record.
type Flight interface {
	// Claim tries to take the recovery of id for at most ttl; the claim of
	// a holder whose process died ends sooner (a lease its holder renews).
	// ok=false: another node holds it. release gives it up early.
	Claim(ctx context.Context, id string, ttl time.Duration) (release func(), ok bool, err error)
	// AwaitWrite returns id's record once done(record) holds, waking on the
	// writes of any node, or found=false when wait runs out first.
	AwaitWrite(ctx context.Context, id string, wait time.Duration, done func(Record) bool) (rec Record, found bool, err error)
}

// ReplicaNews is implemented by stores shared between Kong nodes, so that
// what one node finds of a replica reaches every node: a replica whose
// process exited (and may be listening again with a new process) has
// forgotten the sessions created before, whichever node they are sent
// through, including a node that was not watching it then.
type ReplicaNews interface {
	// ReplicaGone tells every node that target's process was found gone at
	// at (the others hear it through their Options.ReplicaGone), and keeps
	// it for nodes that start watching target later.
	ReplicaGone(ctx context.Context, target string, at time.Time) error
	// ReplicaGoneAt is when any node last found target's process gone
	// (zero: never, or before the store's TTL).
	ReplicaGoneAt(ctx context.Context, target string) (time.Time, error)
}

// ErrUnavailable wraps every backend failure (Redis down, timeout). Callers
// decide with session.store_error whether to pass or reject.
var ErrUnavailable = errors.New("session store unavailable")

// Store is the contract every backend satisfies (memory, redis).
// All methods are safe for concurrent use.
type Store interface {
	// Lookup returns the record of id. When no record exists yet it waits up
	// to wait for one to be learned (a record learned in Kong's Log phase
	// lands after the client got the initialize answer) and returns
	// found=false if none arrives. Lookups
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
