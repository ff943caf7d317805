package handler

import (
	"reflect"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/schema"
	"github.com/mcp-relay/mcp-relay/session"
)

func TestSessionOptions(t *testing.T) {
	cfg := schema.Defaults().Session
	cfg.Store = "redis"
	cfg.TTL = 90
	cfg.MaxSessions = 5
	cfg.Redis = schema.Redis{
		Host: "h", Port: 7000, Username: "u", Password: "p", Database: 3, SSL: true, SSLVerify: true,
		ServerName: "sni", Timeout: 1500, SentinelMaster: "m", SentinelUsername: "su", SentinelPassword: "sp",
		SentinelNodes: []schema.HostPort{{Host: "s1", Port: 26380}},
		ClusterNodes:  []schema.IPPort{{IP: "10.0.0.1", Port: 7001}},
		KeyPrefix:     "k:",
	}
	want := session.Options{
		Store: session.StoreRedis, TTL: 90 * time.Second, MaxSessions: 5,
		Redis: session.RedisConfig{
			Host: "h", Port: 7000, Username: "u", Password: "p", Database: 3, SSL: true, SSLVerify: true,
			ServerName: "sni", Timeout: 1500 * time.Millisecond, SentinelMaster: "m", SentinelUsername: "su", SentinelPassword: "sp",
			SentinelNodes: []session.RedisNode{{Host: "s1", Port: 26380}},
			ClusterNodes:  []session.RedisNode{{Host: "10.0.0.1", Port: 7001}},
			KeyPrefix:     "k:",
		},
	}
	got := sessionOptions(cfg)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sessionOptions =\n%#v\nwant\n%#v", got, want)
	}
	// A setting added to RedisConfig must be filled here too.
	rv := reflect.ValueOf(got.Redis)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Errorf("RedisConfig.%s is not filled from the configuration", rv.Type().Field(i).Name)
		}
	}
	if got := sessionOptions(schema.Defaults().Session); got.Store != session.StoreMemory || got.TTL != time.Hour {
		t.Errorf("defaults: %+v", got)
	}
}
