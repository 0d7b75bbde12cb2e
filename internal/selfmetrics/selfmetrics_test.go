package selfmetrics

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/memfrag/memfrag_exporter/internal/processcollector"
)

func needProc(t testing.TB) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this machine")
	}
}

func gatherRegistry(t testing.TB, cs ...prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// numbers lists every number of a family of one series: the value, or a
// summary's count, sum and quantile values.
func numbers(mf *dto.MetricFamily) []float64 {
	m := mf.Metric[0]
	switch {
	case m.Counter != nil:
		return []float64{m.Counter.GetValue()}
	case m.Gauge != nil:
		return []float64{m.Gauge.GetValue()}
	case m.Summary != nil:
		out := []float64{float64(m.Summary.GetSampleCount()), m.Summary.GetSampleSum()}
		for _, q := range m.Summary.Quantile {
			out = append(out, q.GetValue())
		}
		return out
	}
	return nil
}

// withoutNumbers is mf with every value zeroed: what is left (name, help,
// type, labels, quantile ranks) must be client_golang's exactly.
func withoutNumbers(mf *dto.MetricFamily) *dto.MetricFamily {
	c := proto.Clone(mf).(*dto.MetricFamily)
	m := c.Metric[0]
	zero := 0.0
	switch {
	case m.Counter != nil:
		m.Counter.Value = &zero
	case m.Gauge != nil:
		m.Gauge.Value = &zero
	case m.Summary != nil:
		var n uint64
		m.Summary.SampleCount, m.Summary.SampleSum = &n, &zero
		for _, q := range m.Summary.Quantile {
			q.Value = &zero
		}
	}
	return c
}

// The families client_golang's default Go collector and this exporter's
// process collector export, the same in everything but the moment read:
// with the garbage collector off, what only a collection changes (the
// pause summary, the heap goal, the last GC time) is equal, the settings
// are equal, and the memory figures are within what the reads themselves
// allocate.
func TestMatchesClientGolang(t *testing.T) {
	needProc(t)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	g, err := New("/proc")
	if err != nil {
		t.Fatal(err)
	}
	_, warm, _ := g.Gather() // opens the descriptors it keeps, which the fd count sees
	warm()
	// The heap can grow between the two reads (heap_sys and the process's
	// virtual size by a span or an arena): a few tries at reading both at
	// the same moment, the last one's differences reported.
	var ours []*dto.MetricFamily
	var diffs []string
	for try := 0; try < 3; try++ {
		ref := gatherRegistry(t, collectors.NewGoCollector(), processcollector.New("/proc"))
		var done func()
		ours, done, err = g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		if diffs = compareFamilies(ours, ref); len(diffs) == 0 {
			break
		}
	}
	for _, d := range diffs {
		t.Error(d)
	}
	var names []string
	for _, mf := range ours {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"go_gc_duration_seconds", "go_info", "go_memstats_heap_inuse_bytes", "go_threads", "process_network_receive_bytes_total", "process_open_fds"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("%s not gathered: %v", want, names)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if !strings.HasPrefix(p.Metric, "go_") && !strings.HasPrefix(p.Metric, "process_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// compareFamilies lists how ours differ from ref beyond what the moment
// of reading explains.
func compareFamilies(ours, ref []*dto.MetricFamily) (diffs []string) {
	if len(ours) != len(ref) {
		return []string{fmt.Sprintf("%d families, client_golang's collectors %d", len(ours), len(ref))}
	}
	for i, r := range ref {
		o := ours[i]
		if !proto.Equal(withoutNumbers(o), withoutNumbers(r)) {
			diffs = append(diffs, fmt.Sprintf("family %d differs:\n ours %v\n ref  %v", i, withoutNumbers(o), withoutNumbers(r)))
			continue
		}
		name := r.GetName()
		got, want := numbers(o), numbers(r)
		for k := range want {
			var tol float64
			switch {
			case name == "go_goroutines":
				tol = 4 // the registry's collecting goroutines
			case name == "go_threads", name == "process_open_fds":
				tol = 1
			case name == "process_cpu_seconds_total":
				tol = 0.05
			case name == "process_start_time_seconds":
				tol = 0.011
			case strings.HasPrefix(name, "process_network_"):
				tol = 1 << 20 // other traffic in the namespace
			case strings.HasSuffix(name, "_bytes") || strings.HasSuffix(name, "_bytes_total") || name == "go_memstats_heap_objects" ||
				name == "go_memstats_mallocs_total" || name == "go_memstats_frees_total":
				if name != "go_memstats_next_gc_bytes" && name != "go_gc_gomemlimit_bytes" && name != "process_virtual_memory_max_bytes" {
					tol = 0.02*math.Abs(want[k]) + 256<<10 // what the reads allocate in between
				}
			}
			if math.Abs(got[k]-want[k]) > tol+1e-9*math.Abs(want[k]) {
				diffs = append(diffs, fmt.Sprintf("%s[%d] = %v, client_golang %v", name, k, got[k], want[k]))
			}
		}
	}
	return diffs
}

// A scrape's families stay as they were until it is done, however many
// scrapes gather at the same time; a frame goes back to the pool once.
func TestGatherFramesAreTheScrapes(t *testing.T) {
	needProc(t)
	g, err := New("/proc")
	if err != nil {
		t.Fatal(err)
	}
	first, done1, _ := g.Gather()
	snapshot := make([]*dto.MetricFamily, len(first))
	for i, mf := range first {
		snapshot[i] = proto.Clone(mf).(*dto.MetricFamily)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				_ = make([]byte, 64<<10) // move the memory figures
				_, done, _ := g.Gather()
				done()
				done() // a second call is a no-op
			}
		}()
	}
	wg.Wait()
	for i, mf := range first {
		if !proto.Equal(mf, snapshot[i]) {
			t.Errorf("%s changed under a scrape that was not done:\n now %v\n was %v", mf.GetName(), mf, snapshot[i])
		}
	}
	done1()
	second, done2, _ := g.Gather()
	defer done2()
	if len(second) != len(first) {
		t.Errorf("%d families, then %d", len(first), len(second))
	}
}

// fakeProc is an empty procfs root with a self/net directory.
func fakeProc(t *testing.T) (proc, self string) {
	t.Helper()
	needProc(t)
	proc = t.TempDir()
	self = filepath.Join(proc, "self")
	if err := os.MkdirAll(filepath.Join(self, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	return proc, self
}

// A figure that cannot be read is left out of that scrape, as client_golang
// leaves it out; the rest are served.
func TestUnreadableFigureLeftOut(t *testing.T) {
	proc, self := fakeProc(t)
	if err := os.Symlink("/proc/self/fd", filepath.Join(self, "fd")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"stat", "statm", "net/netstat"} {
		b, err := os.ReadFile(filepath.Join("/proc/self", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(self, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := New(proc)
	if err != nil {
		t.Fatal(err)
	}
	has := func() map[string]bool {
		mfs, done, _ := g.Gather()
		defer done()
		m := map[string]bool{}
		for _, mf := range mfs {
			m[mf.GetName()] = true
		}
		return m
	}
	if h := has(); !h["process_network_receive_bytes_total"] || !h["process_cpu_seconds_total"] {
		t.Fatalf("with every file there: %v", h)
	}
	// Rewritten in place: the kept descriptor reads what is there now.
	if err := os.WriteFile(filepath.Join(self, "statm"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := has()
	if h["process_cpu_seconds_total"] || h["process_resident_memory_bytes"] {
		t.Errorf("an unreadable statm still gave its figures: %v", h)
	}
	if !h["go_goroutines"] || !h["process_open_fds"] || !h["process_max_fds"] {
		t.Errorf("the readable figures went too: %v", h)
	}
}

// A figure unreadable at start is served once it can be read.
func TestFigureReadableLater(t *testing.T) {
	proc, self := fakeProc(t)
	g, err := New(proc)
	if err != nil {
		t.Fatal(err)
	}
	names := func() string {
		mfs, done, _ := g.Gather()
		defer done()
		var n []string
		for _, mf := range mfs {
			n = append(n, mf.GetName())
		}
		return " " + strings.Join(n, " ") + " "
	}
	if n := names(); strings.Contains(n, " process_network_receive_bytes_total ") || !strings.Contains(n, " process_max_fds ") {
		t.Fatalf("without net/netstat: %s", n)
	}
	b, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		t.Skip(err)
	}
	if err := os.WriteFile(filepath.Join(self, "net/netstat"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if n := names(); !strings.Contains(n, " process_network_receive_bytes_total ") || !strings.Contains(n, " process_network_transmit_bytes_total ") {
		t.Errorf("net/netstat there now, yet: %s", n)
	}
}

// A family this package cannot compute is refused at start, so the server
// falls back to client_golang's collectors instead of serving a wrong value.
func TestUnknownFamilyRefused(t *testing.T) {
	extra := prometheus.NewGauge(prometheus.GaugeOpts{Name: "go_something_new", Help: "A family a later client_golang might add."})
	_, err := newGatherer(source{collector: extra, newReader: newGoReader})
	if err == nil || !strings.Contains(err.Error(), "go_something_new") {
		t.Fatalf("err = %v, want a refusal naming go_something_new", err)
	}
	twice := prometheus.NewGauge(prometheus.GaugeOpts{Name: "go_goroutines", Help: "Number of goroutines that currently exist."})
	if _, err := newGatherer(goSource(), source{collector: twice, newReader: newGoReader}); err == nil {
		t.Fatal("a family exported by two sources was accepted")
	}
}

// BenchmarkGather compares a scrape of the Go and process families here
// with one through a Registry of client_golang's collectors.
func BenchmarkGather(b *testing.B) {
	needProc(b)
	g, err := New("/proc")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("selfmetrics", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, done, _ := g.Gather()
			done()
		}
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), processcollector.New("/proc"))
	b.Run("registry", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Families serves what a Registry would for the same collectors: the same
// families, series in the same order, created timestamps included, and
// series created after start.
func TestFamiliesMatchRegistry(t *testing.T) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "X."}, []string{"reason", "zone"})
	cv.WithLabelValues("b", "Normal").Add(2)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "a_open", Help: "A."})
	konst := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "m_info", Help: "M.", ConstLabels: prometheus.Labels{"version": "1"}}, func() float64 { return 1 })
	f, err := NewFamilies(cv, g, konst)
	if err != nil {
		t.Fatal(err)
	}
	cv.WithLabelValues("a", "DMA").Inc()
	cv.WithLabelValues("c", "DMA32").Inc()
	g.Set(7)
	got, done, err := f.Gather()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	want := gatherRegistry(t, cv, g, konst)
	if len(got) != len(want) {
		t.Fatalf("%d families, the registry %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("family %d:\n ours %v\n ref  %v", i, got[i], want[i])
		}
	}
	if n := len(got[len(got)-1].Metric); n != 3 {
		t.Errorf("x_total has %d series, want 3", n)
	}
}

func TestFamiliesRefused(t *testing.T) {
	empty := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e_total", Help: "E."}, []string{"l"})
	if _, err := NewFamilies(empty); err == nil {
		t.Error("a vector without series was accepted: its name is not known")
	}
	if _, err := NewFamilies(collectors.NewGoCollector()); err == nil {
		t.Error("a collector of many families was accepted")
	}
	a := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dup", Help: "D."})
	b := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dup", Help: "D."})
	if _, err := NewFamilies(a, b); err == nil {
		t.Error("a name collected twice was accepted")
	}
}
