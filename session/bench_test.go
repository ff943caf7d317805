package session

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

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
		m := NewMemory(MemoryOptions{TTL: time.Hour, MaxSessions: n})
		defer m.Close()
		ids := benchIDs(n)
		for _, id := range ids {
			_ = m.Learn(ctx, id, rec)
		}
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
		m := NewMemory(MemoryOptions{TTL: time.Hour, MaxSessions: n})
		defer m.Close()
		ids := benchIDs(n)
		for _, id := range ids {
			_ = m.Learn(ctx, id, rec)
		}
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
	for _, cache := range []int{DefaultCacheSize, 0} {
		name := "Cached"
		if cache == 0 {
			name = "Uncached"
		}
		b.Run("LookupHot"+name, func(b *testing.B) {
			s := node(b, cache)
			_ = s.Learn(ctx, "hot", rec)
			_, _, _ = s.Lookup(ctx, "hot", 0)
			rt := s.Stats().RoundTrips
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, ok, err := s.Lookup(ctx, "hot", 250*time.Millisecond); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
			report(b, s, rt)
		})
		b.Run("LookupHotParallel"+name, func(b *testing.B) {
			s := node(b, cache)
			_ = s.Learn(ctx, "hot", rec)
			rt := s.Stats().RoundTrips
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _, _ = s.Lookup(ctx, "hot", 250*time.Millisecond)
				}
			})
			report(b, s, rt)
		})
	}
	b.Run("Learn", func(b *testing.B) {
		s := node(b, DefaultCacheSize)
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
	b.Run("End", func(b *testing.B) {
		s := node(b, DefaultCacheSize)
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
