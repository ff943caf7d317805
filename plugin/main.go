// Command mcp-relay is the Kong external plugin. Kong runs it twice: once
// with -dump to read its name, phases, priority and configuration schema,
// then as a long-lived server on <kong prefix>/mcp-relay.socket.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/Kong/go-pdk/server"

	"github.com/mcp-relay/mcp-relay/handler"
	"github.com/mcp-relay/mcp-relay/schema"
)

// Version is stamped at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0"

// Priority 1000 runs after every bundled auth plugin (key-auth 1250, jwt
// 1450, basic-auth 1100, hmac-auth 1030, ...) and before acl (950).
const Priority = 1000

// MetricsAddrEnv names the environment variable with the address the plugin
// process serves Prometheus metrics on (unset: no metrics listener). Plugin
// config is per route, but metrics are per process, so this is not config.
const MetricsAddrEnv = "MCP_RELAY_METRICS_ADDR"

var metricsAddr = flag.String("metrics-addr", os.Getenv(MetricsAddrEnv),
	"address to serve Prometheus metrics on, e.g. 127.0.0.1:9542 (default $"+MetricsAddrEnv+"; empty: off)")

func main() {
	// go-pdk registered -dump, -kong-prefix and -help on the default flag set.
	flag.Parse()
	if dumpFlag := flag.Lookup("dump"); dumpFlag != nil && dumpFlag.Value.String() == "true" {
		if err := dump(); err != nil {
			fmt.Fprintln(os.Stderr, "mcp-relay:", err)
			os.Exit(1)
		}
		return
	}
	if *metricsAddr != "" {
		go serveMetrics(*metricsAddr)
	}
	if err := startSnapshots(slog.New(slog.NewTextHandler(os.Stderr, nil)).With("plugin", "mcp-relay")); err != nil {
		fmt.Fprintln(os.Stderr, "mcp-relay: no sessions file:", err) // serve anyway
	}
	if err := server.StartServer(handler.New, Version, Priority); err != nil {
		fmt.Fprintln(os.Stderr, "mcp-relay:", err)
		os.Exit(1)
	}
}

// dump prints what Kong reads with query_cmd: go-pdk's own dump reflects
// the Go types and loses defaults and constraints, so print the hand-made
// schema from package schema instead.
func dump() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	name := filepath.Base(exe)
	prefix := flag.Lookup("kong-prefix").Value.String()
	out, err := schema.DumpInfo(name, Version, Priority, []string{"access", "response", "log"},
		filepath.Join(prefix, name+".socket"))
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}

func serveMetrics(addr string) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler.MetricsHandler())
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	slog.Info("mcp-relay metrics listening", "addr", addr)
	for waited := false; ; waited = true {
		err := srv.ListenAndServe()
		// During a Kong reload the old plugin process holds the address
		// until it is stopped: wait for it.
		if errors.Is(err, syscall.EADDRINUSE) {
			if !waited {
				slog.Warn("mcp-relay metrics address in use (the previous plugin process?): retrying every second", "addr", addr)
			}
			time.Sleep(time.Second)
			continue
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("mcp-relay metrics listener failed", "addr", addr, "err", err)
		}
		return
	}
}
