package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mcp-relay/mcp-relay/test/standin"
)

// collector gathers the records a node delivers through OnRecord.
type collector struct {
	ch   chan standin.RequestRecord
	seen map[string]standin.RequestRecord
}

func newCollector() *collector {
	return &collector{ch: make(chan standin.RequestRecord, 1024), seen: map[string]standin.RequestRecord{}}
}

func (c *collector) onRecord(r standin.RequestRecord) {
	select {
	case c.ch <- r:
	default: // never block the node
	}
}

// wait returns the record of the request with Kong request id id.
func (c *collector) wait(id string, timeout time.Duration) (standin.RequestRecord, bool) {
	if r, ok := c.seen[id]; ok {
		return r, true
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case r := <-c.ch:
			if r.ID == id {
				return r, true
			}
			c.seen[r.ID] = r
		case <-deadline.C:
			return standin.RequestRecord{}, false
		}
	}
}

type kindResult struct {
	name   string
	res    result
	rec    standin.RequestRecord
	ok     bool
	errMsg string
}

func pdkSection(ctx context.Context, b *strings.Builder, e *env) error {
	col := newCollector()
	legacyNode, err := startNode(ctx, e.c, true, []string{e.legacyA, e.legacyB}, col.onRecord)
	if err != nil {
		return fmt.Errorf("legacy node: %w", err)
	}
	defer legacyNode.Close()
	modernNode, err := startNode(ctx, e.c, true, []string{e.modern}, col.onRecord)
	if err != nil {
		return fmt.Errorf("modern node: %w", err)
	}
	defer modernNode.Close()
	uncheckedNode, err := startNodeWith(ctx, e.c, true,
		map[string]any{"upstream": map[string]any{"check_method_headers": false}}, []string{e.modern}, col.onRecord)
	if err != nil {
		return fmt.Errorf("modern node without the header check: %w", err)
	}
	defer uncheckedNode.Close()
	badNode, err := startNode(ctx, e.c, true, []string{e.bare401}, col.onRecord)
	if err != nil {
		return fmt.Errorf("bare-401 node: %w", err)
	}
	defer badNode.Close()
	client := e.client
	L, M, U, B := legacyNode.URL(), modernNode.URL(), uncheckedNode.URL(), badNode.URL()

	// Warm up: instance starts happen on the first request of each node.
	if _, err := openSession(client, L); err != nil {
		return err
	}
	_, _ = do(client, newRequest(http.MethodPost, M, modernEchoBody(), modernHeaders...))
	_, _ = do(client, newRequest(http.MethodPost, U, modernEchoBody(), modernHeaders...))
	_, _ = do(client, newRequest(http.MethodPost, B, initializeBody(), "apikey", demoKey))
	session, err := openSession(client, L)
	if err != nil {
		return err
	}

	var kinds []kindResult
	run := func(name string, req *http.Request) {
		k := kindResult{name: name}
		r, err := doCapped(client, req, 3*time.Second)
		if err != nil {
			k.errMsg = err.Error()
		} else {
			k.res = r
			k.rec, k.ok = col.wait(r.RequestID, 10*time.Second)
			if !k.ok {
				k.errMsg = "no record within 10 s"
			}
		}
		kinds = append(kinds, k)
	}

	run("pinned legacy POST (tools/call echo)", newRequest(http.MethodPost, L, echoBody(), sessionHeaders(session)...))
	run("pinned legacy POST, buffered (tools/list)", newRequest(http.MethodPost, L, listBody(), sessionHeaders(session)...))
	run("legacy POST answered with SSE (tools/call progress)", newRequest(http.MethodPost, L, progressBody(), sessionHeaders(session)...))
	kinds = append(kinds, getStream(client, col, L, session))
	run("initialize", newRequest(http.MethodPost, L, initializeBody(), "apikey", demoKey))
	run("DELETE", newRequest(http.MethodDelete, L, "", sessionHeaders(session)...))
	run("2026-07-28 stateless POST (tools/call echo)", newRequest(http.MethodPost, M, modernEchoBody(), modernHeaders...))
	run("2026-07-28 stateless POST, upstream.check_method_headers off", newRequest(http.MethodPost, U, modernEchoBody(), modernHeaders...))
	html := newRequest(http.MethodGet, L, "", "apikey", demoKey)
	html.Header.Set("Accept", "text/html")
	run("non-MCP GET (Accept: text/html)", html)
	run("anonymous initialize (no apikey)", newRequest(http.MethodPost, L, initializeBody()))
	run("upstream bare 401 rewritten (initialize)", newRequest(http.MethodPost, B, initializeBody(), "apikey", demoKey))
	closeAuthz, err := authzKinds(ctx, e, col, run)
	defer closeAuthz()
	if err != nil {
		return err
	}

	fmt.Fprintf(b, "## 1. PDK round trips per request kind\n\n")
	fmt.Fprintf(b, "Counted by the Kong stand-in for one request of each kind, after warm-up (no instance starts). ")
	fmt.Fprintf(b, "Round trips = events + PDK calls + instance starts, each one socket round trip to the plugin.\n\n")
	fmt.Fprintf(b, "| request kind | status | content type | events | PDK calls by phase and method | PDK calls | round trips |\n")
	fmt.Fprintf(b, "|---|---|---|---|---|---|---|\n")
	for _, k := range kinds {
		if !k.ok {
			fmt.Fprintf(b, "| %s | %d | %s | - | %s | - | - |\n", k.name, k.res.Status, k.res.ContentType, k.errMsg)
			continue
		}
		calls := k.rec.RoundTrips() - len(k.rec.Events) - k.rec.InstanceStarts
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %d | %d |\n", k.name, k.rec.Status, cell(k.res.ContentType),
			strings.Join(k.rec.Events, ", "), callsCell(k.rec), calls, k.rec.RoundTrips())
	}
	b.WriteString("\n")
	return nil
}

// doCapped is do, but closes an answer whose body is still open after
// bodyWait (a stream) and marks it in the content type.
func doCapped(client *http.Client, req *http.Request, bodyWait time.Duration) (result, error) {
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	timer := time.AfterFunc(bodyWait, cancel)
	body, rerr := io.ReadAll(resp.Body)
	cut := !timer.Stop() && rerr != nil
	r := result{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"),
		RequestID: resp.Header.Get("X-Kong-Request-Id"), Session: resp.Header.Get("Mcp-Session-Id"), Body: body}
	if cut {
		r.ContentType += fmt.Sprintf(" (still open after %v: closed by the client)", bodyWait)
	} else if rerr != nil {
		return result{}, fmt.Errorf("%s %s: reading: %w", req.Method, req.URL, rerr)
	}
	return r, nil
}

// getStream opens the session's GET stream, reads the headers and closes it.
func getStream(client *http.Client, col *collector, baseURL, session string) kindResult {
	k := kindResult{name: "GET stream open (opened, then closed)"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := newRequest(http.MethodGet, baseURL, "", sessionHeaders(session)...).WithContext(ctx)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		k.errMsg = err.Error()
		return k
	}
	k.res = result{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), RequestID: resp.Header.Get("X-Kong-Request-Id")}
	time.Sleep(50 * time.Millisecond)
	cancel()
	_ = resp.Body.Close()
	k.rec, k.ok = col.wait(k.res.RequestID, 15*time.Second)
	if !k.ok {
		k.errMsg = "no record within 15 s"
	}
	return k
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// callsCell lists the calls per phase, in Kong's phase order.
func callsCell(r standin.RequestRecord) string {
	order := map[string]int{"certificate": 0, "rewrite": 1, "access": 2, "response": 3, "preread": 4, "log": 5}
	phases := make([]string, 0, len(r.Calls))
	for p := range r.Calls {
		phases = append(phases, p)
	}
	sort.Slice(phases, func(i, j int) bool {
		oi, iok := order[phases[i]]
		oj, jok := order[phases[j]]
		if iok != jok {
			return iok
		}
		if oi != oj {
			return oi < oj
		}
		return phases[i] < phases[j]
	})
	var parts []string
	for _, p := range phases {
		var ms []string
		for m, n := range r.Calls[p] {
			ms = append(ms, fmt.Sprintf("%s=%d", strings.TrimPrefix(m, "kong."), n))
		}
		if len(ms) == 0 {
			continue
		}
		sort.Strings(ms)
		parts = append(parts, fmt.Sprintf("**%s** (%d): %s", p, r.PhaseCalls(p), strings.Join(ms, ", ")))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "<br>")
}
