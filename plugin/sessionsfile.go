package main

import (
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mcp-relay/mcp-relay/handler"
	"github.com/mcp-relay/mcp-relay/logging"
	"github.com/mcp-relay/mcp-relay/session"
)

// The memory store's sessions file is a property of the plugin process (one
// per Kong node, shared by every route's memory store), not of a route, so
// it is set with flags or environment variables, like the metrics address.
const (
	SessionsFileEnv     = "MCP_RELAY_SESSIONS_FILE"
	SessionsIntervalEnv = "MCP_RELAY_SESSIONS_WRITE_INTERVAL"
)

var (
	sessionsFile = flag.String("sessions-file", os.Getenv(SessionsFileEnv),
		"file keeping the memory store's sessions across plugin restarts (default $"+SessionsFileEnv+
			", else <kong-prefix>/<plugin name>.sessions; \"off\": none)")
	sessionsInterval = flag.String("sessions-write-interval", os.Getenv(SessionsIntervalEnv),
		"how often changed sessions are written to -sessions-file (default $"+SessionsIntervalEnv+", else 5s)")
)

// sessionsFilePath resolves -sessions-file: "" for off.
func sessionsFilePath(flagValue, prefix, exe string) string {
	switch flagValue {
	case "off":
		return ""
	case "":
		return filepath.Join(prefix, filepath.Base(exe)+".sessions")
	default:
		return flagValue
	}
}

// startSessionsFile restores the memory stores' sessions before Kong can start
// a plugin instance, and writes them at SIGTERM (how Kong stops plugin
// servers: kong/runloop/plugin_servers/process.lua) and SIGINT.
func startSessionsFile(log *slog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	path := sessionsFilePath(*sessionsFile, flag.Lookup("kong-prefix").Value.String(), exe)
	if path == "" {
		log.Info("session snapshot file off: memory store sessions, and the tool pins of routes without a Redis store, do not survive a plugin restart")
		return nil
	}
	interval := session.DefaultSessionsFileInterval
	if *sessionsInterval != "" {
		// A bad value must not stop the node's plugin server: Kong would
		// respawn it every second, failing every request.
		if d, err := time.ParseDuration(*sessionsInterval); err == nil && d > 0 {
			interval = d
		} else {
			log.Error("-sessions-write-interval: want a positive duration such as 5s; using the default",
				"value", *sessionsInterval, "default", interval)
		}
	}
	snap := session.StartSessionsFile(session.SessionsFileOptions{
		Path: path, Interval: interval, Logger: log,
		OnHints: handler.RestoreHints, TargetSeen: handler.ReplicaSeen,
	})
	onTakeover(func() {
		if err := snap.Handover(handler.PendingHints()); err == nil {
			log.Info("wrote the sessions for the plugin process that took over")
		}
	})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-stop
		log.Info("stopping: writing the session snapshot", "signal", sig.String())
		err := snap.Shutdown(handler.PendingHints())
		logging.Flush() // events no request will take to Kong's log
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}()
	return nil
}
