package e2e

// Fault tests: panics in the plugin's handlers, the plugin process killed
// under traffic, clients vanishing mid-stream, and what the logs must never
// show (session ids, API keys, the Redis password, forged lines).

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/session/redistest"
	"github.com/mcp-relay/mcp-relay/test/freeport"
	"github.com/mcp-relay/mcp-relay/test/peers"
)

// TestPanicRecovered: a panic in Access answers that request with a 500
// envelope, a panic in Log (-log-phase) is invisible to the client; neither
// restarts the plugin process.
func TestPanicRecovered(t *testing.T) {
	r1 := peers.StartLegacy(t, "replica-1")
	m := freeport.Addr(t)
	node := startNode(t, deck(t, deckOptions{}), addrs(r1), withPlugin(panicBin(t)), withMetrics(m), withLogPhase)
	pid := node.PluginPID()

	c := newRaw(demoKey)
	if r := c.initialize(t, node.URL()); r.Status != http.StatusOK || c.session == "" {
		t.Fatalf("initialize: %d %s", r.Status, r.Body)
	}
	c.initialized(t, node.URL())
	if name, r := c.whoami(t, node.URL()); name != "replica-1" {
		t.Fatalf("whoami before the panic: %d %s", r.Status, r.Body)
	}
	call := `{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`

	// Access.
	r := c.post(t, node.URL(), call, "X-Mcp-Relay-Panic", "access")
	t.Logf("access panic answered %d %s (Content-Type %q)", r.Status, r.Body, r.Header.Get("Content-Type"))
	if r.Status != http.StatusInternalServerError || r.Message["jsonrpc"] != "2.0" ||
		r.errorField("code") != float64(-32603) || reasonOf(r) != "internal_error" {
		t.Errorf("access panic: got %d %s, want 500 with a -32603 internal_error envelope", r.Status, r.Body)
	}
	if id := r.Message["id"]; id != float64(41) {
		t.Errorf("access panic envelope: id %v, want 41 echoed", id)
	} else {
		t.Logf("access panic envelope id: %v (request id 41)", id)
	}
	checkAlive := func(when string) {
		t.Helper()
		if s, p := node.PluginStarts(), node.PluginPID(); s != 1 || p != pid {
			t.Errorf("%s: plugin process restarted: starts %d, pid %d (was %d)", when, s, p, pid)
		}
		if name, r := c.whoami(t, node.URL()); name != "replica-1" {
			t.Errorf("%s: next request: %d %s", when, r.Status, r.Body)
		}
	}
	checkAlive("after the access panic")
	if got := metrics(t, m)["mcp_relay_panics_total"]; got != 1 {
		t.Errorf("mcp_relay_panics_total after the access panic = %v, want 1", got)
	}

	// Log: runs after the client has its answer.
	r = c.post(t, node.URL(), call, "X-Mcp-Relay-Panic", "log")
	if r.Status != http.StatusOK || toolText(r) != "replica-1" {
		t.Errorf("log panic: the client's answer changed: %d %s", r.Status, r.Body)
	}
	var panics float64
	for range 100 { // the Log phase runs after the answer: wait up to 5 s
		if panics = metrics(t, m)["mcp_relay_panics_total"]; panics >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if panics != 2 {
		t.Errorf("mcp_relay_panics_total after the log panic = %v, want 2", panics)
	}
	checkAlive("after the log panic")
	t.Logf("plugin pid %d, starts %d, panics_total %v", node.PluginPID(), node.PluginStarts(), panics)
}

// TestPluginKilledDuringTraffic: the plugin process is SIGKILLed while
// workers use 20 sessions; the node respawns it, and with the Redis store
// every session still reaches the replica that created it. Requests in
// flight at the kill get Kong's 500. Now and then Kong 3.9.1 stalls the
// plugin's requests for 10 s more and then answers 500: a start of the
// plugin instance whose send reaches the dying process raises out of
// get_instance_id with its claim taken, and every request waits for that
// claim until plugin.lua gives up ("Could not claim instance_id"; the
// stand-in does the same, TestInstanceClaimLeftByFailedSend). The bound
// leaves room for that wait: no request may go unanswered.
func TestPluginKilledDuringTraffic(t *testing.T) {
	rd := redistest.StartServer(t)
	rs := startLegacyReplicas(t, 2)
	cfg := deck(t, deckOptions{relay: redisSession(rd.Host(), rd.Port(), nil)})
	m := freeport.Addr(t)
	node := startNode(t, cfg, addrs(rs...), withMetrics(m))

	const sessions, workers = 20, 4
	const bound = 15 * time.Second // Kong's 10 s claim wait, and more
	clients := make([]*rawMCP, sessions)
	for i := range clients {
		c := newPinRaw(demoKey, bound)
		if r := c.initialize(t, node.URL()); r.Status != http.StatusOK || c.session == "" {
			t.Fatalf("session %d: initialize: %d %s", i, r.Status, r.Body)
		}
		if r := c.initialized(t, node.URL()); r.Status != http.StatusAccepted {
			t.Fatalf("session %d: initialized: %d %s", i, r.Status, r.Body)
		}
		clients[i] = c
	}
	owner := creators(t, rs...)
	for i, c := range clients {
		if name, r := c.whoami(t, node.URL()); name == "" || name != owner[c.session] {
			t.Fatalf("session %d before the kill: whoami %q (owner %q): %d %s", i, name, owner[c.session], r.Status, r.Body)
		}
	}
	pid := node.PluginPID()

	var (
		mu      sync.Mutex
		results []tryResult
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && !stop.Load(); i++ { // bounded
				c := clients[(w+i*workers)%sessions]
				res := tryWhoami(c, node.URL())
				if res.err == nil && res.status == http.StatusOK && res.text != owner[c.session] {
					res.err = fmt.Errorf("session of %s answered by %q", owner[c.session], res.text)
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	killed := time.Now()
	if err := node.KillPlugin(); err != nil {
		t.Fatalf("KillPlugin: %v", err)
	}
	restarted := false
	var newPID int
	for range 200 { // up to 10 s
		if node.PluginStarts() >= 2 && node.PluginPID() != 0 {
			restarted, newPID = true, node.PluginPID()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	respawn := time.Since(killed)
	time.Sleep(1500 * time.Millisecond) // traffic after the restart
	stop.Store(true)
	wg.Wait()
	if !restarted {
		t.Fatalf("plugin not respawned within 10 s (starts %d)", node.PluginStarts())
	}
	t.Logf("plugin pid %d killed; respawned as pid %d after %v (starts %d)", pid, newPID, respawn.Round(time.Millisecond), node.PluginStarts())

	var ok, failed, wrong, hung int
	var firstFail, lastFail time.Time
	var took durations
	statuses := map[string]int{}
	for _, r := range results {
		took = append(took, r.took)
		if r.took >= bound-100*time.Millisecond {
			hung++
		}
		switch {
		case r.err == nil && r.status == http.StatusOK:
			ok++
			continue
		case r.err != nil && r.status == http.StatusOK:
			wrong++
			t.Errorf("misrouted during the kill: %v", r.err)
		}
		failed++
		key := fmt.Sprint(r.status)
		if r.err != nil && r.status == 0 {
			var ne net.Error
			if errors.As(r.err, &ne) && ne.Timeout() {
				key = "timeout"
			} else {
				key = "transport error"
			}
		}
		statuses[key]++
		if firstFail.IsZero() || r.at.Before(firstFail) {
			firstFail = r.at
		}
		if end := r.at.Add(r.took); end.After(lastFail) {
			lastFail = end
		}
	}
	t.Logf("%d requests: %d ok, %d failed %v, %d misrouted, %d hit the %v bound; latency %v",
		len(results), ok, failed, statuses, wrong, hung, bound, took)
	if failed > 0 {
		t.Logf("failures from %v to %v after the kill (window %v)", firstFail.Sub(killed).Round(time.Millisecond),
			lastFail.Sub(killed).Round(time.Millisecond), lastFail.Sub(firstFail).Round(time.Millisecond))
	}
	if hung > 0 {
		t.Errorf("%d requests hung up to the %v bound", hung, bound)
	}
	if ok == 0 {
		t.Errorf("no request succeeded")
	}

	// After the restart: every session still reaches its creator.
	for i, c := range clients {
		if name, r := c.whoami(t, node.URL()); name != owner[c.session] {
			t.Errorf("session %d after the restart: whoami %q, want %q: %d %s", i, name, owner[c.session], r.Status, r.Body)
		}
	}
	if n := misroutes(t, rs...); n != 0 {
		t.Errorf("%d requests reached a replica that does not own their session", n)
	}
	mt := metrics(t, m)
	t.Logf("new plugin process: pins %v unknown %v store_errors %v", mt["mcp_relay_pins_total"],
		mt["mcp_relay_sessions_unknown_total"], mt["mcp_relay_store_errors_total"])
}

// killPluginAndWait kills the node's plugin process and waits (bounded)
// until Kong's next one has opened its socket.
func killPluginAndWait(t *testing.T, node gateway) {
	t.Helper()
	pid, starts := node.PluginPID(), node.PluginStarts()
	if err := node.KillPlugin(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if p := node.PluginPID(); p != 0 && p != pid && node.PluginStarts() > starts &&
			strings.Count(node.pluginOutput(), "Listening on socket: ") >= node.PluginStarts() {
			return
		}
		if i == 400 {
			t.Fatal("no new plugin process within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPluginRestartedServesAtOnce: once Kong's new plugin process listens,
// every request is answered by it. nginx drops the keepalive connections
// to the killed process's socket as their peer closes them, so none of
// them is used again: no 500 for a send into a dead socket.
func TestPluginRestartedServesAtOnce(t *testing.T) {
	r1 := peers.StartLegacy(t, "replica-1")
	node := startNode(t, deck(t, deckOptions{}), addrs(r1))
	// Concurrent requests leave several idle connections in the pool of
	// the plugin socket.
	const concurrent = 8
	initialize := func() rpcResult { return newRaw(demoKey).initialize(t, node.URL()) }
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				initialize()
			}()
		}
		wg.Wait()
	}
	killPluginAndWait(t, node)
	var failed []string
	for i := 0; i < 20; i++ {
		if r := initialize(); r.Status != http.StatusOK {
			failed = append(failed, fmt.Sprintf("request %d: %d %s", i+1, r.Status, r.Body))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of 20 requests after the new plugin process listened failed:\n%s\nKong's log:\n%s",
			len(failed), strings.Join(failed, "\n"), node.kongLog())
	}
	if strings.Contains(node.kongLog(), "broken pipe") {
		t.Errorf("Kong's log has a send into a dead plugin socket:\n%s", node.kongLog())
	}
}

// TestClientDisconnectMidStream: clients that reset the connection in the
// middle of a streamed tools/call or a GET stream leave nothing behind in
// the plugin process or the node.
func TestClientDisconnectMidStream(t *testing.T) {
	r1 := peers.StartLegacy(t, "replica-1")
	m := freeport.Addr(t)
	var recs recordLog
	node := startNode(t, deck(t, deckOptions{}), addrs(r1), withMetrics(m), withRecords(&recs))
	var sent atomic.Int64

	abort := func(i int) error {
		c := newRaw(demoKey)
		if r := c.initialize(t, node.URL()); r.Status != http.StatusOK || c.session == "" {
			return fmt.Errorf("initialize: %d %s", r.Status, r.Body)
		}
		if r := c.initialized(t, node.URL()); r.Status != http.StatusAccepted {
			return fmt.Errorf("initialized: %d %s", r.Status, r.Body)
		}
		sent.Add(3)
		h := map[string]string{"apikey": demoKey, "Mcp-Session-Id": c.session, "MCP-Protocol-Version": c.version}
		var status string
		var err error
		if i%2 == 0 {
			h["Content-Type"] = "application/json"
			h["Accept"] = "application/json, text/event-stream"
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"progress","arguments":{"steps":100,"delay_ms":100},"_meta":{"progressToken":"p%d"}}}`, i, i)
			status, err = openAndAbort(node.Addr(), "POST", "/mcp", h, body, nil, 5*time.Second)
			if err == nil && !strings.Contains(status, " 200") {
				err = fmt.Errorf("stream answered %q", status)
			}
			return err
		}
		// The GET stream: aborted once the replica serves it (no event
		// comes on it, so through Kong no response head either).
		h["Accept"] = "text/event-stream"
		gets := r1.MustStats(t).RequestsByMethod["GET"]
		_, err = openAndAbort(node.Addr(), "GET", "/mcp", h, "", func() bool {
			return r1.MustStats(t).RequestsByMethod["GET"] > gets
		}, 5*time.Second)
		return err
	}

	// Warm up (connection pools, first-use goroutines), then measure.
	for i := range 2 {
		if err := abort(i); err != nil {
			t.Fatalf("warm-up %d: %v", i, err)
		}
	}
	time.Sleep(time.Second)
	before := metrics(t, m)
	const n = 30
	start := time.Now()
	for i := range n {
		if err := abort(i); err != nil {
			t.Errorf("stream %d: %v", i, err)
		}
	}
	took := time.Since(start)

	// Settling: every request ended at the node (its Log event included),
	// then the plugin's goroutines (bounded waits). An aborted stream must
	// end at the node long before its tool would (10 s).
	want := int(sent.Load())
	settle := time.Now()
	waitServed(t, node, want, 15*time.Second)
	endedAfter := time.Since(settle)
	var streamDur durations
	if onStandin(t, "each aborted stream's duration at the node", "request durations are the stand-in's records") {
		for _, r := range recs.all(t) {
			if r.Method == "GET" || (r.Method == "POST" && !r.Buffered) {
				streamDur = append(streamDur, r.Duration)
			}
		}
	}
	var after map[string]float64
	for range 100 { // up to 10 s
		after = metrics(t, m)
		if after["go_goroutines"] <= before["go_goroutines"]+5 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	g0, g1 := before["go_goroutines"], after["go_goroutines"]
	rss0, rss1 := before["process_resident_memory_bytes"], after["process_resident_memory_bytes"]
	t.Logf("%d aborted streams in %v; all %d requests ended at the node %v after the last; stream durations at the node %v",
		n, took.Round(time.Millisecond), want, endedAfter.Round(time.Millisecond), streamDur)
	t.Logf("plugin go_goroutines %v -> %v; RSS %.1f MiB -> %.1f MiB; heap in use %.1f MiB -> %.1f MiB",
		g0, g1, rss0/(1<<20), rss1/(1<<20), before["go_memstats_heap_inuse_bytes"]/(1<<20), after["go_memstats_heap_inuse_bytes"]/(1<<20))
	if g0 == 0 || rss0 == 0 {
		t.Errorf("metrics lack go_goroutines or process_resident_memory_bytes")
	}
	if g1 > g0+5 {
		t.Errorf("plugin goroutines grew from %v to %v", g0, g1)
	}
	if rss1 > rss0+64<<20 {
		t.Errorf("plugin RSS grew from %.1f MiB to %.1f MiB", rss0/(1<<20), rss1/(1<<20))
	}
	if d := streamDur.max(); d > 5*time.Second {
		t.Errorf("an aborted stream stayed open %v at the node (the tool runs 10 s)", d)
	}
	if endedAfter > 5*time.Second {
		t.Errorf("the aborted streams ended at the node %v after the last abort (the tool runs 10 s)", endedAfter)
	}
	// The node still works.
	c := newRaw(demoKey)
	if r := c.initialize(t, node.URL()); r.Status != http.StatusOK {
		t.Errorf("initialize after the aborts: %d %s", r.Status, r.Body)
	}
}

// nginxCoreDebug matches a debug line of nginx's own C code: after
// "pid#tid: *conn " it names no Lua source ("[lua]", "[kong]").
var nginxCoreDebug = regexp.MustCompile(`\[debug\] \d+#\d+: (\*\d+ )?[^\[]`)

// logEntryStart matches the first line of an error log entry.
var logEntryStart = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[`)

// TestNoSecretsInLogs: whatever happens, the node's and the plugin's output
// holds no session id, API key or Redis password, and header values cannot
// forge log lines.
func TestNoSecretsInLogs(t *testing.T) {
	const pw = "s3cret-redis-pw"
	const wrongKey = "wrong-key-8c1f"
	const forged = `x" level=ERROR msg=forged`
	rd := redistest.StartServer(t, redistest.WithArgs("--requirepass", pw))
	rs := startLegacyReplicas(t, 2)
	cfg := deck(t, deckOptions{relay: redisSession(rd.Host(), rd.Port(), map[string]any{
		"redis": map[string]any{"password": pw}, "learn_wait_ms": 200})})
	node := startNode(t, cfg, addrs(rs...), withLogLevel("debug"))
	output := func() string { return node.kongLog() + node.pluginOutput() }
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("collected output:\n%s", output())
		}
	})

	// Sessions created and used.
	var clients []*rawMCP
	for i := range 4 {
		c := newRaw(demoKey)
		if r := c.initialize(t, node.URL()); r.Status != http.StatusOK || c.session == "" {
			t.Fatalf("session %d: initialize: %d %s", i, r.Status, r.Body)
		}
		c.initialized(t, node.URL())
		if name, r := c.whoami(t, node.URL()); name == "" {
			t.Errorf("session %d: whoami: %d %s", i, r.Status, r.Body)
		}
		clients = append(clients, c)
	}
	// A stolen session presented by the other consumer, plain and with
	// header values shaped as log lines.
	thief := newRaw(otherKey)
	thief.session = clients[0].session
	if r := thief.request(t, node.URL(), "tools/list", ""); r.Status != http.StatusNotFound {
		t.Errorf("stolen session: %d %s, want 404", r.Status, r.Body)
	}
	r := thief.post(t, node.URL(), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		"X-Consumer-ID", forged, "X-Consumer-Username", forged, "X-Credential-Identifier", forged,
		"User-Agent", forged, "X-Forwarded-For", forged)
	if r.Status != http.StatusNotFound {
		t.Errorf("stolen session with forged headers: %d %s, want 404", r.Status, r.Body)
	}
	thief.session = `sid"level=ERROR`
	thief.request(t, node.URL(), "tools/list", "")
	// Wrong API keys, one shaped as a log line.
	for _, k := range []string{wrongKey, forged} {
		// envelope.status decides 200 or 401; the envelope says unauthorized.
		if r := newRaw(k).request(t, node.URL(), "tools/list", ""); reasonOf(r) != "unauthorized" {
			t.Errorf("wrong apikey: %d %s, want the unauthorized envelope", r.Status, r.Body)
		}
	}
	// Redis down for a moment: lookups and learns fail (and get logged).
	rd.Stop()
	for i, c := range clients {
		r := c.request(t, node.URL(), "tools/list", "")
		t.Logf("session %d with Redis down: %d", i, r.Status)
	}
	// A new session: its learn fails in the Log phase, after the answer, so
	// Redis stays down a little longer.
	nc := newRaw(demoKey)
	nc.initialize(t, node.URL())
	for range 60 { // up to 3 s
		if strings.Contains(output(), "could not record session") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rd.Start()
	for _, c := range clients { // sessions are gone with Redis's data: 404
		c.request(t, node.URL(), "tools/list", "")
	}

	text := output()
	var lines []string
	core := 0
	dropping := false
	for _, l := range strings.Split(node.kongLog(), "\n") {
		// nginx's own debug entries (request headers among them, over
		// several lines) exist only in an nginx built --with-debug, as
		// Debian's (the real-Kong harness) is and Kong's OpenResty is not:
		// neither Kong's lines nor the plugin's.
		if logEntryStart.MatchString(l) {
			dropping = nginxCoreDebug.MatchString(l)
		}
		if dropping {
			core++
			continue
		}
		lines = append(lines, l)
	}
	lines = append(lines, strings.Split(node.pluginOutput(), "\n")...)
	t.Logf("collected %d lines (%d bytes) of node and plugin output (%d of nginx's own debug lines left out)", len(lines), len(text), core)
	for _, must := range []string{"session presented by another consumer", "session store failed", "could not record session"} {
		if !strings.Contains(text, must) {
			t.Errorf("the output lacks %q: the test did not provoke what it checks", must)
		}
	}
	secrets := map[string]string{"demo apikey": demoKey, "other apikey": otherKey, "wrong apikey": wrongKey, "Redis password": pw}
	ids := creators(t, rs...)
	for id := range ids {
		secrets["session id "+id] = id
	}
	t.Logf("checking %d secrets (%d session ids)", len(secrets), len(ids))
	for what, s := range secrets {
		for _, l := range lines {
			if strings.Contains(l, s) {
				t.Errorf("%s appears in the output: %s", what, l)
				break
			}
		}
	}
	forgedLines := 0
	for _, l := range lines {
		body := l
		if i := strings.Index(l, "] ["); i >= 0 { // after "date [info] [mcp-relay:pid] "
			if j := strings.Index(l[i+3:], "] "); j >= 0 {
				body = l[i+3+j+2:]
			}
		}
		if strings.HasPrefix(strings.TrimSpace(body), "level=ERROR msg=forged") || forgedUnquoted(l, "msg=forged") {
			forgedLines++
			t.Errorf("forged log line: %s", l)
		}
	}
	t.Logf("lines mentioning the forged value: %d (all quoted: %v)", strings.Count(strings.Join(lines, "\n"), "msg=forged"), forgedLines == 0)
}
