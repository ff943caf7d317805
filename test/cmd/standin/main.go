// Command standin runs one stand-in Kong node (see package test/standin)
// in front of a Go plugin until interrupted, logging a line per request:
//
//	go run ./test/cmd/standin -plugin ./mcp-relay -deck kong/kong.yaml -listen 127.0.0.1:8000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-relay/mcp-relay/test/standin"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var (
		plugin   = flag.String("plugin", "./mcp-relay", "plugin executable (its file name is the plugin name)")
		deck     = flag.String("deck", "kong/kong.yaml", "deck file")
		listen   = flag.String("listen", "127.0.0.1:8000", "proxy listen address")
		prefix   = flag.String("prefix", "", "Kong prefix for the plugin socket (default: a temporary directory)")
		level    = flag.String("log-level", "notice", "error log level (debug, info, notice, warn, error, crit)")
		quiet    = flag.Bool("quiet", false, "do not print a line per request")
		targets  multi
		env      multi
		trusted  multi
		shutdown = flag.Duration("shutdown", 10*time.Second, "grace period on interrupt")
	)
	flag.Var(&targets, "target", "upstream=host:port[,host:port...]: replace an upstream's targets (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE for the plugin process (repeatable)")
	flag.Var(&trusted, "trusted-ip", "trusted_ips entry (repeatable)")
	flag.Parse()
	log.SetFlags(0)

	opts := standin.Options{
		Plugin: *plugin, Deck: *deck, Listen: *listen, Prefix: *prefix, LogLevel: *level,
		Log: os.Stderr, Env: env, TrustedIPs: trusted, Targets: map[string][]string{},
	}
	for _, t := range targets {
		name, list, ok := strings.Cut(t, "=")
		if !ok {
			log.Fatalf("-target %q: want upstream=host:port[,host:port]", t)
		}
		opts.Targets[name] = append(opts.Targets[name], strings.Split(list, ",")...)
	}
	if !*quiet {
		opts.OnRecord = func(r standin.RequestRecord) {
			fmt.Fprintf(os.Stdout, "%s %s\n", time.Now().Format("15:04:05.000"), r)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	node, err := standin.Start(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	info := node.Plugin()
	fmt.Fprintf(os.Stderr, "stand-in Kong %s on %s: plugin %s %s (priority %d, phases %s), prefix %s\n",
		standin.KongVersion, node.URL(), info.Name, info.Version, info.Priority, strings.Join(info.Phases, ","), node.Prefix())
	<-ctx.Done()
	done := make(chan struct{})
	go func() { _ = node.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(*shutdown):
		log.Print("shutdown timed out")
	}
	t := node.Totals()
	fmt.Fprintf(os.Stderr, "requests %d, round trips %d, events %v, instance starts %d\n",
		t.Requests, t.RoundTrips, t.Events, t.InstanceStarts)
}
