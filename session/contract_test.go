package session_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session"
	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/session/storetest"
)

func TestContractMemory(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	stores := map[*testing.T]*session.Memory{}
	storetest.RunContract(t, func(t *testing.T, ttl time.Duration) session.Store {
		mu.Lock()
		defer mu.Unlock()
		if s := stores[t]; s != nil {
			return s // a memory store is one node: "another node" is itself
		}
		s := session.NewMemory(session.MemoryOptions{TTL: ttl})
		stores[t] = s
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestContractMemoryViaOpen(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	n := 0
	cfgs := map[*testing.T]session.Options{}
	storetest.RunContract(t, func(t *testing.T, ttl time.Duration) session.Store {
		mu.Lock()
		cfg, ok := cfgs[t]
		if !ok {
			// A distinct max_sessions gives each subtest its own store.
			n++
			cfg = session.Options{Store: session.StoreMemory, TTL: ttl, MaxSessions: 1_000_000 + n}
			cfgs[t] = cfg
		}
		mu.Unlock()
		s, err := session.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// contractTimeout is the Redis stores' session.redis.timeout in the
// contract: it tests what a store does, not how fast Redis answers, so no
// stall of a loaded machine may turn a command into a timeout.
const contractTimeout = 10 * time.Second

func TestContractRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	storetest.RunContract(t, redisFactory(session.DefaultCacheSize, func(prefix string) session.RedisConfig {
		return session.RedisConfig{Host: srv.Host(), Port: srv.Port(), Timeout: contractTimeout, KeyPrefix: prefix}
	}))
}

func TestContractRedisNoCache(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	storetest.RunContract(t, redisFactory(0, func(prefix string) session.RedisConfig {
		return session.RedisConfig{Host: srv.Host(), Port: srv.Port(), Timeout: contractTimeout, KeyPrefix: prefix}
	}))
}

func TestContractRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	storetest.RunContract(t, redisFactory(session.DefaultCacheSize, func(prefix string) session.RedisConfig {
		return session.RedisConfig{ClusterNodes: clusterNodes(c), Timeout: contractTimeout, KeyPrefix: prefix}
	}))
}

func clusterNodes(c *redistest.Cluster) []session.RedisNode {
	var nodes []session.RedisNode
	for i := range c.Addrs() {
		nodes = append(nodes, session.RedisNode{Host: c.Node(i).Host(), Port: c.Node(i).Port()})
	}
	return nodes
}

// redisFactory gives each subtest its own key prefix; every call is a new
// client, i.e. another Kong node.
func redisFactory(cacheSize int, cfg func(prefix string) session.RedisConfig) func(t *testing.T, ttl time.Duration) session.Store {
	var mu sync.Mutex
	prefixes := map[*testing.T]string{}
	return func(t *testing.T, ttl time.Duration) session.Store {
		mu.Lock()
		p, ok := prefixes[t]
		if !ok {
			p = fmt.Sprintf("ct%d:", len(prefixes))
			prefixes[t] = p
		}
		mu.Unlock()
		s, err := session.NewRedis(cfg(p), session.RedisOptions{TTL: ttl, CacheSize: cacheSize})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		waitSubscribed(t, s)
		return s
	}
}

// waitSubscribed waits (bounded) for the store's event subscription, so a
// test's first Learn on another node can wake this one.
func waitSubscribed(t testing.TB, s *session.Redis) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if s.Stats().Subscribed {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("store not subscribed to its event channel after 10s")
}
