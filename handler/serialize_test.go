package handler

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// requestCounts reads mcp_relay_requests_total from the metrics endpoint.
func requestCounts(t *testing.T) map[[2]string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := map[[2]string]float64{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		rest, ok := strings.CutPrefix(line, `mcp_relay_requests_total{method="`)
		if !ok {
			continue
		}
		method, rest, _ := strings.Cut(rest, `",tool="`)
		tool, value, _ := strings.Cut(rest, `"} `)
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[[2]string{method, tool}] = v
	}
	return out
}

func TestRequestsByMethodBoundedLabels(t *testing.T) {
	toolLabels.Lock()
	toolLabels.seen = nil
	toolLabels.Unlock()
	requestsByMethod.Reset()

	p := newPlugin(t, `{"session":{"store":"off"},"metrics":{"tool_labels":2}}`)
	send := func(body string, h ...string) {
		p.access(&fakeKong{method: "POST", headers: hdr(h...), body: []byte(body)})
	}
	for _, tool := range []string{"a", "b", "c", "a", "d"} {
		send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `"}}`)
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"made/up"}`)
	send(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`)
	send(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "x-anonymous-consumer", "true") // answered, still counted

	got := requestCounts(t)
	want := map[[2]string]float64{
		{"tools/call", "a"}:               2,
		{"tools/call", "b"}:               1,
		{"tools/call", "other"}:           2, // c and d: beyond the limit
		{"other", ""}:                     1,
		{"ping", ""}:                      1,
		{"notifications/initialized", ""}: 1,
		{"tools/list", ""}:                1,
	}
	if len(got) != len(want) {
		t.Errorf("label sets %v, want %v", got, want)
	}
	for labels, n := range want {
		if got[labels] != n {
			t.Errorf("%v: %v, want %v", labels, got[labels], n)
		}
	}
}
