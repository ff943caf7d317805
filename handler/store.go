package handler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/mcp-relay/mcp-relay/session"
)

// ownRecord checks that a finished request really was its session's: an
// active session of this consumer; it returns the session's record. A
// request the plugin answered itself (unknown or someone else's session)
// must never end or lose a session.
func (p *Plugin) ownRecord(ctx context.Context, id, consumer string) (session.Record, bool) {
	if !validSessionID(id, p.cfg.Session.MaxIDLength) {
		return session.Record{}, false
	}
	rec, found, err := p.store.Lookup(ctx, id, 0)
	if err != nil {
		storeErrors.Inc()
		return session.Record{}, false
	}
	return rec, found && rec.State == session.Active &&
		(!p.cfg.Session.BindConsumer || rec.Consumer == consumer)
}

// setState ends or loses a session on every node.
func (p *Plugin) setState(ctx context.Context, id string, state session.State) {
	if state == session.Ended {
		p.storeOp("end", func() error { return p.store.End(ctx, id) })
		sessionsEnded.Inc()
		return
	}
	p.storeOp("lost", func() error { return p.store.MarkLost(ctx, id) })
	sessionsLost.Inc()
	logger.Warn("replica failed: session marked lost", "session", fingerprint(id))
}

func (p *Plugin) storeOp(op string, call func() error) {
	start := time.Now()
	err := call()
	storeLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		storeErrors.Inc()
		logger.Warn("session store failed", "op", op, "err", err)
	}
}

// fingerprint names a session in logs without revealing its id.
func fingerprint(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:4])
}
