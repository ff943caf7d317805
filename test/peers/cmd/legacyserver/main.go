// Command legacyserver runs one stateful legacy-era MCP replica (see package
// github.com/mcp-relay/mcp-relay/test/peers/legacy) as its own process.
//
//	legacyserver -listen 127.0.0.1:0 -name replica-a
//
// The first line on stdout is "listening <host:port>", so that a parent
// process can learn the port the kernel chose. SIGTERM or SIGINT stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcp-relay/mcp-relay/test/peers/legacy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	name := flag.String("name", "replica-a", "replica name, returned by the whoami tool")
	verbose := flag.Bool("v", false, "log mcp-go transport events to stderr")
	checkHost := flag.Bool("check-host", false, "answer 403 unless Host is this server's own host:port (a DNS-rebinding guard)")
	allowHost := flag.String("allow-host", "", "with -check-host, accept this Host instead of the server's own host:port")
	flag.Parse()

	if err := run(*listen, *name, *verbose, *checkHost, *allowHost); err != nil {
		fmt.Fprintln(os.Stderr, "legacyserver:", err)
		os.Exit(1)
	}
}

func run(listen, name string, verbose, checkHost bool, allowHost string) error {
	var logger *slog.Logger
	if verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	opts := legacy.Options{Name: name, Logger: logger}
	if checkHost {
		opts.AllowedHosts = []string{ln.Addr().String()}
		if allowHost != "" {
			opts.AllowedHosts = []string{allowHost}
		}
	}
	replica := legacy.New(opts)
	srv := &http.Server{Handler: replica, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening %s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	replica.CloseSessions(shutdownCtx)
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
