// Command mcp-relay is the Kong external plugin. Kong runs it twice: once
// with -dump to read its name, phases, priority and configuration schema,
// then as a long-lived server on <kong prefix>/mcp-relay.socket.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/Kong/go-pdk/server"

	"github.com/mcp-relay/mcp-relay/handler"
	"github.com/mcp-relay/mcp-relay/logging"
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

// LogPhaseEnv names the environment variable that turns -log-phase on ("on",
// "true" or "1") when the flag is not given.
const LogPhaseEnv = "MCP_RELAY_LOG_PHASE"

var logPhase = flag.Bool("log-phase", envOn(LogPhaseEnv),
	"declare Kong's Log phase and learn there the new sessions whose initialize answer does not name the replica "+
		"(routes with preserve_host, targets given by name, an upstream host_header); costs every request Kong's Log event. "+
		"Give it to both pluginserver_mcp_relay_start_cmd and query_cmd (default $"+LogPhaseEnv+")")

func envOn(name string) bool {
	switch strings.ToLower(os.Getenv(name)) {
	case "on", "true", "1", "yes":
		return true
	}
	return false
}

func main() {
	// go-pdk registered -dump, -kong-prefix and -help on the default flag set.
	flag.Parse()
	// One logger for the process: go-pdk's standard-log lines go through it
	// too, without its benign closed-socket line.
	logging.Install()
	handler.DeclareLogPhase(*logPhase)
	if *toolDigests {
		runToolDigests()
	}
	if dumpFlag := flag.Lookup("dump"); dumpFlag != nil && dumpFlag.Value.String() == "true" {
		if err := dump(); err != nil {
			fmt.Fprintln(os.Stderr, "mcp-relay:", err) // -dump: Kong reads stdout, shows stderr
			os.Exit(1)
		}
		return
	}
	if *metricsAddr != "" {
		serveMetrics(*metricsAddr)
	}
	if err := startSessionsFile(logging.Logger.With("plugin", "mcp-relay")); err != nil {
		logging.Logger.Error("mcp-relay: no sessions file: serving without one", "plugin", "mcp-relay", "err", err)
	}
	if exe, err := os.Executable(); err == nil {
		socket := filepath.Join(flag.Lookup("kong-prefix").Value.String(), filepath.Base(exe)+".socket")
		prev, _ := socketInode(socket)
		go watchTakeover(socket, prev, logging.Logger.With("plugin", "mcp-relay"))
	}
	if err := server.StartServer(handler.New, Version, Priority); err != nil {
		logging.Logger.Error("mcp-relay plugin server failed", "plugin", "mcp-relay", "err", err)
		logging.Flush()
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
	out, err := schema.DumpInfo(name, Version, Priority, handler.Phases(), filepath.Join(prefix, name+".socket"))
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}

// serveMetrics listens before it says so: a port that stays busy is an
// error in Kong's log, and the plugin serves requests without metrics
// (exiting would make Kong restart it every second, failing every
// request). A busy port is retried every second: during a Kong reload the
// previous plugin process holds it until it sees this one take the socket
// over (takeover.go), so it is an error only once busy for metricsBusyGrace.
func serveMetrics(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		go serveMetricsOn(ln, addr)
		return
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		logging.Logger.Error("mcp-relay metrics listener failed: no metrics", "plugin", "mcp-relay", "addr", addr, "err", err)
		return
	}
	logging.Logger.Info("mcp-relay metrics port busy, retrying every second (a Kong reload's previous plugin process holds it until it hands over)",
		"plugin", "mcp-relay", "addr", addr)
	go func() {
		since := time.Now()
		told := false
		for {
			time.Sleep(time.Second)
			ln, err := net.Listen("tcp", addr)
			if err == nil {
				serveMetricsOn(ln, addr)
				return
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				logging.Logger.Error("mcp-relay metrics listener failed: no metrics", "plugin", "mcp-relay", "addr", addr, "err", err)
				return
			}
			if !told && time.Since(since) >= metricsBusyGrace {
				told = true
				logging.Logger.Error("mcp-relay metrics listener failed: no metrics while the port stays busy (retrying every second)",
					"plugin", "mcp-relay", "addr", addr, "busy_for", time.Since(since).Round(time.Second).String(), "err", err)
			}
		}
	}()
}

// metricsBusyGrace is how long a busy metrics port is taken for a Kong
// reload's hand-over (which frees it within a second) before it is an error.
const metricsBusyGrace = 5 * time.Second

func serveMetricsOn(ln net.Listener, addr string) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// After a reload the new plugin process serves the node's metrics: it
	// retries the port every second until this one leaves it.
	onTakeover(func() { _ = srv.Close() })
	logging.Logger.Info("mcp-relay metrics listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logging.Logger.Error("mcp-relay metrics listener failed", "plugin", "mcp-relay", "addr", addr, "err", err)
	}
}
