// Command badserver is an upstream that misbehaves the way real MCP backends
// have, for mcp-relay's tests.
//
//	badserver -mode bare401 -listen 127.0.0.1:0
//	badserver -mode silent  -listen 127.0.0.1:0
//
// bare401 answers every request with HTTP 401 and the body
// {"error":"Invalid or missing access key"} (application/json): no JSON-RPC
// envelope, no WWW-Authenticate. silent reads each request in full and never
// answers, until the client goes away or the process stops.
//
// The first line on stdout is "listening <host:port>". SIGTERM or SIGINT
// stops it; open silent requests are dropped.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcp-relay/mcp-relay/test/peers/bad"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	mode := flag.String("mode", bad.ModeBare401, "bare401 or silent")
	flag.Parse()

	h, err := bad.Handler(*mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "badserver:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "badserver:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening %s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		// Silent handlers never finish by themselves: close, don't drain.
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "badserver:", err)
		os.Exit(1)
	}
}
