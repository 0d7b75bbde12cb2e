package collector

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixtures are procfs/sysfs trees from several kinds of machines. Each has a
// golden exposition testdata/<name>.prom.
var fixtures = []struct {
	name     string
	pageSize int
}{
	{"x86-vm", 4096},             // this project's CI machine, copied from its /proc and /sys
	{"numa-sparse", 4096},        // four NUMA nodes with ids 0, 1, 10, 63
	{"movable", 4096},            // a populated Movable zone; proactive compaction off
	{"arm64-64k", 65536},         // 64 KiB pages: 14 orders, PMD order 13
	{"empty-zone", 4096},         // a zone with nothing free
	{"no-compaction", 4096},      // kernel without compaction and THP
	{"seed-before", 4096},        // the seed's snapshots: fragmented,
	{"seed-after-drop", 4096},    // after drop_caches,
	{"seed-after-compact", 4096}, // after compact_memory
}

func newFixtureExporter(t testing.TB, name string, pageSize int, enabled map[string]bool) *Exporter {
	t.Helper()
	root := filepath.Join("testdata", name)
	e, err := New(Config{
		ProcPath: filepath.Join(root, "proc"),
		SysPath:  filepath.Join(root, "sys"),
		PageSize: pageSize,
		Enabled:  enabled,
	}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// exposition gathers e and renders it as text, without the duration metric,
// whose value changes from run to run.
func exposition(t testing.TB, e prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return render(t, mfs)
}

// render writes families as text, without the duration metric, whose value
// changes from run to run.
func render(t testing.TB, mfs []*dto.MetricFamily) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, mf := range mfs {
		if mf.GetName() == "memfrag_scrape_collector_duration_seconds" {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func metricNames(text []byte) []string {
	var names []string
	for _, line := range strings.Split(string(text), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names = append(names, f[2])
		}
	}
	return names
}

func TestGolden(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			e := newFixtureExporter(t, fx.name, fx.pageSize, nil)
			golden := filepath.Join("testdata", fx.name+".prom")
			got := exposition(t, e)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			names := append(metricNames(want), metricNames(got)...)
			sort.Strings(names)
			names = dedupe(names)
			if err := testutil.CollectAndCompare(e, bytes.NewReader(want), names...); err != nil {
				t.Error(err)
			}
			problems, err := testutil.CollectAndLint(e)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("lint: %s: %s", p.Metric, p.Text)
			}
		})
	}
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// successOf returns memfrag_scrape_collector_success per collector.
func successOf(t *testing.T, e prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "memfrag_scrape_collector_success" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// copyTree copies a fixture into a temp dir so a test can break it.
func copyTree(t *testing.T, name string) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", name)
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// A broken or absent source fails only its own collectors; the rest answer,
// and a persisting failure is logged once, not on every scrape.
func TestFailingSourceDoesNotFailScrape(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(root string) error
		want   map[string]float64
	}{
		{"buddyinfo absent", func(r string) error { return os.Remove(filepath.Join(r, "proc/buddyinfo")) },
			map[string]float64{"buddyinfo": 0, "compaction": 0, "zoneinfo": 1, "vmstat": 1, "sysctl": 1}},
		{"buddyinfo malformed", func(r string) error {
			return os.WriteFile(filepath.Join(r, "proc/buddyinfo"), []byte("Node 0, zone Normal 1 2 x\n"), 0o644)
		}, map[string]float64{"buddyinfo": 0, "compaction": 0, "zoneinfo": 1, "vmstat": 1, "sysctl": 1}},
		{"zoneinfo absent", func(r string) error { return os.Remove(filepath.Join(r, "proc/zoneinfo")) },
			map[string]float64{"buddyinfo": 1, "compaction": 0, "zoneinfo": 0, "vmstat": 1, "sysctl": 1}},
		{"vmstat malformed", func(r string) error {
			return os.WriteFile(filepath.Join(r, "proc/vmstat"), []byte("compact_stall -3\n"), 0o644)
		}, map[string]float64{"buddyinfo": 1, "compaction": 1, "zoneinfo": 1, "vmstat": 0, "sysctl": 1}},
		{"no sysctls, no THP", func(r string) error {
			if err := os.RemoveAll(filepath.Join(r, "proc/sys")); err != nil {
				return err
			}
			return os.RemoveAll(filepath.Join(r, "sys"))
		}, map[string]float64{"buddyinfo": 1, "compaction": 1, "zoneinfo": 1, "vmstat": 1, "sysctl": 0}},
		{"THP mode malformed", func(r string) error {
			return os.WriteFile(filepath.Join(r, "sys/kernel/mm/transparent_hugepage/enabled"), []byte("always madvise never\n"), 0o644)
		}, map[string]float64{"buddyinfo": 1, "compaction": 1, "zoneinfo": 1, "vmstat": 1, "sysctl": 0}},
		{"zone in buddyinfo missing from zoneinfo", func(r string) error {
			return os.WriteFile(filepath.Join(r, "proc/zoneinfo"), []byte("Node 0, zone DMA\n  pages free 1\n  present 3998\n"), 0o644)
		}, map[string]float64{"buddyinfo": 1, "compaction": 0, "zoneinfo": 1, "vmstat": 1, "sysctl": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := copyTree(t, "x86-vm")
			if err := tc.break_(root); err != nil {
				t.Fatal(err)
			}
			var logBuf bytes.Buffer
			e, err := New(Config{ProcPath: filepath.Join(root, "proc"), SysPath: filepath.Join(root, "sys"), PageSize: 4096},
				log.NewLogfmtLogger(&logBuf))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			for i := 0; i < 3; i++ {
				got := successOf(t, e)
				for name, want := range tc.want {
					if got[name] != want {
						t.Errorf("scrape %d: success{collector=%q} = %v, want %v", i, name, got[name], want)
					}
				}
			}
			failing := 0
			for _, v := range tc.want {
				if v == 0 {
					failing++
				}
			}
			lines := strings.Count(logBuf.String(), `msg="collector failed"`) +
				strings.Count(logBuf.String(), `msg="kernel source not available`)
			if lines != failing {
				t.Errorf("3 scrapes with %d failing collectors logged %d lines, want one per collector:\n%s", failing, lines, logBuf.String())
			}
		})
	}
}

func TestUnknownCollector(t *testing.T) {
	_, err := New(Config{ProcPath: "testdata/x86-vm/proc", Enabled: map[string]bool{"bogus": true}}, log.NewNopLogger())
	if err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("New with an unknown collector: err = %v, want one naming it", err)
	}
}

func TestDisabledCollectorDoesNotRun(t *testing.T) {
	e := newFixtureExporter(t, "x86-vm", 4096, map[string]bool{"vmstat": false, "sysctl": false})
	got := successOf(t, e)
	if _, ok := got["vmstat"]; ok {
		t.Errorf("vmstat ran although disabled: %v", got)
	}
	if got["buddyinfo"] != 1 {
		t.Errorf("buddyinfo success = %v, want 1", got["buddyinfo"])
	}
}

// benchmarkUpdate times one collector's update into reused samples, as a
// scrape runs it.
func benchmarkUpdate(b *testing.B, src source) {
	b.Helper()
	var out samples
	b.ReportAllocs()
	for b.Loop() {
		out.reset()
		if err := src.update(nil, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkScrape(b *testing.B) {
	for _, fx := range []string{"x86-vm", "numa-sparse"} {
		b.Run(fx, func(b *testing.B) {
			e := newFixtureExporter(b, fx, 4096, nil)
			reg := prometheus.NewRegistry()
			reg.MustRegister(e)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
