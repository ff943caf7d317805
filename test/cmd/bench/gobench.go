package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"github.com/mcp-relay/mcp-relay/session"
)

// benchRun is `go test` with args; it returns the parsed benchmark lines
// (benchmark name, then unit → values) in first-seen order.
func benchRun(args ...string) ([]string, map[string]map[string][]float64, error) {
	cmd := exec.Command("go", append([]string{"test"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("go test %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	var order []string
	res := map[string]map[string][]float64{}
	pkg := ""
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = p[strings.LastIndex(p, "/")+1:]
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // GOMAXPROCS suffix
			}
		}
		name = pkg + "." + name
		if _, ok := res[name]; !ok {
			order = append(order, name)
			res[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			res[name][f[i+1]] = append(res[name][f[i+1]], v)
		}
	}
	return order, res, err
}

// failures are the measurements that failed; the command exits non-zero
// after writing the report, so that a broken benchmark fails CI's smoke run.
var failures []error

func fail(err error) {
	log.Print(err)
	failures = append(failures, err)
}

func median(v []float64) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

func num(v float64) string {
	switch {
	case v == float64(int64(v)):
		return strconv.FormatInt(int64(v), 10)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// benchArgs are go test arguments for the Go benchmarks, shortened in
// smoke mode.
func benchArgs(c config, bench string, pkgs ...string) []string {
	args := []string{"-run", "^$", "-bench", bench, "-benchmem", "-count", strconv.Itoa(c.count)}
	if c.short {
		args = append([]string{"-benchtime", "100ms"}, args...)
	}
	return append(args, pkgs...)
}

func goSection(b *strings.Builder, c config) {
	args := benchArgs(c, ".", "./handler", "./envelope")
	fmt.Fprintf(b, "## 3. Go cost\n\n")
	fmt.Fprintf(b, "Median of `go test -count %d` per benchmark (`go test %s`). The session store has its own section.\n\n",
		c.count, strings.Join(args, " "))
	fmt.Fprintf(b, "| benchmark | ns/op | B/op | allocs/op | runs |\n|---|---|---|---|---|\n")
	order, res, err := benchRun(args...)
	if err != nil {
		fail(err)
		fmt.Fprintf(b, "| `go test %s` failed: see the command's output | | | | |\n", strings.Join(args, " "))
	}
	for _, name := range order {
		m := res[name]
		fmt.Fprintf(b, "| %s | %s | %s | %s | %d |\n", name, medianCell(m, "ns/op"), medianCell(m, "B/op"), medianCell(m, "allocs/op"), len(m["ns/op"]))
	}
	b.WriteString("\n")
}

// medianCell is the median of unit, or "-".
func medianCell(m map[string][]float64, unit string) string {
	if v, ok := median(m[unit]); ok {
		return num(v)
	}
	return "-"
}

// noRedis is the report's warning when redis-server is missing.
const noRedis = "**NOT MEASURED: redis-server is not on PATH** (install: `apt-get install -y redis-server`)"

// storeSection runs the session store benchmarks: the memory store, and the
// Redis store with and without its per-node cache on a real redis-server
// (when there is one; redis says so).
func storeSection(b *strings.Builder, c config, redis bool) {
	bench := "^(BenchmarkMemory|BenchmarkRedis)$"
	if !redis {
		bench = "^BenchmarkMemory$"
	}
	args := benchArgs(c, bench, "./session")
	fmt.Fprintf(b, "## 4. Store cost\n\n")
	fmt.Fprintf(b, "Median of `go test -count %d` per benchmark (`go test %s`); the Redis benchmarks start a "+
		"redis-server on loopback, so their time is mostly the round trip. Round trips are counted by the store "+
		"(commands and pipelines sent, pub/sub excluded).\n\n", c.count, strings.Join(args, " "))
	if !redis {
		fmt.Fprintf(b, "Redis: %s.\n\n", noRedis)
	}
	order, res, err := benchRun(args...)
	if err != nil {
		fail(err)
		fmt.Fprintf(b, "**`go test %s` failed: see the command's output.**\n\n", strings.Join(args, " "))
	}
	// The Redis cells of one benchmark: ns/op, allocs/op, round trips/op.
	redisCells := func(name string) string {
		if !redis {
			return "not measured | - | -"
		}
		m, ok := res["session.BenchmarkRedis/"+name]
		if !ok {
			return "- | - | -"
		}
		return medianCell(m, "ns/op") + " | " + medianCell(m, "allocs/op") + " | " + medianCell(m, "roundtrips/op")
	}
	memCells := func(name string) string {
		m := res["session.BenchmarkMemory/"+name]
		return medianCell(m, "ns/op") + " | " + medianCell(m, "allocs/op")
	}
	fmt.Fprintf(b, "| operation | memory ns/op | allocs/op | Redis cached ns/op | allocs/op | round trips/op | Redis uncached ns/op | allocs/op | round trips/op |\n")
	fmt.Fprintf(b, "|---|---|---|---|---|---|---|---|---|\n")
	rows := []struct{ op, mem, cached, uncached string }{
		{"lookup (hot session)", "LookupHot", "LookupHotCached", "LookupHotUncached"},
		{"learn", "LearnNew", "Learn", "LearnUncached"},
		{"refresh (lookup due to slide the TTL)", "Refresh", "RefreshCached", "RefreshUncached"},
		{"end", "End", "End", "EndUncached"},
	}
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", r.op, memCells(r.mem), redisCells(r.cached), redisCells(r.uncached))
	}
	fmt.Fprintf(b, "\nRows, as `BenchmarkMemory/<name>`, `BenchmarkRedis/<name>` (cached, uncached) of session/bench_test.go:\n\n")
	fmt.Fprintf(b, "- lookup: one known session looked up back to back (LookupHot, LookupHotCached, LookupHotUncached)\n")
	fmt.Fprintf(b, "- learn: memory a new session each time, evicting past 1M (LearnNew); Redis one write script (Learn, LearnUncached)\n")
	fmt.Fprintf(b, "- refresh: a lookup whose record is due for its sliding TTL refresh; memory: last-seen one granule old, "+
		"slid by a CAS (Refresh); Redis: a record TTL/10 past its last re-arm, read from Redis (with the cache: a cache "+
		"miss, as when a cached copy outlived its life) and re-armed by the lookup script (RefreshCached, RefreshUncached)\n")
	fmt.Fprintf(b, "- end: a tombstone; Redis waits for its own event to come back (End, End, EndUncached)\n\n")

	if redis {
		cachedRT, ok1 := median(res["session.BenchmarkRedis/LookupHotCached"]["roundtrips/op"])
		uncachedRT, ok2 := median(res["session.BenchmarkRedis/LookupHotUncached"]["roundtrips/op"])
		if ok1 && ok2 {
			life := session.DefaultCacheTTL
			fmt.Fprintf(b, "**Hot-session lookups answered without a Redis round trip: %s with the per-node cache** "+
				"(1 - median roundtrips/op of LookupHotCached, one session looked up back to back), %s without it.\n",
				share(cachedRT), share(uncachedRT))
			fmt.Fprintf(b, "The cache trusts a record for %v (session.DefaultCacheTTL, at most TTL/10), then the next "+
				"lookup reads Redis once: a session sending r requests/s through one node costs about 1/(%.0f·r) round "+
				"trips per request, so 99%% needs at least %.0f requests/s per session and node (at 1 request/s: %.0f%%).\n\n",
				life, life.Seconds(), 100/life.Seconds(), 100*(1-1/life.Seconds()))
		} else {
			err := errors.New("store cost: no roundtrips/op for BenchmarkRedis/LookupHotCached or LookupHotUncached")
			fail(err)
			fmt.Fprintf(b, "**%v.**\n\n", err)
		}
	}

	fmt.Fprintf(b, "All store benchmarks:\n\n")
	fmt.Fprintf(b, "| benchmark | ns/op | B/op | allocs/op | round trips/op | runs |\n|---|---|---|---|---|---|\n")
	for _, name := range order {
		m := res[name]
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %d |\n", name, medianCell(m, "ns/op"), medianCell(m, "B/op"), medianCell(m, "allocs/op"),
			medianCell(m, "roundtrips/op"), len(m["ns/op"]))
	}
	b.WriteString("\n")
}

// share is 1 - roundtrips/op as a percentage.
func share(rt float64) string {
	switch p := 100 * (1 - rt); {
	case rt <= 0:
		return "100%"
	case p <= 0:
		return "0%"
	default:
		return strconv.FormatFloat(p, 'f', 4, 64) + "%"
	}
}

func memorySection(b *strings.Builder, redis bool) {
	fmt.Fprintf(b, "## 5. Memory per session\n\n")
	bench := "^(BenchmarkMemoryFootprint|BenchmarkRedisFootprint)$"
	if !redis {
		bench = "^BenchmarkMemoryFootprint$"
	}
	// Each measures once, whatever b.N: 1x.
	args := []string{"-run", "^$", "-bench", bench, "-benchtime", "1x", "-count", "1", "./session"}
	_, res, err := benchRun(args...)
	if err != nil {
		fail(err)
	}
	perSession := func(name string) string {
		if v, ok := median(res["session."+name]["bytes/session"]); ok {
			return strconv.FormatFloat(v, 'f', 0, 64)
		}
		fail(fmt.Errorf("go test %s: %s reported no bytes/session", strings.Join(args, " "), name))
		return "**measurement failed: see the command's output**"
	}
	fmt.Fprintf(b, "Measured by `go test %s`.\n\n", strings.Join(args, " "))
	fmt.Fprintf(b, "| store | bytes/session | measured by |\n|---|---|---|\n")
	fmt.Fprintf(b, "| memory (1M sessions, 48-byte mcp-go ids) | %s | BenchmarkMemoryFootprint: Go heap growth |\n",
		perSession("BenchmarkMemoryFootprint"))
	if redis {
		fmt.Fprintf(b, "| Redis (100k sessions, 48-byte ids, UUID consumer) | %s | BenchmarkRedisFootprint: "+
			"redis-server INFO memory, used_memory minus client buffers, before and after |\n",
			perSession("BenchmarkRedisFootprint"))
	} else {
		fmt.Fprintf(b, "| Redis | %s | BenchmarkRedisFootprint |\n", noRedis)
	}
	b.WriteString("\n")
}
