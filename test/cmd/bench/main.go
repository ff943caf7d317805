// Command bench is `make bench`: it measures mcp-relay through the Kong
// stand-in, the Go benchmarks and real Kong, and prints one markdown report.
//
//	go run ./test/cmd/bench -plugin bin/mcp-relay -out bench/results.md [-short] [-kong-only]
//
// Sections: PDK round trips per request kind (counted by the stand-in),
// throughput with and without mcp-relay on the same route and replicas, Go
// cost (go test -bench of handler and envelope), store cost (lookup, learn,
// refresh and end of the memory store and of the Redis store with and
// without its per-node cache, with Redis round trips), and bytes per session
// in the memory store and in Redis, and what a request costs in real Kong
// (kong*.go: one node of the realkong harness with mcp-relay and minimal Go
// plugins on separate routes, wrk in interleaved rounds; where the time
// goes; what a buffered Response phase can learn). The Redis measurements
// start their own redis-server, which must be on PATH: without it the report
// and stderr say that Redis was not measured, and the command exits
// non-zero; so does a real-Kong section that cannot run wrk. Without the
// realkong harness the section says how to get it, and the rest runs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcp-relay/mcp-relay/test/standin"
)

const upstreamName = "mcp-replicas"

type config struct {
	plugin, deck, errTemplate string
	short                     bool
	workers, requests, rounds int
	count                     int
	verbose                   bool
	// The real-Kong section: rounds, duration and connections of each wrk run.
	kongRounds, kongConns int
	kongDuration          time.Duration
	// kongBaseline is another mcp-relay build timed beside -plugin, with
	// kongBaselineArgs on its start and query commands; kongVariants
	// selects the timed runs (nil: all).
	kongBaseline, kongBaselineArgs string
	kongVariants                   *regexp.Regexp
}

func main() {
	var c config
	flag.StringVar(&c.plugin, "plugin", "bin/mcp-relay", "plugin executable (its file name is the plugin name)")
	flag.StringVar(&c.deck, "deck", "kong/kong.yaml", "decK file the nodes start from")
	flag.StringVar(&c.errTemplate, "error-template", "kong/error_template.json", "error_template_json of the nodes")
	out := flag.String("out", "", "also write the report to this file")
	flag.BoolVar(&c.short, "short", false, "smoke run: fewer requests, go test -count 1")
	flag.IntVar(&c.workers, "workers", 8, "concurrent load workers")
	flag.IntVar(&c.requests, "requests", 2000, "requests per worker and run (throughput)")
	flag.IntVar(&c.rounds, "rounds", 2, "throughput rounds (each round runs both configs, order alternating)")
	flag.IntVar(&c.count, "count", 6, "go test -count of the Go benchmarks (benchstat wants at least 6)")
	flag.BoolVar(&c.verbose, "v", false, "show the nodes' logs")
	flag.IntVar(&c.kongRounds, "kong-rounds", 5, "real Kong: interleaved rounds (each times every variant once)")
	flag.DurationVar(&c.kongDuration, "kong-duration", time.Second, "real Kong: length of each wrk run (whole seconds)")
	flag.IntVar(&c.kongConns, "kong-conns", 8, "real Kong: wrk connections (one wrk thread)")
	kongOnly := flag.Bool("kong-only", false, "measure only the real-Kong section (section 6)")
	flag.StringVar(&c.kongBaseline, "kong-baseline", "", "real Kong: another mcp-relay executable timed beside -plugin on the same node "+
		"(as plugin "+baselineName+"), every mcp-relay run twice: compares two builds in the same rounds")
	flag.StringVar(&c.kongBaselineArgs, "kong-baseline-args", "", "real Kong: arguments added to the baseline's start and query (-dump) commands, e.g. -log-phase")
	variants := flag.String("kong-variants", "", "real Kong: time only the runs whose id (route/kind, see 6e) matches this regexp, "+
		"with the runs without a plugin they are compared to; no probes")
	flag.Parse()
	if *variants != "" {
		re, err := regexp.Compile(*variants)
		if err != nil {
			log.Fatalf("-kong-variants: %v", err)
		}
		c.kongVariants = re
	}
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	if c.short {
		c.requests, c.count, c.kongRounds, c.kongDuration = 100, 1, 1, time.Second
	}
	if c.workers < 1 || c.requests < 1 || c.rounds < 1 || c.count < 1 || c.kongRounds < 1 || c.kongConns < 1 || c.kongDuration < time.Second {
		log.Fatal("-workers, -requests, -rounds, -count, -kong-rounds and -kong-conns must be positive, -kong-duration at least 1s")
	}
	if _, err := os.Stat(c.plugin); err != nil {
		log.Fatalf("plugin: %v (run make build)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	start := time.Now()
	redisVersion, redis := redisServer()
	if *kongOnly {
		redis = true // not needed
	}
	if !redis {
		log.Print("WARNING: redis-server is not on PATH: the Redis store cost and Redis memory per session are NOT " +
			"measured (install: apt-get install -y redis-server); the command will exit non-zero")
		failures = append(failures, errors.New("redis-server is not on PATH"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# mcp-relay benchmark\n\n")
	machine(&b, c, redisVersion)
	if !redis {
		fmt.Fprintf(&b, "> Redis: %s. Sections 4 and 5 have no Redis figures.\n\n", noRedis)
	}

	env, err := newEnv(ctx, c)
	if err != nil {
		log.Fatal(err)
	}
	defer env.close()

	if !*kongOnly {
		log.Print("PDK round trips per request kind")
		if err := pdkSection(ctx, &b, env); err != nil {
			log.Fatal(err)
		}
		log.Print("throughput with and without mcp-relay")
		if err := throughputSection(ctx, &b, env); err != nil {
			log.Fatal(err)
		}
	}
	// Real Kong runs while the replicas are up; its section ends the report.
	log.Print("real Kong")
	var kb strings.Builder
	kongSection(ctx, &kb, c, env)
	env.close()
	if !*kongOnly {
		log.Print("Go cost (go test -bench)")
		goSection(&b, c)
		log.Print("store cost (go test -bench ./session)")
		storeSection(&b, c, redis)
		log.Print("memory per session")
		memorySection(&b, redis)
	}
	b.WriteString(kb.String())
	fmt.Fprintf(&b, "\n_Run took %v._\n", time.Since(start).Round(time.Second))

	fmt.Print(b.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote %s", *out)
	}
	if len(failures) > 0 {
		log.Fatalf("%d problem(s): not everything was measured (see above and the report)", len(failures))
	}
}

// redisServer returns redis-server's version, and whether it is on PATH.
func redisServer() (string, bool) {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "not on PATH", false
	}
	o, err := exec.Command(p, "--version").Output()
	if err != nil {
		return p + ": " + err.Error(), true
	}
	for _, f := range strings.Fields(string(o)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v, true
		}
	}
	return strings.TrimSpace(string(o)), true
}

func machine(b *strings.Builder, c config, redisVersion string) {
	model := "unknown"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	goVersion := runtime.Version()
	if o, err := exec.Command("go", "version").Output(); err == nil {
		goVersion = strings.TrimSpace(string(o))
	}
	mode := "full"
	if c.short {
		mode = "short (smoke test)"
	}
	fmt.Fprintf(b, "| machine | |\n|---|---|\n")
	fmt.Fprintf(b, "| nproc | %d |\n| CPU | %s |\n| go | %s |\n| redis-server | %s |\n| date | %s |\n| mode | %s |\n\n",
		runtime.NumCPU(), model, goVersion, redisVersion, time.Now().UTC().Format(time.RFC3339), mode)
}

// deckYAML is the deck file with the mcp-relay plugin entry kept or removed.
func deckYAML(path string, relay bool, relayConfig map[string]any) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	svcs, _ := doc["services"].([]any)
	if len(svcs) == 0 {
		return nil, errors.New("deck: no service")
	}
	svc, _ := svcs[0].(map[string]any)
	routes, _ := svc["routes"].([]any)
	if len(routes) == 0 {
		return nil, errors.New("deck: no route")
	}
	route, _ := routes[0].(map[string]any)
	plugins, _ := route["plugins"].([]any)
	var kept []any
	found := false
	for _, p := range plugins {
		if m, _ := p.(map[string]any); m != nil && m["name"] == "mcp-relay" {
			found = true
			if !relay {
				continue
			}
			if len(relayConfig) > 0 {
				cfg, _ := m["config"].(map[string]any)
				if cfg == nil {
					cfg = map[string]any{}
				}
				for k, v := range relayConfig { // one level deep: {"upstream": {...}}
					sub, _ := cfg[k].(map[string]any)
					add, _ := v.(map[string]any)
					if sub == nil || add == nil {
						cfg[k] = v
						continue
					}
					for kk, vv := range add {
						sub[kk] = vv
					}
				}
				m["config"] = cfg
			}
		}
		kept = append(kept, p)
	}
	if !found {
		return nil, errors.New("deck: no mcp-relay plugin on the route")
	}
	route["plugins"] = kept
	return yaml.Marshal(doc)
}

// serve serves h on 127.0.0.1:0 until ctx ends.
func serve(ctx context.Context, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	stop := func() { _ = srv.Close() }
	go func() { <-ctx.Done(); stop() }()
	return ln.Addr().String(), stop, nil
}

// startNode starts one stand-in node from the deck (with or without
// mcp-relay) in front of targets.
func startNode(ctx context.Context, c config, relay bool, targets []string, onRecord func(standin.RequestRecord)) (*standin.Node, error) {
	return startNodeWith(ctx, c, relay, nil, targets, onRecord)
}

// startNodeWith is startNode with relayConfig merged into the plugin's config.
func startNodeWith(ctx context.Context, c config, relay bool, relayConfig map[string]any, targets []string, onRecord func(standin.RequestRecord)) (*standin.Node, error) {
	d, err := deckYAML(c.deck, relay, relayConfig)
	if err != nil {
		return nil, err
	}
	var logw io.Writer = io.Discard
	if c.verbose {
		logw = os.Stderr
	}
	o := standin.Options{Plugin: c.plugin, DeckYAML: d, Log: logw,
		Targets:  map[string][]string{upstreamName: targets},
		OnRecord: onRecord, RecordBuffer: 16}
	if _, err := os.Stat(c.errTemplate); err == nil {
		o.ErrorTemplateJSON = c.errTemplate
	}
	return standin.Start(ctx, o)
}
