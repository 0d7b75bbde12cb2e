package collector

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newLiveExporter builds an Exporter on this machine's /proc and /sys, or
// skips when they are not there.
func newLiveExporter(b *testing.B, enabled map[string]bool) *Exporter {
	b.Helper()
	if _, err := os.Stat("/proc/buddyinfo"); err != nil {
		b.Skip("no /proc/buddyinfo on this machine")
	}
	e, err := New(Config{ProcPath: "/proc", SysPath: "/sys", Enabled: enabled}, log.NewNopLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

// BenchmarkLiveCollect runs each default collector alone, and all of them,
// on the real kernel files, into a buffered channel nobody reads during the
// run: the collectors' own cost (read, parse, build const metrics) without
// the registry. Compare with BenchmarkKernelReadFloor.
func BenchmarkLiveCollect(b *testing.B) {
	var cases []string
	for _, c := range Available() {
		if c.DefaultEnabled {
			cases = append(cases, c.Name)
		}
	}
	cases = append(cases, "all")
	for _, name := range cases {
		b.Run(name, func(b *testing.B) {
			enabled := map[string]bool{}
			if name != "all" {
				for _, c := range Available() {
					enabled[c.Name] = c.Name == name
				}
			}
			e := newLiveExporter(b, enabled)
			ch := make(chan prometheus.Metric, 8192)
			b.ReportAllocs()
			for b.Loop() {
				e.Collect(ch)
				for len(ch) > 0 {
					<-ch
				}
			}
		})
	}
}

// BenchmarkLiveScrapeHTTP is one whole scrape as main serves it: the default
// collectors on the real kernel files plus the process and Go collectors,
// through promhttp with gzip. This is what bench/compare.sh loads; profile it
// with -cpuprofile/-memprofile.
func BenchmarkLiveScrapeHTTP(b *testing.B) {
	for _, tc := range []struct {
		name     string
		runtime  bool // process_* and go_* as main registers by default
		encoding string
	}{
		{"default-gzip", true, "gzip"},
		{"no-exporter-metrics-gzip", false, "gzip"},
		{"default-identity", true, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newLiveExporter(b, nil)
			reg := prometheus.NewRegistry()
			reg.MustRegister(e)
			if tc.runtime {
				reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
			}
			h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: reg})
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tc.encoding != "" {
				req.Header.Set("Accept-Encoding", tc.encoding)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
