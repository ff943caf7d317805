// Command demo is `make run`: two demo MCP replicas (stateful mcp-go
// servers, legacy protocol) on the targets of kong/kong.yaml, and one Kong
// stand-in node in front of them running the mcp-relay plugin with its
// default in-memory session store. It is for trying the plugin without
// Docker; production runs the plugin inside Kong.
//
//	go run ./test/cmd/demo -plugin bin/mcp-relay -deck kong/kong.yaml -listen 127.0.0.1:8000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-relay/mcp-relay/test/peers/legacy"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

func main() {
	var (
		plugin   = flag.String("plugin", "bin/mcp-relay", "plugin executable")
		deck     = flag.String("deck", "kong/kong.yaml", "decK file")
		listen   = flag.String("listen", "127.0.0.1:8000", "proxy listen address")
		replicas = flag.String("replicas", "127.0.0.1:9101,127.0.0.1:9102", "addresses of the demo replicas (the deck file's targets)")
		metrics  = flag.String("metrics-addr", "127.0.0.1:9542", "plugin metrics address (empty: off)")
	)
	flag.Parse()
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	for i, addr := range strings.Split(*replicas, ",") {
		name := fmt.Sprintf("replica-%c", 'a'+i)
		if err := serveReplica(ctx, name, addr); err != nil {
			log.Fatalf("demo replica %s on %s: %v", name, addr, err)
		}
		fmt.Fprintf(os.Stderr, "demo MCP replica %s on http://%s/mcp\n", name, addr)
	}

	opts := standin.Options{Plugin: *plugin, Deck: *deck, Listen: *listen, Log: os.Stderr,
		OnRecord: func(r standin.RequestRecord) {
			fmt.Fprintf(os.Stdout, "%s %s\n", time.Now().Format("15:04:05.000"), r)
		}}
	if *metrics != "" {
		opts.Env = []string{"MCP_RELAY_METRICS_ADDR=" + *metrics}
	}
	node, err := standin.Start(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "\nKong stand-in with mcp-relay on %s/mcp (apikey: demo-key)", node.URL())
	if *metrics != "" {
		fmt.Fprintf(os.Stderr, ", plugin metrics on http://%s/metrics", *metrics)
	}
	fmt.Fprintf(os.Stderr, "\nThis is a stand-in for trying the plugin; production runs it inside Kong. Ctrl-C stops.\n\n")
	<-ctx.Done()
	_ = node.Close()
}

func serveReplica(ctx context.Context, name, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: legacy.New(legacy.Options{Name: name}), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("replica %s: %v", name, err)
		}
	}()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return nil
}
