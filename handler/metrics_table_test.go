package handler

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsTable keeps the README's metrics table equal to what the
// plugin registers: every mcp_relay_ metric has a row, every row names a
// registered metric.
func TestMetricsTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented, err := metricsTable(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	registered := registeredMetrics()
	if len(registered) == 0 {
		t.Fatal("no mcp_relay_ metric registered: the registry reader is broken")
	}
	for _, name := range sortedNames(registered) {
		if !documented[name] {
			t.Errorf("%s is registered but has no row in README.md's metrics table", name)
		}
	}
	for _, name := range sortedNames(documented) {
		if !registered[name] {
			t.Errorf("README.md's metrics table names %s, which the plugin does not register", name)
		}
	}
}

// registeredMetrics are the names of the plugin's own metrics in the
// registry MetricsHandler serves (Go and process metrics left out). It reads
// the descriptors, so vectors without any labelled child count too.
func registeredMetrics() map[string]bool {
	ch := make(chan *prometheus.Desc)
	go func() { registry.Describe(ch); close(ch) }()
	names := map[string]bool{}
	for d := range ch {
		if m := descName.FindStringSubmatch(d.String()); m != nil && strings.HasPrefix(m[1], "mcp_relay_") {
			names[m[1]] = true
		}
	}
	return names
}

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	metricName = regexp.MustCompile("`(mcp_relay_[a-z0-9_]+)(?:\\{[^}`]*\\})?`")
)

// metricsTable reads the metric names from the first column of the table
// in the README's "## Metrics" section; a row may name several.
func metricsTable(readme string) (map[string]bool, error) {
	_, section, ok := strings.Cut(readme, "\n## Metrics\n")
	if !ok {
		return nil, errorString("README.md has no \"## Metrics\" section")
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	names := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		found := metricName.FindAllStringSubmatch(first, -1)
		if len(found) == 0 {
			return nil, errorString("README.md's metrics table has a row naming no mcp_relay_ metric: " + line)
		}
		for _, m := range found {
			names[m[1]] = true
		}
	}
	if len(names) == 0 {
		return nil, errorString("README.md's Metrics section has no table rows")
	}
	return names, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestMetricsTableReader(t *testing.T) {
	doc := "# x\n## Metrics\n\n| metric | type | meaning |\n|---|---|---|\n" +
		"| `mcp_relay_a_total{reason}` | counter | a, not `mcp_relay_b` |\n" +
		"| `mcp_relay_c_total`, `mcp_relay_d_total` | counter | two |\n" +
		"\n## Logs\n| `mcp_relay_e` | not in the section |\n"
	got, err := metricsTable(doc)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sortedNames(got), " ") != "mcp_relay_a_total mcp_relay_c_total mcp_relay_d_total" {
		t.Errorf("names = %v", sortedNames(got))
	}
	if _, err := metricsTable("## Metrics\n| `not_a_metric` | counter | x |\n"); err == nil {
		t.Error("a row naming no metric was accepted")
	}
	if _, err := metricsTable("## Logs\n"); err == nil {
		t.Error("a README without a Metrics section was accepted")
	}
}
