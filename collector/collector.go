// Package collector exposes the kernel's memory-fragmentation state as
// Prometheus metrics: one small collector per kernel source, run together by
// an Exporter that keeps a failing source from failing the scrape.
package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/memfrag/memfrag_exporter/fragmentation"
	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

const namespace = "memfrag"

// Config is what the collectors need to know, set from main's flags.
type Config struct {
	ProcPath string // procfs root, normally /proc
	SysPath  string // sysfs root, normally /sys
	PageSize int    // bytes per page; 0 means this machine's

	// Enabled turns collectors on or off by name; a name not in the map keeps
	// its default (see Available).
	Enabled map[string]bool

	Pagetypeinfo PagetypeinfoConfig
	Kmsg         KmsgConfig
}

// PagetypeinfoConfig configures the opt-in pagetypeinfo collector.
type PagetypeinfoConfig struct {
	MinInterval time.Duration // serve the cached result when read more often; 0 reads on every scrape
}

// KmsgConfig configures the allocation-failure collector.
type KmsgConfig struct {
	Path string // the kernel log device; empty means DefaultKmsgPath (/dev/kmsg)
}

// A source is one kernel source: update reads it and emits its metrics.
// update returns an error wrapping fs.ErrNotExist when the source does not
// exist on this system (a kernel without compaction, a container without
// /sys), which is reported but not logged as a failure.
type source interface {
	update(s *scrape, out *samples) error
}

// factory makes a source. Constructors do the expensive setup once.
type factory struct {
	name      string
	defaultOn bool
	help      string
	new       func(cfg Config, logger log.Logger) (source, error)
}

// factories lists every collector, in the order they run in a scrape:
// buddyinfo and zoneinfo first, so compaction reuses what they read.
var factories = []factory{
	{"buddyinfo", true, "free blocks by order and the kernel's fragmentation indices (/proc/buddyinfo)", newBuddyinfo},
	{"zoneinfo", true, "zone sizes and watermarks (/proc/zoneinfo)", newZoneinfo},
	{"compaction", true, "the kernel's proactive-compaction score and thresholds", newCompaction},
	{"vmstat", true, "compaction, THP fallback, allocation stall and drop_caches counters (/proc/vmstat)", newVmstat},
	{"sysctl", true, "vm.* sysctls and THP modes that govern fragmentation", newSysctl},
	{"pagetypeinfo", false, "free blocks and pageblocks by migrate type (/proc/pagetypeinfo; root only, holds the zone lock while read, so read at most once per --collector.pagetypeinfo.min-interval)", newPagetypeinfo},
	{"kmsg", false, "page allocation failures by order from the kernel log (/dev/kmsg; needs root or CAP_SYSLOG and the device in the container)", newKmsg},
	{"extfrag", false, "allocations that fell back to another migrate type's free list, by pair and whether they split a pageblock (tracepoint kmem:mm_page_alloc_extfrag, counted by a BPF program; needs root or CAP_BPF+CAP_PERFMON, tracefs and /proc/pagetypeinfo)", newExtfrag},
}

// Info describes a collector for flag registration.
type Info struct {
	Name           string
	DefaultEnabled bool
	Help           string
}

// Available lists the collectors with their defaults.
func Available() []Info {
	out := make([]Info, len(factories))
	for i, f := range factories {
		out[i] = Info{f.name, f.defaultOn, f.help}
	}
	return out
}

type namedSource struct {
	name    string
	source  source
	out     samples
	lastErr string // last error logged, so a persisting failure logs once
}

// Exporter runs the enabled collectors on every scrape.
type Exporter struct {
	logger  log.Logger
	mu      sync.Mutex // one scrape at a time: the sources reuse their buffers
	sources []*namedSource
	scrape  scrape
	status  samples // the success and duration of each collector
}

var (
	successDesc = newDesc(namespace+"_scrape_collector_success",
		"1 if the collector's last scrape worked; 0 means its kernel source is absent or unreadable (see the exporter log).",
		[]string{"collector"})
	durationDesc = newDesc(namespace+"_scrape_collector_duration_seconds",
		"How long the collector took in the last scrape to read its kernel source and compute its samples (the registry's encoding of them not included).", []string{"collector"})
)

// New builds an Exporter with the collectors cfg enables.
func New(cfg Config, logger log.Logger) (*Exporter, error) {
	if cfg.PageSize == 0 {
		cfg.PageSize = os.Getpagesize()
	}
	if cfg.PageSize <= 0 || cfg.PageSize&(cfg.PageSize-1) != 0 {
		return nil, fmt.Errorf("page size %d is not a power of two", cfg.PageSize)
	}
	for name := range cfg.Enabled {
		if !known(name) {
			return nil, fmt.Errorf("unknown collector %q", name)
		}
	}
	e := &Exporter{logger: logger}
	e.scrape.src = fragmentation.NewSource(cfg.ProcPath)
	e.scrape.proactivenessFile = procfile.NewOne(filepath.Join(cfg.ProcPath, fragmentation.ProactivenessFile))
	for _, f := range factories {
		on, set := cfg.Enabled[f.name]
		if !set {
			on = f.defaultOn
		}
		if !on {
			continue
		}
		s, err := f.new(cfg, log.With(logger, "collector", f.name))
		if err != nil {
			return nil, fmt.Errorf("collector %s: %w", f.name, err)
		}
		e.sources = append(e.sources, &namedSource{name: f.name, source: s})
	}
	return e, nil
}

func known(name string) bool {
	for _, f := range factories {
		if f.name == name {
			return true
		}
	}
	return false
}

// Enabled names the collectors that run, sorted.
func (e *Exporter) Enabled() []string {
	out := make([]string, len(e.sources))
	for i, s := range e.sources {
		out[i] = s.name
	}
	sort.Strings(out)
	return out
}

// Describe sends nothing: the metric set depends on the machine (zones,
// orders, nodes), so the Exporter is an unchecked collector.
func (e *Exporter) Describe(chan<- *prometheus.Desc) {}

// Collect runs every enabled collector once, for a prometheus.Registry.
// main serves the Exporter through Gather instead; both run the same code.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.run()
	for _, s := range e.sources {
		s.out.send(ch)
	}
	e.status.send(ch)
}

// run runs every enabled collector into its samples, then records each
// one's success and duration. A collector's duration is the time it took to
// read its source and compute its samples; handing them on comes after.
// The caller holds e.mu.
func (e *Exporter) run() {
	e.scrape.reset()
	e.status.reset()
	for _, s := range e.sources {
		s.out.reset()
		start := time.Now()
		err := s.source.update(&e.scrape, &s.out)
		d := time.Since(start).Seconds()
		if err == nil {
			err = s.out.err
		}
		e.report(s, err)
		ok := 1.0
		if err != nil {
			ok = 0
		}
		e.status.add(successDesc, prometheus.GaugeValue, ok, s.name)
		e.status.add(durationDesc, prometheus.GaugeValue, d, s.name)
	}
}

// report logs a collector's failure once, when it starts or changes, and its
// recovery; a source that stays broken does not flood the log.
func (e *Exporter) report(s *namedSource, err error) {
	switch {
	case err == nil && s.lastErr != "":
		level.Info(e.logger).Log("msg", "collector works again", "collector", s.name)
		s.lastErr = ""
	case err == nil:
	case err.Error() == s.lastErr:
	case errors.Is(err, fs.ErrNotExist):
		s.lastErr = err.Error()
		level.Info(e.logger).Log("msg", "kernel source not available on this system; collector reports success 0", "collector", s.name, "err", err)
	default:
		s.lastErr = err.Error()
		level.Error(e.logger).Log("msg", "collector failed", "collector", s.name, "err", err)
	}
}

// Close releases the collectors' kept descriptors.
func (e *Exporter) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.sources {
		if c, ok := s.source.(interface{ close() error }); ok {
			c.close()
		}
	}
	e.scrape.proactivenessFile.Close()
	return e.scrape.src.Close()
}

// scrape memoizes what several collectors read within one scrape, so a file
// is read once per scrape however many collectors need it.
type scrape struct {
	src               *fragmentation.Source
	proactivenessFile *procfile.File

	zones         memo[[]fragmentation.Zone]
	infos         memo[[]fragmentation.ZoneInfo]
	proactiveness memo[proactiveness]
}

// memo is what one read gave, kept for the rest of the scrape.
type memo[T any] struct {
	v    T
	err  error
	done bool
}

func (m *memo[T]) get(read func() (T, error)) (T, error) {
	if !m.done {
		m.v, m.err = read()
		m.done = true
	}
	return m.v, m.err
}

func (s *scrape) reset() { s.zones.done, s.infos.done, s.proactiveness.done = false, false, false }

func (s *scrape) buddyinfo() ([]fragmentation.Zone, error) { return s.zones.get(s.src.Buddyinfo) }

func (s *scrape) zoneinfo() ([]fragmentation.ZoneInfo, error) { return s.infos.get(s.src.Zoneinfo) }

// proactiveness is vm.compaction_proactiveness, if this kernel has it.
type proactiveness struct {
	v      uint64
	exists bool
}

// compactionProactiveness reads vm.compaction_proactiveness (see
// fragmentation.ReadProactiveness), which the compaction and sysctl
// collectors both need.
func (s *scrape) compactionProactiveness() (v uint64, exists bool, err error) {
	p, err := s.proactiveness.get(func() (proactiveness, error) {
		v, exists, err := fragmentation.ReadProactiveness(s.proactivenessFile)
		return proactiveness{v, exists}, err
	})
	return p.v, p.exists, err
}

// orderLabels holds "0".."N" so emitting a metric per order does not format
// numbers on every scrape.
var orderLabels = func() []string {
	out := make([]string, fragmentation.MaxOrders)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}()

// errNotExist matches errors of a kernel file that does not exist here.
var errNotExist = fs.ErrNotExist
