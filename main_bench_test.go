package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/go-kit/log"

	"github.com/memfrag/memfrag_exporter/collector"
)

// BenchmarkScrape is one whole scrape as the exporter serves it by default,
// on this machine's /proc and /sys: the default collectors, build info,
// process and Go metrics, through the gzip handler. This is what
// bench/compare.sh loads over HTTP; profile it with -cpuprofile.
func BenchmarkScrape(b *testing.B) {
	if _, err := os.Stat("/proc/buddyinfo"); err != nil {
		b.Skip("no /proc/buddyinfo on this machine")
	}
	for _, tc := range []struct {
		name            string
		exporterMetrics bool
		encoding        string
	}{
		{"default-gzip", true, "gzip"},
		{"no-exporter-metrics-gzip", false, "gzip"},
		{"default-identity", true, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, err := collector.New(collector.Config{ProcPath: "/proc", SysPath: "/sys"}, log.NewNopLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			errCnt := newErrCounter()
			reg, more := newGatherers(tc.exporterMetrics, log.NewNopLogger(), errCnt)
			h := metricsHandler(e.WithGatherer(reg, more...), errCnt, 0, log.NewNopLogger())
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
