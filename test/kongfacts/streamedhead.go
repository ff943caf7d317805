package kongfacts

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// StreamedHeadCase is one way a streamed answer can go through Kong.
type StreamedHeadCase struct {
	Name            string
	AccelNo         bool // the upstream sends X-Accel-Buffering: no
	RouteUnbuffered bool // the route has response_buffering: false
	AtOnce          bool // the head reaches the client before the first event
}

// StreamedHeadCases: Kong's location / has proxy_buffering on, so a
// streamed answer's status line and headers reach the client with its
// first body bytes; an upstream's X-Accel-Buffering: no sends them at
// once, and so does a route with response_buffering: false (Kong's
// unbuffered location, proxy_buffering off).
var StreamedHeadCases = []StreamedHeadCase{
	{"proxy_buffering on", false, false, false},
	{"X-Accel-Buffering: no", true, false, true},
	{"route response_buffering: false", false, true, true},
}

// CheckStreamedHead times, for each case, the head of a stream whose
// upstream flushes its head 500 ms before its first event. route starts a
// gateway whose route proxies to upstream (with response_buffering off
// when unbuffered) and runs echoplugin, and returns the route's URL; the
// request asks echoplugin to stream (no buffered proxying).
func CheckStreamedHead(t *testing.T, route func(t *testing.T, upstream string, unbuffered bool) string) {
	t.Helper()
	for _, c := range StreamedHeadCases {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			if c.AccelNo {
				w.Header().Set("X-Accel-Buffering", "no")
			}
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			time.Sleep(500 * time.Millisecond)
			_, _ = io.WriteString(w, "data: 1\n\n")
		}))
		req, _ := http.NewRequest("GET", route(t, up.URL, c.RouteUnbuffered), nil)
		req.Header.Set("X-Test-Mode", "stream")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			up.Close()
			t.Fatal(err)
		}
		head := time.Since(start)
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		up.Close()
		if c.AtOnce && head > 300*time.Millisecond {
			t.Errorf("%s: the head came after %v, want at once", c.Name, head)
		}
		if !c.AtOnce && head < 400*time.Millisecond {
			t.Errorf("%s: the head came after %v, want with the first event (500 ms)", c.Name, head)
		}
		t.Logf("%s: head after %v", c.Name, head.Round(time.Millisecond))
	}
}

// CheckHeadThenUpstreamGone: an upstream that sends a stream's head and
// closes its connection 300 ms later. Kong sends the 200 head then, and
// cuts the client's connection, the body unfinished. route starts a gateway
// whose route proxies to upstream (host:port) and runs echoplugin, and
// returns the gateway's address and the route's path.
func CheckHeadThenUpstreamGone(t *testing.T, route func(t *testing.T, upstream string) (addr, path string)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(c)
				for {
					if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
						break
					}
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
				time.Sleep(300 * time.Millisecond)
				_ = c.Close()
			}()
		}
	}()
	addr, path := route(t, ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: kong\r\nX-Test-Mode: stream\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(string(got), "\r\n\r\n") || err != nil {
		t.Errorf("upstream gone after its head: %q %v, want the 200 head, then the connection closed", got, err)
	}
}
