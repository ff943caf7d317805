package session

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-relay/mcp-relay/session/redistest"
)

func benchIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("mcp-session-%08x-%04x-4%03x-8%03x-%012x", i, i&0xffff, i&0xfff, i&0xfff, i)
	}
	return ids
}

func BenchmarkMemory(b *testing.B) {
	ctx := context.Background()
	rec := Record{Target: "10.0.0.1:8080", Consumer: "consumer-1", Created: time.Now()}

	b.Run("LookupHot", func(b *testing.B) {
		m := NewMemory(MemoryOptions{TTL: time.Hour})
		defer m.Close()
		_ = m.Learn(ctx, "hot", rec)
		b.ReportAllocs()
		for b.Loop() {
			_, _, _ = m.Lookup(ctx, "hot", 250*time.Millisecond)
		}
	})
	b.Run("LookupHotParallel", func(b *testing.B) {
		m := NewMemory(MemoryOptions{TTL: time.Hour})
		defer m.Close()
		_ = m.Learn(ctx, "hot", rec)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _, _ = m.Lookup(ctx, "hot", 250*time.Millisecond)
			}
		})
	})
	b.Run("Lookup1MRandomParallel", func(b *testing.B) {
		const n = 1 << 20
		m, ids := filledMemory(b, n, rec)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for pb.Next() {
				_, _, _ = m.Lookup(ctx, ids[r.IntN(n)], 0)
			}
		})
	})
	// Every lookup slides its session's last-seen time (the refresh path).
	b.Run("LookupSliding", func(b *testing.B) {
		const n = 100_000
		m := NewMemory(MemoryOptions{TTL: 64 * time.Millisecond, MaxSessions: n}) // slides at >= 1ms
		defer m.Close()
		ids := benchIDs(n)
		for _, id := range ids {
			_ = m.Learn(ctx, id, rec)
		}
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			_, _, _ = m.Lookup(ctx, ids[i], 0)
			if i++; i == n {
				i = 0
				_ = m.Learn(ctx, ids[0], rec) // keep the first ones from expiring on slow machines
			}
		}
	})
	// The sliding refresh alone: before every lookup the session's last-seen
	// time is set back by one granule (TTL/64, at most 1s), so every lookup
	// is due to slide it and does (one CAS), on a hot session. The set-back
	// is one atomic add inside the measured loop.
	b.Run("Refresh", func(b *testing.B) {
		m := NewMemory(MemoryOptions{TTL: time.Hour})
		defer m.Close()
		_ = m.Learn(ctx, "hot", rec)
		sh := m.shard("hot")
		sh.mu.RLock()
		e := &sh.slots[sh.index["hot"]] // no writes below: the slab stays put
		sh.mu.RUnlock()
		b.ReportAllocs()
		for b.Loop() {
			atomic.AddInt64(&e.seen, -m.gran)
			if _, ok, _ := m.Lookup(ctx, "hot", 0); !ok {
				b.Fatal("hot session lost")
			}
		}
		if age := m.now() - atomic.LoadInt64(&e.seen); age >= m.gran {
			b.Fatalf("last-seen not slid by the lookups: %v old", time.Duration(age))
		}
	})
	b.Run("LearnNew", func(b *testing.B) {
		const n = 1 << 20
		m := NewMemory(MemoryOptions{TTL: time.Hour, MaxSessions: n}) // evicts past n
		defer m.Close()
		ids := benchIDs(n)
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			_ = m.Learn(ctx, ids[i&(n-1)]+"x"[:i>>20&1], rec)
			i++
		}
	})
	b.Run("End", func(b *testing.B) {
		const n = 1 << 16
		m, ids := filledMemory(b, n, rec)
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			_ = m.End(ctx, ids[i&(n-1)])
			i++
		}
	})
}

// BenchmarkMemoryFootprint reports heap bytes per session at 1M sessions.
func BenchmarkMemoryFootprint(b *testing.B) {
	per := memoryFootprint(b, 1_000_000) // once, whatever b.N
	for b.Loop() {
	}
	b.ReportMetric(per, "bytes/session")
}

// BenchmarkRedis measures the Redis store on a real redis-server (started
// here; redis-server must be on PATH), with the per-node cache
// (LookupHotCached, LookupHotParallelCached, RefreshCached, Learn, End) and
// without it (the same ending in Uncached). Each reports Redis round trips
// per operation (roundtrips/op).
func BenchmarkRedis(b *testing.B) {
	srv := redistest.StartServer(b)
	ctx := context.Background()
	rec := Record{Target: "10.0.0.1:8080", Consumer: "consumer-1", Created: time.Now()}
	node := func(b *testing.B, cache int) *Redis {
		return newNode(b, singleCfg(srv, "b:"), RedisOptions{TTL: time.Hour, CacheSize: cache})
	}
	report := func(b *testing.B, s *Redis, before uint64) {
		b.ReportMetric(float64(s.Stats().RoundTrips-before)/float64(b.N), "roundtrips/op")
	}
	// Lookups of known sessions pass no wait, as the handler's first ask
	// does (handler/access.go): an uncached wait would register a waiter.
	for _, v := range []struct {
		cache int
		name  string // of the lookups
		write string // of Learn and End (the cached ones came first, unsuffixed)
	}{
		{DefaultCacheSize, "Cached", ""},
		{0, "Uncached", "Uncached"},
	} {
		b.Run("LookupHot"+v.name, func(b *testing.B) {
			s := node(b, v.cache)
			_ = s.Learn(ctx, "hot", rec)
			_, _, _ = s.Lookup(ctx, "hot", 0)
			rt := s.Stats().RoundTrips
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, ok, err := s.Lookup(ctx, "hot", 0); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
			report(b, s, rt)
		})
		b.Run("LookupHotParallel"+v.name, func(b *testing.B) {
			s := node(b, v.cache)
			_ = s.Learn(ctx, "hot", rec)
			rt := s.Stats().RoundTrips
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _, _ = s.Lookup(ctx, "hot", 0)
				}
			})
			report(b, s, rt)
		})
		// A lookup that reaches Redis when the record is due for its sliding
		// refresh (less than TTL + cache life left, i.e. TTL/10 after it was
		// last armed): the script re-arms the expiry. With the cache this is
		// a cache miss, as when a cached copy has outlived its life. Records
		// are written straight into Redis with half that time left, in
		// batches (timer stopped), and each is looked up once.
		b.Run("Refresh"+v.name, func(b *testing.B) {
			s := node(b, v.cache)
			seed := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
			defer seed.Close()
			val := encodeRecord(Record{Target: rec.Target, Consumer: rec.Consumer, Created: rec.Created, State: Active})
			left := time.Duration(s.refreshMS/2) * time.Millisecond
			var ids []string
			next, batch := 0, 0
			refill := func() {
				ids, next = ids[:0], 0
				pipe := seed.Pipeline()
				for j := 0; j < 1024; j++ {
					id := fmt.Sprintf("mcp-refresh-%s-%08x-%024x", v.name, batch, j)
					ids = append(ids, id)
					pipe.Set(ctx, s.key(id), val, left)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				batch++
			}
			refill()
			rt := s.Stats().RoundTrips
			b.ReportAllocs()
			for b.Loop() {
				if next == len(ids) {
					b.StopTimer()
					refill()
					b.StartTimer()
				}
				if _, ok, err := s.Lookup(ctx, ids[next], 0); !ok || err != nil {
					b.Fatal(ok, err)
				}
				next++
			}
			report(b, s, rt)
			if ttl := seed.PTTL(ctx, s.key(ids[next-1])).Val(); ttl.Milliseconds() < s.refreshMS {
				b.Fatalf("PTTL %v after the lookup: the record was not re-armed", ttl)
			}
		})
		b.Run("Learn"+v.write, func(b *testing.B) {
			s := node(b, v.cache)
			ids := benchIDs(1 << 14)
			rt := s.Stats().RoundTrips
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if err := s.Learn(ctx, ids[i&(1<<14-1)], rec); err != nil {
					b.Fatal(err)
				}
				i++
			}
			report(b, s, rt)
		})
		b.Run("End"+v.write, func(b *testing.B) {
			s := node(b, v.cache)
			ids := benchIDs(1 << 14)
			rt := s.Stats().RoundTrips
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if err := s.End(ctx, ids[i&(1<<14-1)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			report(b, s, rt)
		})
	}
	b.Run("LookupUnknownNoWait", func(b *testing.B) {
		s := node(b, DefaultCacheSize)
		rt := s.Stats().RoundTrips
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			_, _, _ = s.Lookup(ctx, "unknown", 0)
		}
		report(b, s, rt)
	})
}

// BenchmarkRedisFootprint reports Redis used_memory per session record at
// 100k sessions (see redisFootprint; it starts its own redis-server).
func BenchmarkRedisFootprint(b *testing.B) {
	per := redisFootprint(b, 100_000) // once, whatever b.N
	for b.Loop() {
	}
	b.ReportMetric(per, "bytes/session")
}

// filledMemory is a memory store holding n sessions (of ids), closed with b.
func filledMemory(b *testing.B, n int, rec Record) (*Memory, []string) {
	m := NewMemory(MemoryOptions{TTL: time.Hour, MaxSessions: n})
	b.Cleanup(func() { _ = m.Close() })
	ids := benchIDs(n)
	for _, id := range ids {
		_ = m.Learn(context.Background(), id, rec)
	}
	return m, ids
}
