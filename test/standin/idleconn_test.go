package standin

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// connPair dials a listener of the network and returns both ends.
func connPair(t *testing.T, network string) (client, server net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = t.TempDir() + "/plugin.socket"
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial(network, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// settle gives the kernel a moment to deliver what the peer did.
func settle() { time.Sleep(20 * time.Millisecond) }

// TestIdleConnUsable: an idle pooled connection is reused only while its
// peer keeps it open and silent, as nginx's keepalive close handlers
// decide, for plugin sockets (unix) and upstreams (tcp).
func TestIdleConnUsable(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		for _, tc := range []struct {
			name   string
			peer   func(net.Conn)
			usable bool
		}{
			{"open and silent", func(net.Conn) {}, true},
			{"closed by the peer", func(s net.Conn) { _ = s.Close() }, false},
			{"peer sent bytes", func(s net.Conn) { _, _ = s.Write([]byte("x")) }, false},
		} {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				client, server := connPair(t, network)
				tc.peer(server)
				settle()
				if got := idleConnUsable(client); got != tc.usable {
					t.Errorf("usable = %v, want %v", got, tc.usable)
				}
				if tc.usable {
					// the peek consumed nothing and left no deadline behind
					_, _ = server.Write([]byte("y"))
					_ = client.SetReadDeadline(time.Now().Add(time.Second))
					var b [1]byte
					if n, err := client.Read(b[:]); n != 1 || b[0] != 'y' {
						t.Errorf("read after the peek: %q, %v", b[:n], err)
					}
				}
			})
		}
	}
}

// TestIdleConnUsableTLS: a TLS upstream's connection is judged by the
// socket under it.
func TestIdleConnUsableTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test server
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	settle()
	if !idleConnUsable(conn) {
		t.Fatal("an idle kept-alive TLS connection was judged unusable")
	}
	srv.CloseClientConnections()
	settle()
	if idleConnUsable(conn) {
		t.Error("a TLS connection its server closed was judged usable")
	}
}

// TestConnNotPooledAfterClientLeft: when the client goes away just as the
// upstream's body ends, the close that watches its context may already be
// under way; that connection must not go back to the pool, where another
// request would take it and have it closed under its read (a 502 for a
// complete exchange).
func TestConnNotPooledAfterClientLeft(t *testing.T) {
	for _, tc := range []struct {
		name        string
		watchEnded  bool // stop() ended the watch before it fired
		wantPooled  int
		description string
	}{
		{"client still there", true, 1, "the connection is kept alive"},
		{"client left as the body ended", false, 0, "the watch closes the connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, _ := connPair(t, "tcp")
			pool := &connPool{idle: map[string][]*upstreamConn{}}
			body := &stopBody{ReadCloser: http.NoBody, stop: func() bool { return tc.watchEnded }}
			u := &upstreamResponse{resp: &http.Response{Body: body}, conn: &upstreamConn{Conn: client},
				pool: pool, key: "127.0.0.1:1"}
			_ = u.resp.Body.Close()
			u.Close(true)
			if got := len(pool.idle[u.key]); got != tc.wantPooled {
				t.Errorf("%d pooled, want %d: %s", got, tc.wantPooled, tc.description)
			}
		})
	}
}
