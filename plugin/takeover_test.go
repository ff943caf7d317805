package main

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The handovers run once another listener replaces this process's socket
// file, as a new plugin process does during a Kong reload, and not before.
func TestWatchTakeover(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "p.socket")
	listen := func() net.Listener {
		_ = os.Remove(socket) // what go-pdk does before it listens
		ln, err := net.Listen("unix", socket)
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	previous := listen() // a previous process's socket, there at start
	prev, err := socketInode(socket)
	if err != nil {
		t.Fatal(err)
	}
	fired := make(chan struct{})
	handoversMu.Lock()
	saved := handovers
	handovers = []func(){func() { close(fired) }}
	handoversMu.Unlock()
	t.Cleanup(func() { handoversMu.Lock(); handovers = saved; handoversMu.Unlock() })
	go watchTakeover(socket, prev, slog.New(slog.DiscardHandler))

	time.Sleep(3 * takeoverCheckEvery)
	_ = previous.Close()
	mine := listen() // this process's listener: no handover
	defer mine.Close()
	select {
	case <-fired:
		t.Fatal("handed over for this process's own listener")
	case <-time.After(5 * takeoverCheckEvery):
	}
	next := listen() // the new process takes the socket over
	defer next.Close()
	select {
	case <-fired:
	case <-time.After(2 * time.Second):
		t.Fatal("no handover within 2 s of the takeover")
	}
}
