package standin_test

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxy measures requests through a node with the echo plugin
// (access, response and log events) and reports socket round trips.
func BenchmarkProxy(b *testing.B) {
	for _, mode := range []string{"buffered", "stream"} {
		b.Run(mode, func(b *testing.B) {
			up := newEchoUpstreamB(b)
			node := startBenchNode(b, up)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			before := node.Totals()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", node.URL()+"/echo", nil)
					req.Header.Set("X-Test-Mode", mode)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			node.WaitIdle(10e9)
			after := node.Totals()
			if n := after.Requests - before.Requests; n > 0 {
				b.ReportMetric(float64(after.RoundTrips-before.RoundTrips)/float64(n), "roundtrips/req")
			}
		})
	}
}
