package collector

import (
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/memfrag/memfrag_exporter/internal/textenc"
)

// samples collects what one collector emits in a scrape. A collector emits
// the same series in the same order scrape after scrape, so slot i of this
// scrape is compared with slot i of the last one and its line start is
// reused when desc and label values match: prometheus.MustNewConstMetric
// would rebuild and re-validate label pairs, about 15 allocations per sample. A
// scrape that emits the same series as the last one writes only their
// values: no pointer is stored, so a scrape during a garbage collection
// pays no write barriers.
//
// The Exporter times a collector's update (reading, parsing, computing,
// adding samples) and hands the samples to the registry afterwards.
type samples struct {
	slots  []seriesSlot // slots[:next] are this scrape's series
	values []float64    // values[i] is slots[i]'s value in this scrape
	next   int
	err    error // the first sample refused (invalid label value)
}

// seriesSlot is a series as the text format needs it, its line up to the
// value; label pairs for the other formats are built when asked for (see
// Exporter.gather), as a scrape of text needs none and they would be most
// of a series' memory.
type seriesSlot struct {
	desc   *metricDesc
	typ    prometheus.ValueType
	values []string
	text   string // the series' line up to its value (textenc.AppendSeriesPrefix); "" if names need quoting
}

// metricDesc is a prometheus.Desc that also keeps the name and help, which
// prometheus.Desc keeps to itself: the Exporter builds its metric families
// directly (see Exporter.Gather).
type metricDesc struct {
	*prometheus.Desc
	name, help  string
	id          int      // small and unique: Gather indexes families by it
	gaugeHead   string   // the text format's # HELP and # TYPE lines as a gauge family; "" if the name needs quoting
	counterHead string   // and as a counter family
	labels      []string // the variable labels' names
	labelOrder  []int    // labels' indices sorted by name, the order of a metric's label pairs
}

// header is the family's # HELP and # TYPE lines for typ; "" if its name
// needs quoting.
func (d *metricDesc) header(typ prometheus.ValueType) string {
	if typ == prometheus.CounterValue {
		return d.counterHead
	}
	return d.gaugeHead
}

var descIDs atomic.Int64

func newDesc(name, help string, labels []string) *metricDesc {
	d := &metricDesc{Desc: prometheus.NewDesc(name, help, labels, nil), name: name, help: help, id: int(descIDs.Add(1)),
		labels: slices.Clone(labels)}
	for i := range labels {
		d.labelOrder = append(d.labelOrder, i)
	}
	slices.SortFunc(d.labelOrder, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	if b, ok := textenc.AppendHeader(nil, name, &help, dto.MetricType_GAUGE); ok {
		d.gaugeHead = string(b)
	}
	if b, ok := textenc.AppendHeader(nil, name, &help, dto.MetricType_COUNTER); ok {
		d.counterHead = string(b)
	}
	return d
}

// constMetric is a prometheus.Metric of a sample, for a prometheus.Registry
// (Collect); Gather fills metrics from per-scrape slabs instead.
type constMetric struct {
	desc   *metricDesc
	values []string
	typ    prometheus.ValueType
	v      float64
}

func (m *constMetric) Desc() *prometheus.Desc { return m.desc.Desc }

func (m *constMetric) Write(out *dto.Metric) error {
	out.Label = prometheus.MakeLabelPairs(m.desc.Desc, m.values)
	v := m.v
	if m.typ == prometheus.CounterValue {
		out.Counter = &dto.Counter{Value: &v}
	} else {
		out.Gauge = &dto.Gauge{Value: &v}
	}
	return nil
}

// reset starts a scrape, reusing the slots: Gather copies the samples
// out while holding the Exporter's lock, and send hands out copies.
func (s *samples) reset() {
	s.next, s.err = 0, nil
}

// len is the number of samples this scrape added.
func (s *samples) len() int { return s.next }

// add records one sample. A sample prometheus would refuse (a label value
// that is not valid UTF-8: the parsers check names, this is the last line of
// defence) is dropped and remembered as the collector's error, so a bad
// kernel file can never panic the scrape.
func (s *samples) add(desc *metricDesc, typ prometheus.ValueType, v float64, values ...string) {
	if s.next == len(s.slots) {
		s.slots = append(s.slots, seriesSlot{})
		s.values = append(s.values, 0)
	}
	slot := &s.slots[s.next]
	if slot.desc != desc || slot.typ != typ || !equalStrings(slot.values, values) {
		m, err := prometheus.NewConstMetric(desc.Desc, typ, 0, values...)
		var d dto.Metric
		if err == nil {
			err = m.Write(&d)
		}
		if err != nil {
			if s.err == nil {
				s.err = err
			}
			return
		}
		text, _ := textenc.AppendSeriesPrefix(nil, desc.name, d.Label)
		*slot = seriesSlot{desc: desc, typ: typ, values: append(slot.values[:0], values...), text: string(text)}
	}
	s.values[s.next] = v
	s.next++
}

// send hands a copy of the scrape's samples to a registry, which may still
// be reading them when the next scrape refills the slots.
func (s *samples) send(ch chan<- prometheus.Metric) {
	out := make([]constMetric, s.next)
	for i := range out {
		sl := &s.slots[i]
		out[i] = constMetric{desc: sl.desc, values: slices.Clone(sl.values), typ: sl.typ, v: s.values[i]}
		ch <- &out[i]
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
