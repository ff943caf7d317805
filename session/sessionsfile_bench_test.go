package session

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user and system CPU time: on a shared machine
// it varies less than the wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSnapshot measures a whole snapshot write (encode, write, fsync,
// rename) and a start-up load of n sessions (48-byte ids, as the memory
// benchmarks use), and reports the file's size.
func BenchmarkSnapshot(b *testing.B) {
	rec := Record{Target: "10.0.0.1:8080", Consumer: "consumer-1", Created: time.Now()}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, n := range []int{100_000, 1_000_000} {
		dir := b.TempDir()
		path := filepath.Join(dir, "sessions")
		var set *mapSet
		b.Run(fmt.Sprintf("Write%dk", n/1000), func(b *testing.B) {
			m, _ := filledMemory(b, n, rec)
			set = &mapSet{stores: map[string]*Memory{"memory|3600000000000|" + fmt.Sprint(n): m}}
			p := startSessionsFile(SessionsFileOptions{Path: path, Interval: time.Hour, Logger: quiet}, set)
			defer p.Close()
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				if err := p.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size()), "file-bytes")
			b.ReportMetric(float64(fi.Size())/float64(n), "bytes/session")
		})
		b.Run(fmt.Sprintf("Load%dk", n/1000), func(b *testing.B) {
			if _, err := os.Stat(path); err != nil {
				b.Skip("needs the Write benchmark's file: run both")
			}
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				s := &mapSet{stores: map[string]*Memory{}}
				p := startSessionsFile(SessionsFileOptions{Path: path, Interval: time.Hour, Logger: quiet}, s)
				p.Close()
				for _, m := range s.stores {
					if m.Len() != n {
						b.Fatalf("restored %d, want %d", m.Len(), n)
					}
					_ = m.Close()
				}
			}
			b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
		})
		b.Run(fmt.Sprintf("UnchangedCheck%dk", n/1000), func(b *testing.B) {
			m, _ := filledMemory(b, n, rec)
			at := m.now()
			for b.Loop() {
				if m.changedSince(at) {
					b.Fatal("changed")
				}
			}
		})
	}
}
