package handler

import (
	"time"

	"github.com/mcp-relay/mcp-relay/schema"
	"github.com/mcp-relay/mcp-relay/session"
)

// sessionOptions turns the validated session settings into the options the
// session package owns: the one place where configuration meets the store.
func sessionOptions(cfg schema.Session) session.Options {
	r := cfg.Redis
	opts := session.Options{
		Store:       session.StoreKind(cfg.Store),
		TTL:         time.Duration(cfg.TTL) * time.Second,
		MaxSessions: cfg.MaxSessions,
		Redis: session.RedisConfig{
			Host:             r.Host,
			Port:             r.Port,
			Username:         r.Username,
			Password:         r.Password,
			Database:         r.Database,
			SSL:              r.SSL,
			SSLVerify:        r.SSLVerify,
			ServerName:       r.ServerName,
			Timeout:          time.Duration(r.Timeout) * time.Millisecond,
			SentinelMaster:   r.SentinelMaster,
			SentinelUsername: r.SentinelUsername,
			SentinelPassword: r.SentinelPassword,
			KeyPrefix:        r.KeyPrefix,
		},
	}
	for _, n := range r.SentinelNodes {
		opts.Redis.SentinelNodes = append(opts.Redis.SentinelNodes, session.RedisNode{Host: n.Host, Port: n.Port})
	}
	for _, n := range r.ClusterNodes {
		opts.Redis.ClusterNodes = append(opts.Redis.ClusterNodes, session.RedisNode{Host: n.IP, Port: n.Port})
	}
	return opts
}
