package collector

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

func familiesText(t *testing.T, mfs []*dto.MetricFamily) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(render(t, mfs))), "\n")
	slices.Sort(lines) // a family's series may come in another order
	return lines
}

// Gather, which main serves, gives exactly what a prometheus.Registry
// (pedantic: every check on) makes of Collect, on every kind of machine.
func TestGatherMatchesRegistry(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			e := newFixtureExporter(t, fx.name, fx.pageSize, nil)
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(e)
			want, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Gather()
			if err != nil {
				t.Fatal(err)
			}
			if g, w := familiesText(t, got), familiesText(t, want); !slices.Equal(g, w) {
				t.Errorf("Gather and the registry differ:\n%s", diffLines(g, w))
			}
			for i := 1; i < len(got); i++ {
				if got[i-1].GetName() >= got[i].GetName() {
					t.Errorf("families not sorted: %s before %s", got[i-1].GetName(), got[i].GetName())
				}
			}
		})
	}
}

func diffLines(got, want []string) string {
	var b strings.Builder
	for _, l := range got {
		if !slices.Contains(want, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	return b.String()
}

func TestWithGatherer(t *testing.T) {
	e := newFixtureExporter(t, "x86-vm", 4096, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aaa_first", Help: "h"}, func() float64 { return 1 }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zzz_last", Help: "h"}, func() float64 { return 1 }))
	mfs, done, err := e.WithGatherer(reg).Gather()
	if err != nil {
		t.Fatal(err)
	}
	if mfs[0].GetName() != "aaa_first" || mfs[len(mfs)-1].GetName() != "zzz_last" || len(mfs) < 10 {
		t.Fatalf("merged families: first %s, last %s, %d in all", mfs[0].GetName(), mfs[len(mfs)-1].GetName(), len(mfs))
	}
	for i := 1; i < len(mfs); i++ {
		if mfs[i-1].GetName() >= mfs[i].GetName() {
			t.Errorf("not sorted: %s before %s", mfs[i-1].GetName(), mfs[i].GetName())
		}
	}
	done()
	// a family both sides produce is reported, not served twice
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "memfrag_free_blocks", Help: "clash"}, func() float64 { return 1 }))
	mfs, done, err = e.WithGatherer(reg).Gather()
	defer done()
	if err == nil || !strings.Contains(err.Error(), "memfrag_free_blocks is gathered twice") {
		t.Errorf("clash: err = %v", err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == "memfrag_free_blocks" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("memfrag_free_blocks served %d times", n)
	}
}

func BenchmarkGather(b *testing.B) {
	for _, fx := range []string{"x86-vm", "numa-sparse"} {
		b.Run(fx, func(b *testing.B) {
			e := newFixtureExporter(b, fx, 4096, nil)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Concurrent Gathers (two Prometheus servers scraping at once) each get a
// complete exposition, and one scrape's values never change under another
// (run with -race).
func TestConcurrentGathers(t *testing.T) {
	e := newFixtureExporter(t, "numa-sparse", 4096, nil)
	first, err := e.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := familiesText(t, first)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				mfs, err := e.Gather()
				if err != nil {
					t.Error(err)
					return
				}
				if got := familiesText(t, mfs); !slices.Equal(got, want) {
					t.Errorf("concurrent gather differs:\n%s", diffLines(got, want))
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := familiesText(t, first); !slices.Equal(got, want) {
		t.Errorf("the first scrape's families changed under later scrapes:\n%s", diffLines(got, want))
	}
}

// WithGatherer reuses a scrape's storage once its families are encoded
// (done): a later scrape, even of another set of series (the machine's
// zones changed), serves exactly what a fresh Gather does, and a scrape
// still being encoded is not touched by one that starts meanwhile.
func TestWithGathererReuse(t *testing.T) {
	root := copyTree(t, "x86-vm")
	e, err := New(Config{ProcPath: filepath.Join(root, "proc"), SysPath: filepath.Join(root, "sys"), PageSize: 4096}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	g := e.WithGatherer(prometheus.NewRegistry())
	scrape := func(when string) {
		t.Helper()
		mfs, done, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		fresh, _ := e.Gather()
		if got, want := familiesText(t, mfs), familiesText(t, fresh); !slices.Equal(got, want) {
			t.Errorf("%s: reused storage differs from a fresh Gather:\n%s", when, diffLines(got, want))
		}
		done()
	}
	scrape("first")
	held, holdDone, err := g.Gather() // still being encoded while the machine changes
	if err != nil {
		t.Fatal(err)
	}
	heldText := familiesText(t, held)
	// The machine gains NUMA nodes and zones: later scrapes have more series.
	switchTo := func(fixture string) {
		for _, f := range []string{"buddyinfo", "zoneinfo"} {
			b, err := os.ReadFile(filepath.Join("testdata", fixture, "proc", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "proc", f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	switchTo("numa-sparse")
	scrape("after the change")
	scrape("after the change, again")
	if got := familiesText(t, held); !slices.Equal(got, heldText) {
		t.Errorf("a scrape in flight changed under later ones:\n%s", diffLines(got, heldText))
	}
	holdDone()
	holdDone() // a second call must not put the slab in the pool twice
	scrape("reusing the held scrape's storage")
	// Scrapes in flight at once, over changing series, each keep their own.
	var texts [][]string
	var held2 [][]*dto.MetricFamily
	var dones []func()
	for i, fx := range []string{"x86-vm", "numa-sparse", "x86-vm", "numa-sparse"} {
		switchTo(fx)
		mfs, done, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		held2, dones, texts = append(held2, mfs), append(dones, done), append(texts, familiesText(t, mfs))
		for j := range i {
			if got := familiesText(t, held2[j]); !slices.Equal(got, texts[j]) {
				t.Fatalf("scrape %d in flight changed under scrape %d:\n%s", j, i, diffLines(got, texts[j]))
			}
		}
	}
	for _, done := range dones {
		done()
	}
}

// maskDurations replaces the values of the collector duration series, the
// one thing two scrapes of a fixture do not share.
func maskDurations(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "memfrag_scrape_collector_duration_seconds{") {
			lines[i] = l[:strings.LastIndexByte(l, ' ')] + " X"
		}
	}
	return strings.Join(lines, "\n")
}

// The text the exporter writes straight from its samples is, byte for
// byte, the text encoding of what Gather gives, merged with the families
// of the rest: on every fixture, with others' names before, between and
// after the exporter's.
func TestAppendTextMatchesGather(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, n := range []string{"a_first", "memfrag_m_between", "memfrag_zone_z_between", "zzz_last"} {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: n, Help: "Other " + n + "."}, []string{"l"})
		g.WithLabelValues("x").Set(1.5)
		g.WithLabelValues("a \"quoted\" \\ value").Set(-2)
		reg.MustRegister(g)
	}
	other := func(b []byte, mf *dto.MetricFamily) []byte {
		var buf bytes.Buffer
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
		return append(b, buf.Bytes()...)
	}
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			e := newFixtureExporter(t, fx.name, fx.pageSize, nil)
			g := e.WithGatherer(reg).(merged)
			mfs, done, err := g.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			for _, mf := range mfs {
				want = other(want, mf)
			}
			done()
			got, ok, err := g.AppendText([]byte("kept\n"), other)
			if err != nil || !ok {
				t.Fatalf("AppendText: %v, %v", ok, err)
			}
			if !strings.HasPrefix(string(got), "kept\n") {
				t.Fatalf("AppendText dropped what b held")
			}
			if g, w := maskDurations(string(got[len("kept\n"):])), maskDurations(string(want)); g != w {
				t.Errorf("AppendText and Gather differ:\n%s", diffLines(strings.Split(g, "\n"), strings.Split(w, "\n")))
			}
		})
	}
}

// A family the rest gathers under one of the exporter's names is an error,
// and only the rest's is written, as Gather keeps only the rest's.
func TestAppendTextDuplicateName(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "memfrag_scrape_collector_success", Help: "Impostor."}))
	e := newFixtureExporter(t, fixtures[0].name, fixtures[0].pageSize, nil)
	got, ok, err := e.WithGatherer(reg).(merged).AppendText(nil, func(b []byte, mf *dto.MetricFamily) []byte {
		return append(b, "# other "+mf.GetName()+"\n"...)
	})
	if !ok || err == nil || !strings.Contains(err.Error(), "gathered twice") {
		t.Fatalf("ok %v, err %v; want an error naming the duplicate", ok, err)
	}
	if !strings.Contains(string(got), "# other memfrag_scrape_collector_success\n") || strings.Contains(string(got), "# HELP memfrag_scrape_collector_success") {
		t.Errorf("the exporter's family was written next to the rest's:\n%s", got)
	}
}
