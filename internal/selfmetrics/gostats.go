package selfmetrics

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The runtime/metrics client_golang's default Go collector reads: its three
// runtime gauges and what its go_memstats_* families are computed from.
const (
	rmGOGC          = "/gc/gogc:percent"
	rmGoMemLimit    = "/gc/gomemlimit:bytes"
	rmGOMAXPROCS    = "/sched/gomaxprocs:threads"
	rmTinyAllocs    = "/gc/heap/tiny/allocs:objects"
	rmAllocsObjects = "/gc/heap/allocs:objects"
	rmFreesObjects  = "/gc/heap/frees:objects"
	rmAllocsBytes   = "/gc/heap/allocs:bytes"
	rmHeapObjects   = "/gc/heap/objects:objects"
	rmHeapGoal      = "/gc/heap/goal:bytes"
	rmTotal         = "/memory/classes/total:bytes"
	rmHeapObjBytes  = "/memory/classes/heap/objects:bytes"
	rmHeapUnused    = "/memory/classes/heap/unused:bytes"
	rmHeapReleased  = "/memory/classes/heap/released:bytes"
	rmHeapFree      = "/memory/classes/heap/free:bytes"
	rmHeapStacks    = "/memory/classes/heap/stacks:bytes"
	rmOSStacks      = "/memory/classes/os-stacks:bytes"
	rmMSpanInuse    = "/memory/classes/metadata/mspan/inuse:bytes"
	rmMSpanFree     = "/memory/classes/metadata/mspan/free:bytes"
	rmMCacheInuse   = "/memory/classes/metadata/mcache/inuse:bytes"
	rmMCacheFree    = "/memory/classes/metadata/mcache/free:bytes"
	rmBuckets       = "/memory/classes/profiling/buckets:bytes"
	rmMetadataOther = "/memory/classes/metadata/other:bytes"
	rmOther         = "/memory/classes/other:bytes"
)

var rmNames = []string{
	rmGOGC, rmGoMemLimit, rmGOMAXPROCS, rmTinyAllocs, rmAllocsObjects, rmFreesObjects,
	rmAllocsBytes, rmHeapObjects, rmHeapGoal, rmTotal, rmHeapObjBytes, rmHeapUnused,
	rmHeapReleased, rmHeapFree, rmHeapStacks, rmOSStacks, rmMSpanInuse, rmMSpanFree,
	rmMCacheInuse, rmMCacheFree, rmBuckets, rmMetadataOther, rmOther,
}

// goStats is one reading of the runtime.
type goStats struct {
	rm         map[string]float64
	goroutines float64
	threads    float64
	gc         debug.GCStats
}

// goValues computes each scalar family of client_golang's default Go
// collector from a reading, the way that collector does (go_collector.go,
// go_collector_latest.go: memStatsFromRM).
var goValues = map[string]func(s *goStats) float64{
	"go_goroutines":                    func(s *goStats) float64 { return s.goroutines },
	"go_threads":                       func(s *goStats) float64 { return s.threads },
	"go_info":                          func(*goStats) float64 { return 1 },
	"go_memstats_last_gc_time_seconds": func(s *goStats) float64 { return float64(s.gc.LastGC.UnixNano()) / 1e9 },
	"go_gc_gogc_percent":               func(s *goStats) float64 { return s.rm[rmGOGC] },
	"go_gc_gomemlimit_bytes":           func(s *goStats) float64 { return s.rm[rmGoMemLimit] },
	"go_sched_gomaxprocs_threads":      func(s *goStats) float64 { return s.rm[rmGOMAXPROCS] },
	"go_memstats_alloc_bytes":          func(s *goStats) float64 { return s.rm[rmHeapObjBytes] },
	"go_memstats_alloc_bytes_total":    func(s *goStats) float64 { return s.rm[rmAllocsBytes] },
	"go_memstats_sys_bytes":            func(s *goStats) float64 { return s.rm[rmTotal] },
	"go_memstats_mallocs_total":        func(s *goStats) float64 { return s.rm[rmAllocsObjects] + s.rm[rmTinyAllocs] },
	"go_memstats_frees_total":          func(s *goStats) float64 { return s.rm[rmFreesObjects] + s.rm[rmTinyAllocs] },
	"go_memstats_heap_alloc_bytes":     func(s *goStats) float64 { return s.rm[rmHeapObjBytes] },
	"go_memstats_heap_sys_bytes": func(s *goStats) float64 {
		return s.rm[rmHeapObjBytes] + s.rm[rmHeapUnused] + s.rm[rmHeapReleased] + s.rm[rmHeapFree]
	},
	"go_memstats_heap_idle_bytes":     func(s *goStats) float64 { return s.rm[rmHeapReleased] + s.rm[rmHeapFree] },
	"go_memstats_heap_inuse_bytes":    func(s *goStats) float64 { return s.rm[rmHeapObjBytes] + s.rm[rmHeapUnused] },
	"go_memstats_heap_released_bytes": func(s *goStats) float64 { return s.rm[rmHeapReleased] },
	"go_memstats_heap_objects":        func(s *goStats) float64 { return s.rm[rmHeapObjects] },
	"go_memstats_stack_inuse_bytes":   func(s *goStats) float64 { return s.rm[rmHeapStacks] },
	"go_memstats_stack_sys_bytes":     func(s *goStats) float64 { return s.rm[rmHeapStacks] + s.rm[rmOSStacks] },
	"go_memstats_mspan_inuse_bytes":   func(s *goStats) float64 { return s.rm[rmMSpanInuse] },
	"go_memstats_mspan_sys_bytes":     func(s *goStats) float64 { return s.rm[rmMSpanInuse] + s.rm[rmMSpanFree] },
	"go_memstats_mcache_inuse_bytes":  func(s *goStats) float64 { return s.rm[rmMCacheInuse] },
	"go_memstats_mcache_sys_bytes":    func(s *goStats) float64 { return s.rm[rmMCacheInuse] + s.rm[rmMCacheFree] },
	"go_memstats_buck_hash_sys_bytes": func(s *goStats) float64 { return s.rm[rmBuckets] },
	"go_memstats_gc_sys_bytes":        func(s *goStats) float64 { return s.rm[rmMetadataOther] },
	"go_memstats_other_sys_bytes":     func(s *goStats) float64 { return s.rm[rmOther] },
	"go_memstats_next_gc_bytes":       func(s *goStats) float64 { return s.rm[rmHeapGoal] },
}

// gcDuration is client_golang's summary of stop-the-world pauses.
const gcDuration = "go_gc_duration_seconds"

// goReader reads the Go runtime for client_golang's default Go collector's
// families.
type goReader struct {
	mu      sync.Mutex
	samples []metrics.Sample
	stats   goStats
	scalars []goScalar
	summary int   // gcDuration's first slot, -1 if not exported
	quant   []int // for each of its quantiles, the index in PauseQuantiles
}

type goScalar struct {
	slot int
	get  func(*goStats) float64
}

// goSource is client_golang's default Go collector, its families filled in
// by a goReader.
func goSource() source {
	return source{collector: collectors.NewGoCollector(), newReader: newGoReader}
}

func newGoReader(l layout) (reader, error) {
	r := &goReader{summary: -1, stats: goStats{rm: make(map[string]float64, len(rmNames))}}
	r.stats.gc.PauseQuantiles = make([]time.Duration, 5)
	for name, slot := range l.slot {
		if name == gcDuration {
			r.summary = slot
			for _, q := range l.families[name].Metric[0].GetSummary().GetQuantile() {
				i := math.Round(q.GetQuantile() * float64(len(r.stats.gc.PauseQuantiles)-1))
				if q.GetQuantile() < 0 || q.GetQuantile() > 1 || i != q.GetQuantile()*float64(len(r.stats.gc.PauseQuantiles)-1) {
					return nil, fmt.Errorf("%s has quantile %v, which debug.ReadGCStats does not give", name, q.GetQuantile())
				}
				r.quant = append(r.quant, int(i))
			}
			continue
		}
		get, ok := goValues[name]
		if !ok {
			return nil, fmt.Errorf("client_golang's Go collector exports %s, which this exporter does not know how to compute", name)
		}
		r.scalars = append(r.scalars, goScalar{slot, get})
	}
	for _, n := range rmNames {
		r.samples = append(r.samples, metrics.Sample{Name: n})
	}
	return r, nil
}

func (r *goReader) read(vals []float64, _ []bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.stats
	metrics.Read(r.samples)
	for _, smp := range r.samples {
		switch smp.Value.Kind() {
		case metrics.KindUint64:
			s.rm[smp.Name] = float64(smp.Value.Uint64())
		case metrics.KindFloat64:
			s.rm[smp.Name] = smp.Value.Float64()
		default:
			s.rm[smp.Name] = 0 // not in this Go release: client_golang reads it as 0 too
		}
	}
	s.goroutines = float64(runtime.NumGoroutine())
	n, _ := runtime.ThreadCreateProfile(nil)
	s.threads = float64(n)
	debug.ReadGCStats(&s.gc)
	for _, sc := range r.scalars {
		vals[sc.slot] = sc.get(s)
	}
	if r.summary >= 0 {
		vals[r.summary] = float64(s.gc.NumGC)
		vals[r.summary+1] = s.gc.PauseTotal.Seconds()
		for k, i := range r.quant {
			vals[r.summary+2+k] = s.gc.PauseQuantiles[i].Seconds()
		}
	}
}
