// Package freeport finds loopback TCP addresses for tests and test tools:
// addresses that were free a moment ago, on 127.0.0.1 only.
//
// There is a window between choosing an address and binding it in which
// another process may take it; callers that bind it in another process
// (Kong, redis-server, a replica) retry on "address already in use".
package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Find returns n distinct loopback addresses ("127.0.0.1:PORT"): all n are
// held open together while they are chosen, so none repeats.
func Find(n int) ([]string, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	out := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// Addrs is Find for a test: it fails the test when no address is free.
func Addrs(t testing.TB, n int) []string {
	t.Helper()
	out, err := Find(n)
	if err != nil {
		t.Fatalf("freeport: %v", err)
	}
	return out
}

// Addr is one address for a test.
func Addr(t testing.TB) string {
	t.Helper()
	return Addrs(t, 1)[0]
}

// Port is the port of one address for a test.
func Port(t testing.TB) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(Addr(t))
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("freeport: %v", err)
	}
	return port
}
