// Package selfmetrics serves the exporter's own go_* and process_* families,
// the ones client_golang's Go and process collectors export, without a
// prometheus.Registry in the way.
//
// Through a Registry these 38 families cost a third of a default scrape's
// CPU: a goroutine per collector, a const metric allocated per value,
// validated, hashed, written out into a new dto.Metric and sorted, plus
// the garbage collection all of that allocation brings. Here each family
// is laid out once, from what the collectors themselves export at start
// (so names, help, types and labels are client_golang's exactly), and a
// scrape only reads the numbers into storage it reuses.
package selfmetrics

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/memfrag/memfrag_exporter/internal/processcollector"
)

// reader fills in one scrape's values: vals[slot] for each slot the reader
// was given when it was set up, and ok[family] false for a family whose
// value could not be read this time (it is left out, as client_golang's
// collectors leave out what they cannot read).
type reader interface {
	read(vals []float64, ok []bool)
}

// Gatherer gathers the families of its sources. It implements
// prometheus.TransactionalGatherer: the families are valid until done is
// called.
type Gatherer struct {
	tmpl    []*dto.MetricFamily // sorted by name
	slots   []int               // tmpl[i]'s first value slot
	nvals   int
	readers []reader
	frames  sync.Pool
}

// layout is what a source's reader is told about its families.
type layout struct {
	families map[string]*dto.MetricFamily // by name, as gathered at start
	family   map[string]int               // by name: index among the gatherer's families
	slot     map[string]int               // by name: first value slot
}

// source is a collector whose families a reader fills in. newReader is
// called with the layout of the collector's families once every source's
// families are known.
type source struct {
	collector prometheus.Collector
	newReader func(l layout) (reader, error)
}

// newGatherer lays out the families the sources' collectors export now.
func newGatherer(sources ...source) (*Gatherer, error) {
	g := &Gatherer{}
	owner := map[string]int{}
	for si, s := range sources {
		reg := prometheus.NewPedanticRegistry()
		if err := reg.Register(s.collector); err != nil {
			return nil, err
		}
		mfs, err := reg.Gather()
		if err != nil {
			return nil, err
		}
		for _, mf := range mfs {
			if len(mf.Metric) != 1 {
				return nil, fmt.Errorf("%s has %d series; only families of one are laid out", mf.GetName(), len(mf.Metric))
			}
			if _, dup := owner[mf.GetName()]; dup {
				return nil, fmt.Errorf("%s is exported twice", mf.GetName())
			}
			owner[mf.GetName()] = si
		}
		g.tmpl = append(g.tmpl, mfs...)
	}
	slices.SortFunc(g.tmpl, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	layouts := make([]layout, len(sources))
	for i := range layouts {
		layouts[i] = layout{families: map[string]*dto.MetricFamily{}, family: map[string]int{}, slot: map[string]int{}}
	}
	for i, mf := range g.tmpl {
		l := layouts[owner[mf.GetName()]]
		l.families[mf.GetName()] = mf
		l.family[mf.GetName()] = i
		l.slot[mf.GetName()] = g.nvals
		g.slots = append(g.slots, g.nvals)
		g.nvals += valueCount(mf)
	}
	for i, s := range sources {
		r, err := s.newReader(layouts[i])
		if err != nil {
			return nil, err
		}
		g.readers = append(g.readers, r)
	}
	return g, nil
}

// valueCount is how many value slots a family of one series takes: one, or
// for a summary the count, the sum and one per quantile.
func valueCount(mf *dto.MetricFamily) int {
	if s := mf.Metric[0].GetSummary(); s != nil {
		return 2 + len(s.Quantile)
	}
	return 1
}

// frame is one scrape's copy of the families, pointing at its own values.
type frame struct {
	fams   []dto.MetricFamily
	ptrs   []*dto.MetricFamily
	vals   []float64
	counts []uint64
	ok     []bool
}

func (g *Gatherer) newFrame() *frame {
	f := &frame{
		fams:   make([]dto.MetricFamily, len(g.tmpl)),
		ptrs:   make([]*dto.MetricFamily, 0, len(g.tmpl)),
		vals:   make([]float64, g.nvals),
		counts: make([]uint64, len(g.tmpl)),
		ok:     make([]bool, len(g.tmpl)),
	}
	for i, t := range g.tmpl {
		tm := t.Metric[0]
		v := g.slots[i]
		m := &dto.Metric{Label: tm.Label}
		switch {
		case tm.Counter != nil:
			m.Counter = &dto.Counter{Value: &f.vals[v]}
		case tm.Gauge != nil:
			m.Gauge = &dto.Gauge{Value: &f.vals[v]}
		case tm.Untyped != nil:
			m.Untyped = &dto.Untyped{Value: &f.vals[v]}
		case tm.Summary != nil:
			s := &dto.Summary{SampleCount: &f.counts[i], SampleSum: &f.vals[v+1]}
			for k, q := range tm.Summary.Quantile {
				s.Quantile = append(s.Quantile, &dto.Quantile{Quantile: q.Quantile, Value: &f.vals[v+2+k]})
			}
			m.Summary = s
		}
		f.fams[i] = dto.MetricFamily{Name: t.Name, Help: t.Help, Type: t.Type, Unit: t.Unit, Metric: []*dto.Metric{m}}
	}
	return f
}

// Gather reads every value and returns the families that could be read,
// sorted by name. The families are valid until done is called.
func (g *Gatherer) Gather() ([]*dto.MetricFamily, func(), error) {
	f, _ := g.frames.Get().(*frame)
	if f == nil {
		f = g.newFrame()
	}
	for i := range f.ok {
		f.ok[i] = true
	}
	for _, r := range g.readers {
		r.read(f.vals, f.ok)
	}
	f.ptrs = f.ptrs[:0]
	for i := range f.fams {
		if !f.ok[i] {
			continue
		}
		if f.fams[i].Metric[0].Summary != nil {
			// A summary's count is a uint64: its slot holds it as a float64.
			f.counts[i] = uint64(f.vals[g.slots[i]])
		}
		f.ptrs = append(f.ptrs, &f.fams[i])
	}
	var once bool
	return f.ptrs, func() {
		if once {
			return
		}
		once = true
		g.frames.Put(f)
	}, nil
}

// New returns a Gatherer of client_golang's default Go collector's families
// and of the process collector's for procPath/self.
func New(procPath string) (*Gatherer, error) {
	return newGatherer(goSource(), procSource(processcollector.New(procPath)))
}
