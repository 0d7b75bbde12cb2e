package dashboards

import (
	"bufio"
	"bytes"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The names the shipped dashboard and rules use must be names the exporter
// serves: a renamed or dropped metric leaves a panel empty or an alert
// silent, and neither promtool nor Grafana says so. TestMetricNamesInSources
// checks that against the collector and remediation sources on every
// `go test`; TestMetricNamesLive checks it against what a Prometheus
// scraping real exporters has stored (e2e/50-fullstack.sh runs it).

const rulesFile = "../alerts/memfrag.rules.yml"

// Metric names in PromQL. A recording rule's name has colons; label names
// and values never start with the namespace, and strings in the shipped
// queries ("gain_bytes", "0$1") do not either.
var metricToken = regexp.MustCompile(`[a-zA-Z_][a-zA-Z0-9_:]*`)

// promqlNames returns the exporter metric names (memfrag_...) and the
// recording-rule names (level:memfrag_...:operation) that expr mentions.
func promqlNames(expr string) (metrics, recorded []string) {
	for _, tok := range metricToken.FindAllString(expr, -1) {
		switch {
		case strings.Contains(tok, ":") && strings.Contains(tok, "memfrag_"):
			recorded = append(recorded, tok)
		case strings.HasPrefix(tok, "memfrag_"):
			metrics = append(metrics, tok)
		}
	}
	return metrics, recorded
}

// ruleExprs returns the rules file's expressions: every `expr:` value,
// folded or single-line, and every selector (a name followed by `{`) in the
// annotations, whose templates may run queries. Comments and prose are
// left out: they name the exporter, not its metrics.
func ruleExprs(t *testing.T) (exprs, records []string) {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	selector := regexp.MustCompile(`memfrag_[a-zA-Z0-9_]*\{`)
	sc := bufio.NewScanner(bytes.NewReader(b))
	blockIndent := -1 // indentation of the expr key while in a block scalar
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		if blockIndent >= 0 {
			if trimmed == "" || indent > blockIndent {
				exprs = append(exprs, trimmed)
				continue
			}
			blockIndent = -1
		}
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		key, value, _ := strings.Cut(strings.TrimPrefix(trimmed, "- "), ":")
		value = strings.TrimSpace(value)
		switch key {
		case "expr":
			if strings.HasPrefix(value, "|") || strings.HasPrefix(value, ">") {
				blockIndent = indent
			} else {
				exprs = append(exprs, value)
			}
		case "record":
			records = append(records, value)
		default:
			for _, m := range selector.FindAllString(line, -1) {
				exprs = append(exprs, m)
			}
		}
	}
	if len(exprs) == 0 || len(records) == 0 {
		t.Fatalf("%s: found %d expressions and %d recording rules; is the parser still right?", rulesFile, len(exprs), len(records))
	}
	return exprs, records
}

// usedNames returns every exporter metric name and recording-rule name the
// dashboard (panels, annotations, variables) and the rules file use, and
// where each is first used.
func usedNames(t *testing.T) (metrics, recorded map[string]string, records []string) {
	t.Helper()
	metrics, recorded = map[string]string{}, map[string]string{}
	add := func(where, expr string) {
		m, r := promqlNames(expr)
		for _, n := range m {
			if _, ok := metrics[n]; !ok {
				metrics[n] = where
			}
		}
		for _, n := range r {
			if _, ok := recorded[n]; !ok {
				recorded[n] = where
			}
		}
	}
	d := load(t)
	for _, q := range d.queries() {
		add(q.where, q.expr)
	}
	for _, v := range d.Templating.List {
		add("variable "+v.Name, v.queryString())
	}
	exprs, records := ruleExprs(t)
	for _, e := range exprs {
		add(rulesFile, e)
	}
	return metrics, recorded, records
}

func TestPromqlNames(t *testing.T) {
	m, r := promqlNames(`sum by (order) (memfrag_free_bytes{zone=~"$zone"}) / instance:memfrag_compaction_stalls:rate5m` +
		` + count_values("gain_bytes", memfrag_remediation_last_gain_bytes) + up{job=~".*memfrag.*"}`)
	if want := []string{"memfrag_free_bytes", "memfrag_remediation_last_gain_bytes"}; !slices.Equal(m, want) {
		t.Errorf("metrics = %v, want %v", m, want)
	}
	if want := []string{"instance:memfrag_compaction_stalls:rate5m"}; !slices.Equal(r, want) {
		t.Errorf("recorded = %v, want %v", r, want)
	}
}

// histogramSuffixes are the series a histogram is exposed as.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// TestMetricNamesInSources greps the exporter's sources for every metric
// name used: a collector builds names as namespace+"_name" or from a table
// of "name" strings, the remediation receiver as Name: "name"; both
// namespaces are "memfrag". The build-info metric comes from client_golang's
// version collector, named after the exporter in main.go.
func TestMetricNamesInSources(t *testing.T) {
	var src bytes.Buffer
	for _, dir := range []string{"../collector", "../remediate"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go sources in %s: %v", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
	}
	mainGo, err := os.ReadFile("../main.go")
	if err != nil {
		t.Fatal(err)
	}
	defined := func(name string) bool {
		if name == "memfrag_exporter_build_info" {
			return bytes.Contains(mainGo, []byte(`"memfrag_exporter"`)) && bytes.Contains(mainGo, []byte("versioncollector.NewCollector("))
		}
		suffix := strings.TrimPrefix(name, "memfrag_")
		candidates := []string{suffix}
		for _, h := range histogramSuffixes {
			if base, ok := strings.CutSuffix(suffix, h); ok {
				candidates = append(candidates, base)
			}
		}
		for _, c := range candidates {
			if bytes.Contains(src.Bytes(), []byte(`"`+c+`"`)) || bytes.Contains(src.Bytes(), []byte(`"_`+c+`"`)) {
				return true
			}
		}
		return false
	}

	metrics, recorded, records := usedNames(t)
	if len(metrics) < 20 {
		t.Fatalf("found only %d metric names in the dashboard and rules: is the extraction still right?", len(metrics))
	}
	for _, n := range slices.Sorted(maps.Keys(metrics)) {
		if !defined(n) {
			t.Errorf("%s uses %s, which no source in collector/ or remediate/ defines", metrics[n], n)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(recorded)) {
		if !slices.Contains(records, n) {
			t.Errorf("%s uses %s, which no recording rule in %s defines", recorded[n], n, rulesFile)
		}
	}
	if !t.Failed() {
		t.Logf("%d exporter metrics and %d recording rules used, all defined", len(metrics), len(recorded))
	}
}

// TestMetricNamesLive checks every name used against the metric names the
// Prometheus MEMFRAG_PROMETHEUS_URL names has stored. That Prometheus must
// scrape exporters with every collector on (pagetypeinfo and kmsg included)
// after a remediation ran, and evaluate the shipped rules, as
// e2e/50-fullstack.sh arranges. It also logs the exported metrics that
// nothing uses, for whoever extends the dashboard.
func TestMetricNamesLive(t *testing.T) {
	base := os.Getenv("MEMFRAG_PROMETHEUS_URL")
	if base == "" {
		t.Skip("MEMFRAG_PROMETHEUS_URL not set: e2e/50-fullstack.sh runs this against a real Prometheus")
	}
	api := &promAPI{base: strings.TrimRight(base, "/"), client: &http.Client{Timeout: 10 * time.Second}}
	end := time.Now()
	stored, err := api.labelValues("__name__", "", end.Add(-10*time.Minute), end)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(stored, "memfrag_free_blocks") {
		t.Fatalf("Prometheus has no memfrag_free_blocks among its %d names: it does not scrape the exporter", len(stored))
	}
	metrics, recorded, _ := usedNames(t)
	for _, used := range []map[string]string{metrics, recorded} {
		for _, n := range slices.Sorted(maps.Keys(used)) {
			if !slices.Contains(stored, n) {
				t.Errorf("%s uses %s, which the scraped exporters do not serve (or the rules do not record)", used[n], n)
			}
		}
	}
	var unused []string
	for _, n := range stored {
		if _, ok := metrics[n]; !ok && strings.HasPrefix(n, "memfrag_") {
			unused = append(unused, n)
		}
	}
	t.Logf("%d exporter metrics and %d recording rules used, all stored; served but unused: %v", len(metrics), len(recorded), unused)
}
