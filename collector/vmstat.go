package collector

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// vmstatCounters maps the /proc/vmstat counters that tell whether the kernel
// is fighting fragmentation to metric names. A counter the running kernel
// does not print (no compaction, no THP) is simply not exported.
var vmstatCounters = []struct{ key, name, help string }{
	{"compact_stall", "compaction_stalls_total", "Direct compactions: allocations that stalled to compact memory (vmstat compact_stall)."},
	{"compact_fail", "compaction_failures_total", "Direct compactions that failed to produce a free block of the wanted order (vmstat compact_fail)."},
	{"compact_success", "compaction_successes_total", "Direct compactions that produced a free block of the wanted order (vmstat compact_success)."},
	{"compact_migrate_scanned", "compaction_migrate_scanned_pages_total", "Pages compaction scanned for migration (vmstat compact_migrate_scanned)."},
	{"compact_free_scanned", "compaction_free_scanned_pages_total", "Pages compaction scanned for free targets (vmstat compact_free_scanned)."},
	{"compact_isolated", "compaction_isolated_pages_total", "Pages compaction isolated for migration (vmstat compact_isolated)."},
	{"compact_daemon_wake", "kcompactd_wakeups_total", "kcompactd background compaction wake-ups (vmstat compact_daemon_wake)."},
	{"compact_daemon_migrate_scanned", "kcompactd_migrate_scanned_pages_total", "Pages kcompactd scanned for migration (vmstat compact_daemon_migrate_scanned)."},
	{"compact_daemon_free_scanned", "kcompactd_free_scanned_pages_total", "Pages kcompactd scanned for free targets (vmstat compact_daemon_free_scanned)."},
	{"thp_fault_alloc", "thp_fault_alloc_total", "Transparent huge pages allocated at page fault (vmstat thp_fault_alloc)."},
	{"thp_fault_fallback", "thp_fault_fallback_total", "Page faults that wanted a transparent huge page and fell back to small pages, typically for lack of a free order-9 block (vmstat thp_fault_fallback)."},
	{"thp_fault_fallback_charge", "thp_fault_fallback_charge_total", "THP fault fallbacks caused by the memory cgroup charge, not fragmentation (vmstat thp_fault_fallback_charge)."},
	{"thp_collapse_alloc", "thp_collapse_alloc_total", "Huge pages khugepaged allocated to collapse small pages (vmstat thp_collapse_alloc)."},
	{"thp_collapse_alloc_failed", "thp_collapse_alloc_failed_total", "Huge page allocations khugepaged failed (vmstat thp_collapse_alloc_failed)."},
	{"drop_pagecache", "drop_caches_total", ""},
	{"drop_slab", "drop_caches_total", ""},
}

// allocstallZones maps vmstat's lower-case allocstall_<zone> suffixes to
// the kernel's zone names used by the other metrics' zone label.
var allocstallZones = map[string]string{
	"dma": "DMA", "dma32": "DMA32", "normal": "Normal", "movable": "Movable", "high": "HighMem", "device": "Device",
}

var (
	allocstallDesc = newDesc(namespace+"_allocstalls_total",
		"Allocations that entered direct reclaim, by the zone they targeted (vmstat allocstall_*; kernels before 4.8 count all zones in one series without a zone label).", []string{"zone"})
	dropCachesDesc = newDesc(namespace+"_drop_caches_total",
		"Writes to vm.drop_caches, by what they dropped (vmstat drop_pagecache/drop_slab).", []string{"kind"})
)

type vmstatMetric struct {
	desc   *metricDesc
	labels []string
}

type vmstatCollector struct {
	file    *procfile.File
	metrics map[string]vmstatMetric // by vmstat key
	// initials marks the first bytes of the wanted keys, so the ~200 other
	// lines are skipped without being split or looked up.
	initials [256]bool
	values   []vmstatValue // parsed before emitting, reused
}

type vmstatValue struct {
	metric vmstatMetric
	value  float64
}

func newVmstat(cfg Config, _ log.Logger) (source, error) {
	c := &vmstatCollector{
		file:    procfile.New(filepath.Join(cfg.ProcPath, "vmstat")),
		metrics: map[string]vmstatMetric{},
	}
	for _, v := range vmstatCounters {
		switch v.key {
		case "drop_pagecache":
			c.metrics[v.key] = vmstatMetric{dropCachesDesc, []string{"pagecache"}}
		case "drop_slab":
			c.metrics[v.key] = vmstatMetric{dropCachesDesc, []string{"slab"}}
		default:
			c.metrics[v.key] = vmstatMetric{desc: newDesc(namespace+"_"+v.name, v.help, nil)}
		}
	}
	for suffix, zone := range allocstallZones {
		c.metrics["allocstall_"+suffix] = vmstatMetric{allocstallDesc, []string{zone}}
	}
	// Kernels before 4.8 count all zones in one "allocstall"; an empty zone
	// label is a series without it.
	c.metrics["allocstall"] = vmstatMetric{allocstallDesc, []string{""}}
	for key := range c.metrics {
		c.initials[key[0]] = true
	}
	return c, nil
}

// update parses the whole file before emitting, so a malformed file yields
// an error and no half-read counters.
func (c *vmstatCollector) update(_ *scrape, out *samples) error {
	err := c.file.Do(func(data []byte) error {
		var err error
		c.values, err = c.parse(data, c.values)
		return err
	})
	if err != nil {
		return fmt.Errorf("reading %s: %w", c.file.Path(), err)
	}
	for _, v := range c.values {
		out.add(v.metric.desc, prometheus.CounterValue, v.value, v.metric.labels...)
	}
	return nil
}

// parse picks the known counters out of vmstat's "name value" lines.
func (c *vmstatCollector) parse(data []byte, dst []vmstatValue) ([]vmstatValue, error) {
	values := dst[:0]
	for len(data) > 0 {
		if !c.initials[data[0]] {
			nl := bytes.IndexByte(data, '\n')
			if nl < 0 {
				break
			}
			data = data[nl+1:]
			continue
		}
		var line []byte
		line, data = procfile.CutLine(data)
		f := procfile.Fields{Rest: line}
		key := f.Next()
		m, ok := c.metrics[string(key)]
		if !ok {
			zone, isStall := bytes.CutPrefix(key, []byte("allocstall_"))
			if !isStall || !procfile.IsName(zone) {
				continue
			}
			// A zone this table does not know: keep the kernel's name.
			m = vmstatMetric{allocstallDesc, []string{string(zone)}}
		}
		v := f.Next()
		n, ok := procfile.ParseUint(v)
		if !ok {
			return values, fmt.Errorf("malformed vmstat: %s: %q is not a count", key, v)
		}
		values = append(values, vmstatValue{m, float64(n)})
	}
	if len(values) == 0 {
		return values, errors.New("malformed vmstat: none of the expected counters")
	}
	return values, nil
}

func (c *vmstatCollector) close() error { return c.file.Close() }
