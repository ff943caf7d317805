package handler

import (
	"time"

	"github.com/mcp-relay/mcp-relay/schema"
)

// settings are the configuration values the phases decide on, turned once
// per instance (at init) from the strings and numbers of the Kong
// configuration into what the code compares and waits with: no request
// compares an enum string or multiplies a duration.
type settings struct {
	envelopeStatus   envelopeStatus
	unknownPass      bool          // session.unknown: "pass"
	storeErrorReject bool          // session.store_error: "reject"
	redisStore       bool          // session.store: "redis"
	learnWait        time.Duration // session.learn_wait_ms
	replicaProbe     time.Duration // session.replica_probe_ms; 0: no probes
	storeTimeout     time.Duration // bound of one store write made outside a lookup
}

// envelopeStatus is envelope.status.
type envelopeStatus uint8

const (
	statusAuto envelopeStatus = iota // "auto"
	statusKeep                       // "keep"
	status200                        // "200"
)

// resolveSettings turns a validated configuration into settings.
func resolveSettings(cfg *schema.Config) settings {
	s := settings{
		unknownPass:      cfg.Session.Unknown == "pass",
		storeErrorReject: cfg.Session.StoreError == "reject",
		redisStore:       cfg.Session.Store == "redis",
		learnWait:        time.Duration(cfg.Session.LearnWaitMS) * time.Millisecond,
		replicaProbe:     time.Duration(cfg.Session.ReplicaProbeMS) * time.Millisecond,
		storeTimeout:     time.Second,
	}
	switch cfg.Envelope.Status {
	case "keep":
		s.envelopeStatus = statusKeep
	case "200":
		s.envelopeStatus = status200
	}
	if s.redisStore {
		s.storeTimeout = 2 * time.Duration(cfg.Session.Redis.Timeout) * time.Millisecond
	}
	return s
}
