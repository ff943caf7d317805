package standin

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// The counters of lua-resty-healthcheck as the stand-in keeps them: a
// threshold of failures of one kind in a row takes a target out, a success
// resets the failure counters, successes in a row bring it back, and a
// threshold of 0 never counts; the balancer skips unhealthy targets.
func TestHealthCounters(t *testing.T) {
	hc := defaultHealthchecks()
	hc.Passive.Unhealthy.TCPFailures = 2
	hc.Passive.Unhealthy.Timeouts = 0 // never
	hc.Passive.Healthy.Successes = 2
	u := &Upstream{Name: "u", Healthchecks: hc, Targets: []*Target{
		{Host: "127.0.0.1", Port: 1, Weight: 100}, {Host: "127.0.0.1", Port: 2, Weight: 100}}}
	b := &rrBalancer{upstream: u}
	for _, tg := range u.Targets {
		b.wheel = append(b.wheel, &address{ip: tg.Host, port: tg.Port, weight: tg.Weight})
	}
	h := newHealthChecker(u, nil, b.wheel)
	b.health = h
	defer h.close()
	up := func(port int) bool { return h.available("127.0.0.1", port) }

	steps := []struct {
		name   string
		failed bool
		code   int
		want   bool // target :1 available afterwards
	}{
		{"one refused connect", true, 502, true},
		{"a success resets the count", false, 200, true},
		{"refused again", true, 502, true},
		{"timeouts never count (threshold 0)", true, 504, true},
		{"second refused: out", true, 502, false},
		{"one success is not enough", false, 200, false},
		{"second success: back", false, 204, true},
		{"a 500 is an http failure, threshold 0", false, 500, true},
	}
	for _, s := range steps {
		h.passive("127.0.0.1", 1, s.failed, s.code)
		if got := up(1); got != s.want {
			t.Fatalf("%s: available %v, want %v", s.name, got, s.want)
		}
	}

	h.passive("127.0.0.1", 1, true, 502)
	h.passive("127.0.0.1", 1, true, 502)
	for range 4 {
		a, err := b.getPeer()
		if err != nil || a.port != 2 {
			t.Fatalf("getPeer with :1 down: %v %v", a, err)
		}
	}
	h.passive("127.0.0.1", 2, true, 502)
	h.passive("127.0.0.1", 2, true, 502)
	if a, err := b.getPeer(); err == nil {
		t.Fatalf("getPeer with every target down: %v", a)
	}
}

// A tcp probe takes a closed port out and brings it back once it listens
// (what Kong's stream subsystem runs; TestTCPActiveChecksOffForHTTP).
func TestActiveTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	hc := defaultHealthchecks()
	hc.Active.Type = "tcp"
	hc.Active.Unhealthy.TCPFailures = 1
	hc.Active.Healthy.Successes = 1
	u := &Upstream{Name: "u", Healthchecks: hc}
	h := newHealthChecker(u, nil, []*address{{ip: "127.0.0.1", port: port, weight: 100}})
	defer h.close()
	key := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	h.probe(key)
	if !h.available("127.0.0.1", port) {
		t.Fatal("a listening target was taken out")
	}
	_ = ln.Close()
	h.probe(key)
	if h.available("127.0.0.1", port) {
		t.Fatal("a refused probe left the target in")
	}
	ln, err = net.Listen("tcp", key)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h.probe(key)
	if !h.available("127.0.0.1", port) {
		t.Fatal("a good probe did not bring the target back")
	}
}

// TestTCPActiveChecksOffForHTTP follows Kong 3.9.1's create_healthchecker:
// on an HTTP upstream, active checks of type tcp are off, so a target that
// passive checks took out stays out though it listens again; with type
// http, a probe brings it back.
func TestTCPActiveChecksOffForHTTP(t *testing.T) {
	for _, typ := range []string{"tcp", "http"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { // any HTTP answer
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("HTTP/1.0 405 Method Not Allowed\r\n\r\n"))
				_ = c.Close()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		hc := defaultHealthchecks()
		hc.Active.Type = typ
		hc.Active.Healthy.Interval, hc.Active.Unhealthy.Interval = 0.05, 0.05
		hc.Active.Healthy.Successes = 1
		hc.Active.Healthy.HTTPStatuses = []int{405}
		hc.Passive.Unhealthy.TCPFailures = 1
		h := newHealthChecker(&Upstream{Name: "u", Healthchecks: hc}, nil, []*address{{ip: "127.0.0.1", port: port, weight: 100}})
		h.passive("127.0.0.1", port, true, 502) // a refused connect took it out
		back := false
		for deadline := time.Now().Add(time.Second); !back && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			back = h.available("127.0.0.1", port)
		}
		h.close()
		_ = ln.Close()
		if want := typ == "http"; back != want {
			t.Errorf("active type %s: back in %v, want %v", typ, back, want)
		}
	}
}
