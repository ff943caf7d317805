package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcp-relay/mcp-relay/test/standin"
)

// target is one node under load and what to send it.
type target struct {
	node     *standin.Node
	client   *http.Client
	sessions []string // one per worker (legacy)
	reqs     int
	errs     int // transport errors and non-200 answers
	elapsed  time.Duration
}

func newClient(workers int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 2 * workers, MaxIdleConnsPerHost: 2 * workers, DisableCompression: true, IdleConnTimeout: time.Minute,
	}}
}

// load runs workers × perWorker requests made by mk against t.
func load(t *target, workers, perWorker int, mk func(t *target, worker int) *http.Request) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs := 0
			for i := 0; i < perWorker; i++ {
				resp, err := t.client.Do(mk(t, w))
				if err != nil {
					errs++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs++
				}
			}
			mu.Lock()
			t.errs += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.elapsed += time.Since(start)
	t.reqs += workers * perWorker
}

func (t *target) rate() float64 {
	if t.elapsed <= 0 {
		return 0
	}
	return float64(t.reqs) / t.elapsed.Seconds()
}

type scenario struct {
	name         string
	relay, plain *target
}

func throughputSection(ctx context.Context, b *strings.Builder, e *env) error {
	c := e.c
	var nodes []*standin.Node
	defer func() {
		for _, n := range nodes {
			_ = n.Close()
		}
	}()
	mkTarget := func(relay bool, upstream string, legacySessions bool) (*target, error) {
		n, err := startNode(ctx, c, relay, []string{upstream}, nil)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
		t := &target{node: n, client: newClient(c.workers)}
		if legacySessions {
			for w := 0; w < c.workers; w++ {
				s, err := openSession(t.client, n.URL())
				if err != nil {
					return nil, err
				}
				t.sessions = append(t.sessions, s)
			}
		}
		return t, nil
	}
	pinned := func(t *target, w int) *http.Request {
		return newRequest(http.MethodPost, t.node.URL(), echoBody(), sessionHeaders(t.sessions[w])...)
	}
	modern := func(t *target, _ int) *http.Request {
		return newRequest(http.MethodPost, t.node.URL(), modernEchoBody(), modernHeaders...)
	}

	var scenarios []scenario
	var mks []func(*target, int) *http.Request
	for _, s := range []struct {
		name     string
		upstream string
		legacy   bool
		mk       func(*target, int) *http.Request
	}{
		{"pinned legacy POST (tools/call echo)", e.legacyA, true, pinned},
		{"2026-07-28 stateless POST (tools/call echo)", e.modern, false, modern},
	} {
		r, err := mkTarget(true, s.upstream, s.legacy)
		if err != nil {
			return fmt.Errorf("%s, with mcp-relay: %w", s.name, err)
		}
		p, err := mkTarget(false, s.upstream, s.legacy)
		if err != nil {
			return fmt.Errorf("%s, without mcp-relay: %w", s.name, err)
		}
		scenarios = append(scenarios, scenario{name: s.name, relay: r, plain: p})
		mks = append(mks, s.mk)
	}

	warm := min(50, c.requests)
	for i, s := range scenarios {
		load(s.relay, c.workers, warm, mks[i])
		load(s.plain, c.workers, warm, mks[i])
		*s.relay, *s.plain = target{node: s.relay.node, client: s.relay.client, sessions: s.relay.sessions},
			target{node: s.plain.node, client: s.plain.client, sessions: s.plain.sessions}
	}
	for round := 0; round < c.rounds; round++ {
		for i, s := range scenarios {
			first, second := s.relay, s.plain
			if round%2 == 1 {
				first, second = second, first
			}
			load(first, c.workers, c.requests, mks[i])
			load(second, c.workers, c.requests, mks[i])
		}
	}

	fmt.Fprintf(b, "## 2. Throughput with and without mcp-relay\n\n")
	fmt.Fprintf(b, "One stand-in node per column, same deck file (kong/kong.yaml, key-auth with apikey %s) "+
		"with or without the mcp-relay plugin entry, same single upstream replica, same load: %d workers × %d requests per run, "+
		"%d round(s) alternating which config goes first, after %d warm-up requests per worker. "+
		"The legacy replica is one target in both configs, so the config without mcp-relay is not misrouted; "+
		"each worker uses its own session, initialized beforehand through the node it loads.\n\n",
		demoKey, c.workers, c.requests, c.rounds, warm)
	fmt.Fprintf(b, "| request kind | with mcp-relay (req/s) | without (req/s) | ratio with/without | errors with / without |\n")
	fmt.Fprintf(b, "|---|---|---|---|---|\n")
	for _, s := range scenarios {
		ratio := 0.0
		if s.plain.rate() > 0 {
			ratio = s.relay.rate() / s.plain.rate()
		}
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %.2f | %d / %d |\n", s.name, s.relay.rate(), s.plain.rate(), ratio, s.relay.errs, s.plain.errs)
	}
	b.WriteString("\n")
	return nil
}
