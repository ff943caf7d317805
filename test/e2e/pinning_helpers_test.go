package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/test/peers"
	"github.com/mcp-relay/mcp-relay/test/standin"
)

// Helpers of pinning_test.go.

// goTB lets worker goroutines use the rawMCP helpers: a fatal error is
// reported with Errorf (safe from any goroutine) and ends only that
// goroutine (its deferred calls run), as t.Fatal would end the test's.
type goTB struct{ testing.TB }

func (g goTB) Fatalf(format string, args ...any) {
	g.TB.Helper()
	g.TB.Errorf(format, args...)
	runtime.Goexit()
}

func (g goTB) Fatal(args ...any) {
	g.TB.Helper()
	g.TB.Error(args...)
	runtime.Goexit()
}

func (g goTB) FailNow() {
	g.TB.Fail()
	runtime.Goexit()
}

// pinTransport is shared by the pinning tests' raw clients: enough idle
// connections per node that concurrent workers do not churn sockets.
var pinTransport = &http.Transport{
	MaxIdleConns:        256,
	MaxIdleConnsPerHost: 64,
	IdleConnTimeout:     30 * time.Second,
}

// newPinRaw is newRaw on pinTransport with the given overall timeout.
func newPinRaw(key string, timeout time.Duration) *rawMCP {
	c := newRaw(key)
	c.client = &http.Client{Transport: pinTransport, Timeout: timeout}
	return c
}

// metrics reads the plugin's Prometheus exposition at addr (retrying while
// the listener comes up) and returns the unlabelled samples and the
// labelled ones under their full name, e.g. `x_total{reason="a"}`.
func metrics(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	var lastErr error
	for range 50 {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		out := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == '#' {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			if i < 0 {
				continue
			}
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err == nil {
				out[line[:i]] = v
			}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return out
	}
	t.Fatalf("metrics at %s: %v", addr, lastErr)
	return nil
}

// redisSession is the session config of the mcp-relay plugin for a Redis
// server at host:port, with extra fields merged in.
func redisSession(host string, port int, extra map[string]any) map[string]any {
	s := map[string]any{"store": "redis", "redis": map[string]any{"host": host, "port": port}}
	merge(s, extra)
	return map[string]any{"session": s}
}

// creators maps every session id the legacy replicas minted to the name of
// the replica that minted it, as the replicas themselves report it.
func creators(t testing.TB, rs ...*peers.Replica) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range rs {
		if !r.Running() {
			continue
		}
		st := r.MustStats(t)
		for _, id := range st.Sessions {
			out[id] = st.Name
		}
	}
	return out
}

// reasonOf is data.reason of an envelope, "" when there is none.
func reasonOf(r rpcResult) string {
	s, _ := r.dataField("reason").(string)
	return s
}

// pluginNotFound tells whether r is the plugin's own 404 envelope for an
// unknown, ended, lost or foreign session.
func pluginNotFound(r rpcResult) bool {
	return r.Status == http.StatusNotFound && reasonOf(r) == "session_not_found" &&
		r.Message["jsonrpc"] == "2.0" && r.errorField("code") == float64(-32001)
}

// durations summarises measured times.
type durations []time.Duration

func (d durations) sorted() durations {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

func (d durations) pct(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := d.sorted()
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func (d durations) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

func (d durations) String() string {
	return fmt.Sprintf("n=%d median=%v p95=%v max=%v", len(d),
		d.pct(0.5).Round(10*time.Microsecond), d.pct(0.95).Round(10*time.Microsecond), d.max().Round(10*time.Microsecond))
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// recordLog collects every request record of the stand-in nodes it is
// given to (withRecords): what each request cost in PDK calls, its phases,
// whether it was buffered. Records are the stand-in's: on real Kong a test
// reads them only in a part guarded by onStandin, or after needStandin.
type recordLog struct {
	mu   sync.Mutex
	recs []standin.RequestRecord
	kong bool // given to a real Kong node: it has no records
}

// withRecords collects the node's request records in l.
func withRecords(l *recordLog) nodeOption {
	return func(o *nodeOptions) { o.recs = l }
}

func (l *recordLog) add(r standin.RequestRecord) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

func (l *recordLog) all(t testing.TB) []standin.RequestRecord {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kong {
		t.Fatal("request records are the stand-in's: real Kong has none (guard this check with onStandin or needStandin)")
	}
	return slices.Clone(l.recs)
}

// loopbackPort splits "127.0.0.1:port".
func loopbackPort(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lookupLatency summarises the plugin's store lookup latency histogram
// (learn waits included): how many lookups finished within each bucket.
func lookupLatency(m map[string]float64) string {
	var parts []string
	prev := 0.0
	for _, le := range []string{"0.001", "0.005", "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"} {
		n := m[`mcp_relay_store_latency_seconds_bucket{op="lookup",le="`+le+`"}`]
		if n-prev > 0 {
			parts = append(parts, fmt.Sprintf("≤%ss: %.0f", le, n-prev))
		}
		prev = n
	}
	return fmt.Sprintf("[%s] of %.0f", strings.Join(parts, ", "), m[`mcp_relay_store_latency_seconds_count{op="lookup"}`])
}

// waitRecords waits (bounded) until the records satisfy cond and returns
// them. Records arrive once their Log event has finished, so this also
// waits for the Log phase.
func (l *recordLog) waitRecords(t testing.TB, timeout time.Duration, cond func([]standin.RequestRecord) bool) []standin.RequestRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs := l.all(t)
		if cond(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("request records not complete within %v (%d records)", timeout, len(recs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// of waits (at most 10 s) for the record of the answer r, found by its
// X-Kong-Request-Id.
func (l *recordLog) of(t testing.TB, r rpcResult) standin.RequestRecord {
	t.Helper()
	id := r.Header.Get("X-Kong-Request-Id")
	var rec standin.RequestRecord
	l.waitRecords(t, 10*time.Second, func(all []standin.RequestRecord) bool {
		for _, x := range all {
			if x.ID == id {
				rec = x
				return true
			}
		}
		return false
	})
	return rec
}

// pdkCalls is what a request cost in PDK calls: its round trips less one
// per phase event and instance start.
func pdkCalls(rec standin.RequestRecord) int {
	return rec.RoundTrips() - len(rec.Events) - rec.InstanceStarts
}

// waitQuiet polls count every 100 ms until it has not changed for quiet, or
// for at most max; it returns the last count and when it last changed.
func waitQuiet(count func() float64, quiet, max time.Duration) (last float64, lastChange time.Time) {
	start := time.Now()
	last, lastChange = count(), start
	for time.Since(start) < max {
		time.Sleep(100 * time.Millisecond)
		if n := count(); n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) >= quiet {
			break
		}
	}
	return last, lastChange
}
