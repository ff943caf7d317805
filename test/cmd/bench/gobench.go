package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log"
	"os/exec"
	"sort"
	"strconv"
	"strings"
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

func goSection(b *strings.Builder, c config) {
	count := strconv.Itoa(c.count)
	runs := [][]string{
		{"-run", "^$", "-bench", ".", "-benchmem", "-count", count, "./handler", "./envelope"},
		// The Redis benchmarks need a redis-server: only the memory store here.
		{"-run", "^$", "-bench", "^BenchmarkMemory$", "-benchmem", "-count", count, "./session"},
	}
	if c.short {
		for i := range runs {
			runs[i] = append([]string{"-benchtime", "100ms"}, runs[i]...)
		}
	}
	fmt.Fprintf(b, "## 3. Go cost\n\n")
	fmt.Fprintf(b, "Median of `go test -count %s` per benchmark (`go test %s`; `go test %s`).\n\n", count,
		strings.Join(runs[0], " "), strings.Join(runs[1], " "))
	fmt.Fprintf(b, "| benchmark | ns/op | B/op | allocs/op | runs |\n|---|---|---|---|---|\n")
	for _, args := range runs {
		order, res, err := benchRun(args...)
		if err != nil {
			fail(err)
			fmt.Fprintf(b, "| `go test %s` failed: see the command's output | | | | |\n", strings.Join(args, " "))
		}
		for _, name := range order {
			m := res[name]
			cellOf := func(unit string) string {
				if v, ok := median(m[unit]); ok {
					return num(v)
				}
				return "-"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %d |\n", name, cellOf("ns/op"), cellOf("B/op"), cellOf("allocs/op"), len(m["ns/op"]))
		}
	}
	b.WriteString("\n")
}

func memorySection(b *strings.Builder) {
	fmt.Fprintf(b, "## 4. Memory per session\n\n")
	args := []string{"-run", "^$", "-bench", "^BenchmarkMemoryFootprint$", "-count", "1", "./session"}
	order, res, err := benchRun(args...)
	per, ok := 0.0, false
	if err == nil && len(order) == 1 {
		per, ok = median(res[order[0]]["bytes/session"])
	}
	if !ok {
		if err == nil {
			err = fmt.Errorf("go test %s: no bytes/session reported", strings.Join(args, " "))
		}
		fail(err)
		fmt.Fprintf(b, "Measurement failed: see session tests (TestMemoryFootprint, BenchmarkMemoryFootprint).\n")
		return
	}
	fmt.Fprintf(b, "| store | bytes/session | measured by |\n|---|---|---|\n")
	fmt.Fprintf(b, "| memory (1M sessions, 48-byte mcp-go ids) | %.0f | `go test %s` |\n", per, strings.Join(args, " "))
	fmt.Fprintf(b, "| Redis | see session tests | `TestRedisMemoryPerSession` (needs redis-server) |\n\n")
}
