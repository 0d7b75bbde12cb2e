package collector

import (
	"os"
	"slices"
	"testing"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
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

// BenchmarkLiveDurations runs the default collectors on this machine's files
// as a scrape does and reports the median of their summed duration metrics
// (dur-µs/scrape), the figure bench/compare.sh holds against the kernel read
// floor. Run it next to BenchmarkKernelReadFloor/all (the same files read
// back to back, hot, as here):
//
//	go test -run '^$' -bench 'LiveDurations|KernelReadFloor/all' ./collector
func BenchmarkLiveDurations(b *testing.B) {
	e := newLiveExporter(b, nil)
	var sums []float64
	for b.Loop() {
		mfs, err := e.Gather()
		if err != nil {
			b.Fatal(err)
		}
		sum := 0.0
		for _, mf := range mfs {
			if mf.GetName() == durationDesc.name {
				for _, m := range mf.GetMetric() {
					sum += m.GetGauge().GetValue()
				}
			}
		}
		sums = append(sums, sum)
	}
	slices.Sort(sums)
	b.ReportMetric(sums[len(sums)/2]*1e6, "dur-µs/scrape")
}
