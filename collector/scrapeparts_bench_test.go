package collector

import (
	"bytes"
	"compress/gzip"
	"io"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// The benchmarks in this file take a scrape apart, to show where its CPU goes
// and what a change would save: the process and Go collectors main registers,
// gzip at the level promhttp uses against faster ones, and building const
// metrics against reusing label pairs.

func BenchmarkScrapePartRuntimeCollectors(b *testing.B) {
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
	}{
		{"process", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})},
		{"go", collectors.NewGoCollector()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(tc.c)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkScrapePartGzip compresses one default exposition of this machine
// (our collectors, process and Go metrics) at several levels; promhttp uses
// gzip.DefaultCompression. It reports the compressed size as B/scrape.
func BenchmarkScrapePartGzip(b *testing.B) {
	e := newLiveExporter(b, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(e, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("exposition: %d bytes", text.Len())
	for _, level := range []int{gzip.DefaultCompression, gzip.BestSpeed, gzip.HuffmanOnly} {
		b.Run("level"+strconv.Itoa(level), func(b *testing.B) {
			var out bytes.Buffer
			zw, _ := gzip.NewWriterLevel(io.Discard, level)
			b.ReportAllocs()
			for b.Loop() {
				out.Reset()
				zw.Reset(&out)
				zw.Write(text.Bytes())
				zw.Close()
			}
			b.ReportMetric(float64(out.Len()), "B/scrape")
		})
	}
}

// cachedGauge is a sketch of a metric whose label pairs are built once and
// kept across scrapes: only the value is new each time (one allocation per
// sample instead of about fifteen).
type cachedGauge struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	v      float64
	g      dto.Gauge
}

func (m *cachedGauge) Desc() *prometheus.Desc { return m.desc }
func (m *cachedGauge) Write(out *dto.Metric) error {
	m.g.Value = &m.v
	out.Label, out.Gauge = m.labels, &m.g
	return nil
}

// BenchmarkScrapePartConstMetric builds buddyinfo's 132 per-order samples of a
// three-zone, eleven-order machine (the CI VM), the way buddyinfo does today
// and with label pairs cached, and runs them through a registry as a scrape
// does.
func BenchmarkScrapePartConstMetric(b *testing.B) {
	zones := []string{"DMA", "DMA32", "Normal"}
	descs := []*prometheus.Desc{freeBlocksDesc, freeBytesDesc, fragIndexDesc, unusableDesc}
	type series struct {
		desc        *prometheus.Desc
		zone, order string
	}
	var all []series
	for _, z := range zones {
		for o := 0; o < 11; o++ {
			for _, d := range descs {
				all = append(all, series{d, z, orderLabels[o]})
			}
		}
	}
	cached := make([][]*dto.LabelPair, len(all))
	for i, s := range all {
		m := prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, 0, "0", s.zone, s.order)
		var d dto.Metric
		m.Write(&d)
		cached[i] = d.Label
	}
	for _, tc := range []struct {
		name string
		emit func(ch chan<- prometheus.Metric)
	}{
		{"MustNewConstMetric", func(ch chan<- prometheus.Metric) {
			for i, s := range all {
				ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, float64(i), "0", s.zone, s.order)
			}
		}},
		{"cached-labels", func(ch chan<- prometheus.Metric) {
			for i, s := range all {
				ch <- &cachedGauge{desc: s.desc, labels: cached[i], v: float64(i)}
			}
		}},
	} {
		b.Run("build/"+tc.name, func(b *testing.B) {
			ch := make(chan prometheus.Metric, len(all))
			b.ReportAllocs()
			for b.Loop() {
				tc.emit(ch)
				for len(ch) > 0 {
					<-ch
				}
			}
		})
		b.Run("gather/"+tc.name, func(b *testing.B) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectFunc(tc.emit))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// collectFunc is an unchecked collector made of a function.
type collectFunc func(ch chan<- prometheus.Metric)

func (f collectFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }
