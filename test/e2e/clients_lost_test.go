package e2e

// The lost-session cases of TestClientMatrix: a client keeps one session
// (one client object, one bridge process), makes a call, the replica that
// owns the session is killed, and the same client calls again once the
// plugin's probes see the replica down. With config.session.recover (the
// default) the call after the kill must succeed; with recover: false the
// matrix records what each client does on its own.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/peers/mcptest"
)

// lostCallBound bounds one call after the kill: a call that takes longer
// counts as hung.
const lostCallBound = 30 * time.Second

// lostRig is one stand-in node with kong/kong.yaml as shipped (memory
// store, default probes, recovery on unless turned off) in front of three
// legacy replicas, each of which has served a session already, as in any
// deployment.
type lostRig struct {
	*recoveryRig
	initsAtKill float64 // initialize requests the live replicas had seen once the kill was noticed
}

func newLostRig(t *testing.T, recover bool) *lostRig {
	t.Helper()
	rs := startLegacyReplicas(t, 3)
	var relay map[string]any
	if !recover {
		relay = map[string]any{"session": map[string]any{"recover": false}}
	}
	m := freeport.Addr(t)
	node := startNode(t, deck(t, deckOptions{relay: relay}), addrs(rs...), withMetrics(m))
	g := &recoveryRig{t: t, store: "memory", nodes: []gateway{node}, metrics: []string{m},
		url: node.URL() + "/mcp", replicas: rs, targets: addrs(rs...)}
	g.coverReplicas()
	return &lostRig{recoveryRig: g}
}

// initializes counts the initialize requests the live replicas have seen.
func (g *lostRig) initializes() float64 {
	n := 0.0
	for _, r := range g.replicas {
		if r.Running() {
			n += float64(r.MustStats(g.t).RequestsByRPC["initialize"])
		}
	}
	return n
}

// killOwner kills the replica named owner and waits (bounded) until the
// plugin's probes count it down.
func (g *lostRig) killOwner(owner string) {
	g.t.Helper()
	g.kill(g.byName(owner))
	g.waitDown(1)
	g.initsAtKill = g.initializes()
}

// runLost runs a lost-session case of cl on a rig of its own. Every
// initialize after the kill that the plugin did not send to recover a
// session is the client's own: it tells a client that re-initialized by
// itself from a session the plugin recovered without the client noticing.
func runLost(t *testing.T, cl matrixClient, cc clientCase) clientRun {
	g := newLostRig(t, !cc.noRecover)
	r := cl.lost(t, g)
	if r.hung || g.initsAtKill == 0 {
		return r // no kill happened, or the client never came back
	}
	recovered := g.metric("mcp_relay_sessions_recovered_total")
	reinits := g.initializes() - g.initsAtKill - recovered
	if r.ok && reinits > 0 {
		r.line = "re-initialized by itself, then " + r.line
	}
	t.Logf("after the kill: the call took %v; %v sessions recovered by the plugin, %v initializes sent by the client",
		r.took.Round(time.Millisecond), recovered, reinits)
	if !cc.noRecover {
		if recovered != 1 {
			t.Errorf("sessions_recovered_total = %v, want 1", recovered)
		}
		if reinits != 0 {
			t.Errorf("the client initialized %v times after the kill: the recovery must leave it nothing to do", reinits)
		}
	}
	return r
}

// lostLine says which replica answered the call after the kill, in words
// that do not change between runs.
func lostLine(text, killed string) string {
	switch {
	case text == killed:
		return "result: the killed replica (" + text + ")"
	case strings.HasPrefix(text, "replica-"):
		return "result: another replica"
	}
	return "result: " + text
}

// lostTS: the TypeScript SDK's Client, one object for both calls; client.mjs
// waits for a signal file between them while the replica is killed.
func lostTS(t *testing.T, g *lostRig) clientRun {
	res, owner, err := g.killOwnerOf(peers.NodeClientOptions{URL: g.url,
		Headers: map[string]string{"apikey": demoKey}, Timeout: lostCallBound, Deadline: 90 * time.Second}, clientBound,
		func(r *peers.Replica) { g.killOwner(r.Name()) },
		[]string{"call", "whoami", "{}"}, []string{"call", "whoami", "{}"})
	switch {
	case owner == nil && res.Raw == "" && err == nil:
		return clientRun{line: "the first call reached no replica", hung: true}
	case owner == nil:
		return clientRun{line: fmt.Sprintf("first call failed: %v %s", err, res.Raw)}
	}
	o := struct {
		res peers.NodeResult
		err error
	}{res, err}
	r := clientRun{ok: o.err == nil && o.res.OK}
	var after *peers.NodeStep
	for i := range o.res.Steps {
		if o.res.Steps[i].Scenario == "call" {
			after = &o.res.Steps[i]
		}
	}
	if after != nil && after != o.res.Step("call") {
		r.took = time.Duration(after.DurationMs) * time.Millisecond
	}
	switch {
	case len(o.res.Errors) > 0:
		e := o.res.Errors[0]
		r.line = e.Message
		if e.Kind == "http" {
			r.line = fmt.Sprintf("HTTP %d %s", e.HTTPStatus, e.RPCMessage)
		}
		r.hung = e.Kind == "deadline" || e.Kind == "timeout"
	case r.ok && after != nil:
		r.line = lostLine(after.Text, owner.Name())
	default:
		r.line = fmt.Sprint(o.err)
	}
	return r
}

// lostMCPGo: one mcp-go client object for both calls.
func lostMCPGo(t *testing.T, g *lostRig) clientRun {
	c, _, err := mcptest.NewClient(t, g.url, mcptest.Config{Version: mcp.ProtocolVersion20251125,
		Headers: map[string]string{"apikey": demoKey}})
	if err != nil {
		return clientRun{line: "initialize: " + err.Error()}
	}
	owner, err := whoami(c)
	if err != nil {
		return clientRun{line: "first call: " + err.Error()}
	}
	g.killOwner(owner)
	start := time.Now()
	res, err := mcptest.CallToolErr(c, "whoami", nil, nil, lostCallBound)
	r := clientRun{took: time.Since(start)}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		r.hung, r.line = true, err.Error()
	case err != nil:
		r.line = err.Error()
	default:
		r.ok = !res.IsError
		r.line = lostLine(mcptest.Text(res), owner)
	}
	return r
}

// lostMCPRemote: one mcp-remote process, the bridge a desktop client keeps
// running, driven over stdin/stdout.
func lostMCPRemote(dir string) func(*testing.T, *lostRig) clientRun {
	return func(t *testing.T, g *lostRig) clientRun {
		stdin, stdout, stderr, stop := startMCPRemote(t, dir, g.url, demoKey)
		defer stop()

		type answer struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct{ Message string }
		}
		answers := make(chan answer, 16)
		go func() {
			defer close(answers)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var a answer
				if json.Unmarshal(sc.Bytes(), &a) == nil && len(a.ID) > 0 {
					answers <- a
				}
			}
		}()
		send := func(s string) { _, _ = io.WriteString(stdin, s+"\n") }
		// call sends a request and waits (bounded) for the answer with its id.
		call := func(id int, method, params string) (answer, bool, error) {
			send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params))
			timer := time.NewTimer(lostCallBound)
			defer timer.Stop()
			for {
				select {
				case a, open := <-answers:
					if !open {
						return answer{}, false, fmt.Errorf("mcp-remote exited: %s", mcpRemoteLine(stderr.String(), ""))
					}
					if string(a.ID) == fmt.Sprint(id) {
						return a, false, nil
					}
				case <-timer.C:
					return answer{}, true, fmt.Errorf("no answer: %s", mcpRemoteLine(stderr.String(), ""))
				}
			}
		}
		text := func(a answer) string {
			var res struct{ Content []struct{ Text string } }
			_ = json.Unmarshal(a.Result, &res)
			if len(res.Content) == 0 {
				return ""
			}
			return res.Content[0].Text
		}

		if a, hung, err := call(1, "initialize", `{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"matrix","version":"1"}}`); err != nil || a.Error != nil {
			return clientRun{line: fmt.Sprintf("initialize: %v %+v", err, a.Error), hung: hung}
		}
		send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
		a, hung, err := call(2, "tools/call", `{"name":"whoami","arguments":{}}`)
		if err != nil || a.Error != nil {
			return clientRun{line: fmt.Sprintf("first call: %v %+v", err, a.Error), hung: hung}
		}
		owner := text(a)
		g.killOwner(owner)

		start := time.Now()
		a, hung, err = call(3, "tools/call", `{"name":"whoami","arguments":{}}`)
		r := clientRun{took: time.Since(start), hung: hung}
		switch {
		case err != nil:
			r.line = err.Error()
		case a.Error != nil:
			r.line = a.Error.Message
		default:
			r.ok, r.line = true, lostLine(text(a), owner)
		}
		// The bridge itself must still work, without a sign-in: the next
		// call answers too.
		if r.ok {
			if a, _, err := call(4, "tools/call", `{"name":"echo","arguments":{"text":"still there"}}`); err != nil || a.Error != nil || text(a) != "still there" {
				r.ok, r.line = false, fmt.Sprintf("the call after that: %v %+v %q", err, a.Error, text(a))
			}
		}
		if s := stderr.String(); strings.Contains(s, "Waiting for authorization") || strings.Contains(s, "authorize") {
			r.ok, r.line = false, "asked for a sign-in: "+mcpRemoteLine(s, "")
		}
		if reinit := strings.Count(stderr.String(), "Connected to remote server"); reinit > 1 {
			t.Logf("mcp-remote connected %d times (re-initialized after the kill)", reinit)
		}
		t.Logf("mcp-remote stderr:\n%s", stderr.String())
		return r
	}
}

// Why the one-shot clients have no lost-session case.
const (
	inspectorOneShot = "one call per process: every run is a new session"
	listOneShot      = "`mcp list` connects once: every run is a new session"
)
