package e2e

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowProxy is a loopback TCP proxy in front of a real redis-server that
// holds back every byte Redis sends for a configurable delay: command
// replies, pub/sub events and the answers to the subscriber's pings reach
// the plugin that much later. Commands reach Redis at once, so Redis
// executes them on time and only its answers are late: a Redis that
// "answers slowly". Latency is added, not throughput taken away: a reply
// read at t is written at t+delay, in order.
//
// Why a proxy and not DEBUG SLEEP: DEBUG SLEEP freezes the server for a
// stretch (which TestRedisOutage already covers with SIGSTOP); the proxy
// makes every answer slow for as long as the test wants, just above or just
// below session.redis.timeout.
type slowProxy struct {
	ln      net.Listener
	backend string
	delay   atomic.Int64 // nanoseconds
	conns   atomic.Int64 // accepted so far

	mu     sync.Mutex
	open   map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// startSlowProxy listens on a loopback port and forwards to backend; it is
// closed in t.Cleanup.
func startSlowProxy(t testing.TB, backend string) *slowProxy {
	t.Helper()
	p := &slowProxy{ln: listen(t), backend: backend, open: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Host and Port are where the plugin connects.
func (p *slowProxy) Host() string { return "127.0.0.1" }
func (p *slowProxy) Port() int    { return p.ln.Addr().(*net.TCPAddr).Port }

// SetDelay changes the delay of every byte Redis sends from now on, on
// open connections too.
func (p *slowProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Conns counts the connections accepted so far (go-redis reconnects after
// a timeout: a rising count shows timeouts really happened).
func (p *slowProxy) Conns() int64 { return p.conns.Load() }

func (p *slowProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.open[c] = struct{}{}
	return true
}

func (p *slowProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *slowProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.conns.Add(1)
		server, err := net.DialTimeout("tcp", p.backend, 2*time.Second)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client) || !p.track(server) {
			_ = client.Close()
			_ = server.Close()
			return
		}
		p.wg.Add(3)
		go func() { // commands: at once
			defer p.wg.Done()
			_, _ = io.Copy(server, client)
			p.untrack(server)
			p.untrack(client)
		}()
		// Replies: one goroutine reads and stamps, one writes when due.
		type chunk struct {
			due  time.Time
			data []byte
		}
		ch := make(chan chunk, 4096)
		go func() {
			defer p.wg.Done()
			defer close(ch)
			for {
				buf := make([]byte, 32<<10)
				n, err := server.Read(buf)
				if n > 0 {
					ch <- chunk{time.Now().Add(time.Duration(p.delay.Load())), buf[:n]}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer p.wg.Done()
			defer p.untrack(client)
			defer p.untrack(server)
			for c := range ch {
				time.Sleep(time.Until(c.due))
				if _, err := client.Write(c.data); err != nil {
					p.untrack(server) // ends the reader
					for range ch {
					}
					return
				}
			}
		}()
	}
}

func (p *slowProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.open {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}
