package collector

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/memfrag/memfrag_exporter/fragmentation"
	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// vmSysctls are the vm.* knobs that govern fragmentation and compaction.
// scale converts the file's unit to the metric's base unit.
var vmSysctls = []struct {
	file, name, help string
	scale            float64
}{
	{"compaction_proactiveness", "vm_compaction_proactiveness", "vm.compaction_proactiveness (0..100): how hard kcompactd compacts in the background; 0 turns proactive compaction off.", 1},
	{"extfrag_threshold", "vm_extfrag_threshold", "vm.extfrag_threshold (0..1000): above this fragmentation index x1000 the kernel compacts rather than reclaims for a high-order allocation.", 1},
	{"min_free_kbytes", "vm_min_free_bytes", "vm.min_free_kbytes in bytes: memory the kernel keeps free, which sets the zone watermarks.", 1024},
	{"watermark_scale_factor", "vm_watermark_scale_factor", "vm.watermark_scale_factor (units of 0.01%): distance between zone watermarks; larger wakes kswapd earlier.", 1},
	{"watermark_boost_factor", "vm_watermark_boost_factor", "vm.watermark_boost_factor (units of 0.01% of the high watermark): how far watermarks are boosted after a fragmentation event; 0 disables boosting.", 1},
	{"defrag_mode", "vm_defrag_mode", "vm.defrag_mode (kernels >= 6.15): 1 makes the allocator defragment to keep pageblocks whole.", 1},
}

var (
	thpEnabledDesc = newDesc(namespace+"_thp_enabled",
		"Transparent huge page mode (/sys/kernel/mm/transparent_hugepage/enabled): 1 for the active mode.", []string{"mode"})
	thpDefragDesc = newDesc(namespace+"_thp_defrag",
		"Transparent huge page defrag mode (/sys/kernel/mm/transparent_hugepage/defrag): 1 for the active mode.", []string{"mode"})
)

type sysctlValue struct {
	file  *procfile.File // nil for compaction_proactiveness, which the scrape reads once for both collectors
	desc  *metricDesc
	scale float64
}

type thpMode struct {
	file *procfile.File
	desc *metricDesc
}

type sysctlCollector struct {
	values []sysctlValue
	modes  []thpMode
}

func newSysctl(cfg Config, _ log.Logger) (source, error) {
	c := &sysctlCollector{}
	for _, s := range vmSysctls {
		v := sysctlValue{desc: newDesc(namespace+"_"+s.name, s.help, nil), scale: s.scale}
		if "sys/vm/"+s.file != fragmentation.ProactivenessFile {
			v.file = procfile.NewOne(filepath.Join(cfg.ProcPath, "sys/vm", s.file))
		}
		c.values = append(c.values, v)
	}
	thp := filepath.Join(cfg.SysPath, "kernel/mm/transparent_hugepage")
	c.modes = []thpMode{
		{procfile.NewOne(filepath.Join(thp, "enabled")), thpEnabledDesc},
		{procfile.NewOne(filepath.Join(thp, "defrag")), thpDefragDesc},
	}
	return c, nil
}

// update exports every knob this kernel has. Knobs a kernel lacks (defrag_mode
// before 6.15, THP when not built in) are skipped; only when none exists, or
// one is unreadable or malformed, does the collector report failure.
func (c *sysctlCollector) update(s *scrape, out *samples) error {
	found := 0
	var errs []error
	for _, v := range c.values {
		if v.file == nil {
			p, exists, err := s.compactionProactiveness()
			switch {
			case err != nil:
				errs = append(errs, err)
			case exists:
				out.add(v.desc, prometheus.GaugeValue, float64(p)*v.scale)
				found++
			}
			continue
		}
		err := v.file.Do(func(data []byte) error {
			f := procfile.Fields{Rest: data}
			w := f.Next()
			n, ok := procfile.ParseInt(w)
			if !ok {
				return fmt.Errorf("%s: %q is not an integer", v.file.Path(), w)
			}
			out.add(v.desc, prometheus.GaugeValue, float64(n)*v.scale)
			return nil
		})
		switch {
		case err == nil:
			found++
		case !errors.Is(err, errNotExist):
			errs = append(errs, err)
		}
	}
	for _, m := range c.modes {
		err := m.file.Do(func(data []byte) error { return emitModes(data, m, out) })
		switch {
		case err == nil:
			found++
		case !errors.Is(err, errNotExist):
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if found == 0 {
		return fmt.Errorf("no vm sysctl or THP setting readable: %w", errNotExist)
	}
	return nil
}

// thpModes is a parsed THP mode file: "always [madvise] never".
type thpModes struct {
	names  [8][]byte
	n      int
	active int // index of the bracketed mode
}

// parseModes reads a THP mode file. Names are checked, since they become
// label values.
func parseModes(data []byte) (thpModes, error) {
	var m thpModes
	m.active = -1
	f := procfile.Fields{Rest: data}
	for w := f.Next(); w != nil; w = f.Next() {
		if m.n == len(m.names) {
			return m, fmt.Errorf("more than %d modes", len(m.names))
		}
		if len(w) > 2 && w[0] == '[' && w[len(w)-1] == ']' {
			if m.active >= 0 {
				return m, fmt.Errorf("two active modes in %q", bytes.TrimSpace(data))
			}
			w, m.active = w[1:len(w)-1], m.n
		}
		if !procfile.IsName(w) {
			return m, fmt.Errorf("malformed mode %q", w)
		}
		m.names[m.n] = w
		m.n++
	}
	if m.active < 0 {
		return m, fmt.Errorf("no [active] mode in %q", bytes.TrimSpace(data))
	}
	return m, nil
}

func emitModes(data []byte, m thpMode, out *samples) error {
	modes, err := parseModes(data)
	if err != nil {
		return fmt.Errorf("%s: %w", m.file.Path(), err)
	}
	for i := 0; i < modes.n; i++ {
		v := 0.0
		if i == modes.active {
			v = 1
		}
		out.add(m.desc, prometheus.GaugeValue, v, string(modes.names[i]))
	}
	return nil
}

func (c *sysctlCollector) close() error {
	for _, v := range c.values {
		if v.file != nil {
			v.file.Close()
		}
	}
	for _, m := range c.modes {
		m.file.Close()
	}
	return nil
}
