package selfmetrics

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Families gathers collectors of one family each (a Gauge, a CounterVec,
// a collector of one const metric) without a prometheus.Registry: a
// Registry's Gather allocates two 1,000-metric channels (32 KiB) and starts
// a goroutine per collector for every scrape, which for the exporter's
// handful of such series was 60% of a default scrape's allocation. It
// implements prometheus.TransactionalGatherer.
type Families struct {
	cs   []prometheus.Collector
	tmpl []*dto.MetricFamily // cs[i]'s family's name, help, unit and type
}

// NewFamilies lays out cs, each a collector of exactly one family with at
// least one series now (a vector's children created up front), so that its
// name and help are known.
func NewFamilies(cs ...prometheus.Collector) (*Families, error) {
	f := &Families{}
	seen := map[string]bool{}
	for _, c := range cs {
		reg := prometheus.NewPedanticRegistry()
		if err := reg.Register(c); err != nil {
			return nil, err
		}
		mfs, err := reg.Gather()
		if err != nil {
			return nil, err
		}
		if len(mfs) != 1 {
			return nil, fmt.Errorf("a collector of %d families; each must have exactly one, with a series", len(mfs))
		}
		mf := mfs[0]
		if seen[mf.GetName()] {
			return nil, fmt.Errorf("%s is collected twice", mf.GetName())
		}
		seen[mf.GetName()] = true
		f.cs = append(f.cs, c)
		f.tmpl = append(f.tmpl, &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Unit: mf.Unit, Type: mf.Type})
	}
	return f, nil
}

// Gather collects every collector once, in a goroutine of its own as a
// Registry does (a collector may send more than a channel holds), and
// returns the families sorted by name, their series sorted by label
// values.
func (f *Families) Gather() ([]*dto.MetricFamily, func(), error) {
	ch := make(chan prometheus.Metric, 16)
	go func() {
		for _, c := range f.cs {
			c.Collect(ch)
			ch <- nil // the end of c's metrics
		}
		close(ch)
	}()
	out := make([]*dto.MetricFamily, 0, len(f.cs))
	var errs prometheus.MultiError
	i := 0
	var metrics []*dto.Metric
	for m := range ch {
		if m != nil {
			d := &dto.Metric{}
			if err := m.Write(d); err != nil {
				errs = append(errs, fmt.Errorf("collecting %s: %w", f.tmpl[i].GetName(), err))
				continue
			}
			metrics = append(metrics, d)
			continue
		}
		if len(metrics) > 0 {
			t := f.tmpl[i]
			slices.SortFunc(metrics, compareLabels)
			out = append(out, &dto.MetricFamily{Name: t.Name, Help: t.Help, Unit: t.Unit, Type: t.Type, Metric: metrics})
		}
		metrics, i = nil, i+1
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, func() {}, errs.MaybeUnwrap()
}

// compareLabels orders series as client_golang does: by label values in
// the order of the (sorted) label names, then by timestamp.
func compareLabels(a, b *dto.Metric) int {
	for i := range min(len(a.Label), len(b.Label)) {
		if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(len(a.Label), len(b.Label)); c != 0 {
		return c
	}
	return cmp.Compare(a.GetTimestampMs(), b.GetTimestampMs())
}
