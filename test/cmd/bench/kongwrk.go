package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkRequest is the one request a wrk run repeats.
type wrkRequest struct {
	method, path string
	header       []string // name, value pairs
	body         string
}

// wrkResult is one wrk run, with the CPU time the node's processes spent
// during it.
type wrkResult struct {
	requests   int64
	elapsed    time.Duration
	p50, p99   time.Duration
	errors     int64 // socket errors and answers with a status outside 2xx/3xx
	workerCPU  time.Duration
	pluginsCPU time.Duration
	load1      float64 // load average when the run started
}

func (r wrkResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// usPerRequest is 1/rps in microseconds.
func (r wrkResult) usPerRequest() float64 {
	if r.requests == 0 {
		return 0
	}
	return r.elapsed.Seconds() * 1e6 / float64(r.requests)
}

// pluginsUS is the plugin processes' CPU time per request, in microseconds.
func (r wrkResult) pluginsUS() float64 {
	if r.requests == 0 {
		return 0
	}
	return r.pluginsCPU.Seconds() * 1e6 / float64(r.requests)
}

// workerBusy is the share of the run's time the worker spent on a CPU.
func (r wrkResult) workerBusy() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return r.workerCPU.Seconds() / r.elapsed.Seconds()
}

// workerUS is the nginx worker's CPU time per request, in microseconds.
func (r wrkResult) workerUS() float64 {
	if r.requests == 0 {
		return 0
	}
	return r.workerCPU.Seconds() * 1e6 / float64(r.requests)
}

// wrkScript writes the Lua script of req: the request, and a done() hook
// that prints the figures in exact units (microseconds) on one line.
func wrkScript(dir, name string, req wrkRequest) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "wrk.method = %s\nwrk.path = %s\n", luaString(req.method), luaString(req.path))
	if req.body != "" {
		fmt.Fprintf(&b, "wrk.body = %s\n", luaString(req.body))
	}
	for i := 0; i+1 < len(req.header); i += 2 {
		fmt.Fprintf(&b, "wrk.headers[ %s ] = %s\n", luaString(req.header[i]), luaString(req.header[i+1]))
	}
	b.WriteString(`done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
`)
	path := filepath.Join(dir, name+".lua")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// luaString quotes s as a Lua long string.
func luaString(s string) string {
	eq := ""
	for strings.Contains(s, "]"+eq+"]") {
		eq += "="
	}
	return "[" + eq + "[" + s + "]" + eq + "]"
}

// wrkRun runs wrk with one thread and conns connections for d against
// baseURL, sampling the CPU time of the given processes around it.
func wrkRun(ctx context.Context, baseURL, script string, conns int, d time.Duration, worker int, plugins []int) (wrkResult, error) {
	var r wrkResult
	r.load1 = loadAverage()
	w0, p0 := cpuTime(worker), cpuTimes(plugins)
	cmd := exec.CommandContext(ctx, "wrk", "-t1", "-c"+strconv.Itoa(conns),
		"-d"+strconv.Itoa(int(d.Round(time.Second)/time.Second))+"s", "--timeout", "10s", "-s", script, baseURL)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("wrk: %v\n%s%s", err, out.String(), errb.String())
	}
	r.workerCPU, r.pluginsCPU = cpuTime(worker)-w0, cpuTimes(plugins)-p0
	for _, line := range strings.Split(out.String(), "\n") {
		f, ok := strings.CutPrefix(line, "BENCH ")
		if !ok {
			continue
		}
		var dur, p50, p99 int64
		if _, err := fmt.Sscan(f, &r.requests, &dur, &p50, &p99, &r.errors); err != nil {
			return r, fmt.Errorf("wrk: reading %q: %v", line, err)
		}
		r.elapsed = time.Duration(dur) * time.Microsecond
		r.p50, r.p99 = time.Duration(p50)*time.Microsecond, time.Duration(p99)*time.Microsecond
		return r, nil
	}
	return r, fmt.Errorf("wrk printed no figures:\n%s%s", out.String(), errb.String())
}

// cpuTime is the time pid spent on a CPU (its threads' sum, from
// /proc/PID/schedstat, nanoseconds); 0 if it cannot be read.
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	var total time.Duration
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		raw, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(raw))
		if len(f) == 0 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		total += time.Duration(ns)
	}
	return total
}

func cpuTimes(pids []int) time.Duration {
	var total time.Duration
	for _, p := range pids {
		total += cpuTime(p)
	}
	return total
}

// loadAverage is the 1-minute load average (0 if unknown).
func loadAverage() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
