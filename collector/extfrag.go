package collector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// The kernel fires kmem:mm_page_alloc_extfrag whenever an allocation takes
// pages from another migrate type's free list. A fallback is "fragmenting"
// when it took less than a pageblock (fallback_order < pageblock_order): the
// pageblock is then split and mixed, which compaction cannot undo.
//
// This collector counts those events in the kernel: a BPF program of about
// twenty instructions (built with cilium/ebpf's asm package, no compiler)
// attached to the tracepoint adds one to a counter in an array map, indexed
// by (alloc_migratetype, fallback_migratetype, fragmenting,
// change_ownership). A scrape reads the map with one syscall. The
// alternative, one perf counting event per filter per CPU with ftrace
// filters, costs filters x CPUs descriptors (3,072 at 256 CPUs for the 12
// combinations that occur) and as many reads per scrape; see
// extfrag_bench_test.go and the README for the measurements.
//
// Everything the program depends on comes from the running kernel: the
// tracepoint's id and field offsets from its tracefs format file, the
// pageblock order and the migrate types' names (in the kernel's enum order)
// from /proc/pagetypeinfo.

const (
	extfragSystem = "kmem"
	extfragEvent  = "mm_page_alloc_extfrag"

	// extfragTypeBits is the bits per migrate type in a counter's index:
	// kernels have 4 to 6 migrate types.
	extfragTypeBits = 3
	extfragMaxTypes = 1 << extfragTypeBits
	extfragCounters = extfragMaxTypes * extfragMaxTypes * 4

	// extfragPCPTypes is MIGRATE_PCPTYPES: only Unmovable, Movable and
	// Reclaimable (the first three) fall back to each other's free lists
	// (mm/page_alloc.c fallbacks[]); HighAtomic and CMA are taken without
	// the tracepoint. Their pairs get series from the start, so a first
	// event shows in rate(); any other pair appears once it is counted.
	extfragPCPTypes = 3

	// extfragRetry is how long a failed setup is served before it is
	// tried again (it reads /proc/pagetypeinfo, which holds the zone lock).
	extfragRetry = time.Minute
)

var (
	extfragEventsDesc = newDesc(namespace+"_extfrag_events_total",
		"Allocations the kernel served from another migrate type's free list (tracepoint kmem:mm_page_alloc_extfrag), counted since the exporter started. fragmenting=\"true\": the fallback took less than a pageblock, so the pageblock now mixes types (compaction cannot undo this); sustained Unmovable or Reclaimable from Movable is the leading indicator of lasting fragmentation.",
		[]string{"alloc_migratetype", "fallback_migratetype", "fragmenting"})
	extfragClaimsDesc = newDesc(namespace+"_extfrag_pageblock_claims_total",
		"Fallbacks after which the pageblock belonged to the allocating migrate type (the tracepoint's change_ownership): the kernel claimed the block instead of leaving a foreign page in it. Fallbacks minus claims is the number that left mixed pageblocks.",
		[]string{"alloc_migratetype", "fallback_migratetype"})
	extfragPageblockOrderDesc = newDesc(namespace+"_extfrag_pageblock_order",
		"The pageblock order the extfrag collector judges fragmenting by (from /proc/pagetypeinfo).", nil)
)

// tracepointField is one field of a tracepoint's record.
type tracepointField struct {
	offset, size int
	signed       bool
}

// tracepointFormat is a tracefs events/<system>/<event>/format file.
type tracepointFormat struct {
	name   string
	id     uint64
	fields map[string]tracepointField
}

var errMalformedFormat = errors.New("malformed tracepoint format")

// parseTracepointFormat reads a tracefs format file:
//
//	name: mm_page_alloc_extfrag
//	ID: 650
//	format:
//		field:int alloc_order;	offset:16;	size:4;	signed:1;
func parseTracepointFormat(data []byte) (tracepointFormat, error) {
	f := tracepointFormat{fields: map[string]tracepointField{}}
	haveID := false
	for lineNo := 1; len(data) > 0; lineNo++ {
		var line []byte
		line, data = procfile.CutLine(data)
		line = bytes.TrimSpace(line)
		switch {
		case bytes.HasPrefix(line, []byte("name:")):
			f.name = string(bytes.TrimSpace(line[len("name:"):]))
		case bytes.HasPrefix(line, []byte("ID:")):
			id, ok := procfile.ParseUint(bytes.TrimSpace(line[len("ID:"):]))
			if !ok || id > 1<<32 {
				return f, fmt.Errorf("%w: line %d: bad ID %q", errMalformedFormat, lineNo, line)
			}
			f.id, haveID = id, true
		case bytes.HasPrefix(line, []byte("field:")):
			name, fld, err := parseFormatField(line)
			if err != nil {
				return f, fmt.Errorf("%w: line %d: %w", errMalformedFormat, lineNo, err)
			}
			if _, dup := f.fields[name]; dup {
				return f, fmt.Errorf("%w: line %d: field %q twice", errMalformedFormat, lineNo, name)
			}
			f.fields[name] = fld
		}
	}
	if !haveID {
		return f, fmt.Errorf("%w: no ID", errMalformedFormat)
	}
	return f, nil
}

// parseFormatField reads "field:int alloc_order;	offset:16;	size:4;	signed:1;".
func parseFormatField(line []byte) (string, tracepointField, error) {
	var fld tracepointField
	parts := bytes.Split(line, []byte(";"))
	if len(parts) < 4 {
		return "", fld, fmt.Errorf("field line %q has fewer than 4 parts", line)
	}
	decl := bytes.TrimSpace(parts[0][len("field:"):])
	if i := bytes.IndexByte(decl, '['); i >= 0 { // an array: char comm[16]
		decl = decl[:i]
	}
	sp := bytes.LastIndexAny(decl, " \t*")
	name := string(decl[sp+1:])
	if sp < 0 || !procfile.IsName([]byte(name)) {
		return "", fld, fmt.Errorf("no field name in %q", parts[0])
	}
	got := 0
	for _, p := range parts[1:] {
		k, v, ok := bytes.Cut(bytes.TrimSpace(p), []byte(":"))
		if !ok {
			continue
		}
		n, okn := procfile.ParseUint(v)
		if !okn || n > 1<<16 {
			return "", fld, fmt.Errorf("field %s: bad %s %q", name, k, v)
		}
		switch string(k) {
		case "offset":
			fld.offset, got = int(n), got|1
		case "size":
			fld.size, got = int(n), got|2
		case "signed":
			fld.signed, got = n != 0, got|4
		}
	}
	if got != 7 {
		return "", fld, fmt.Errorf("field %s lacks offset, size or signed", name)
	}
	return name, fld, nil
}

// extfragLayout is what the counting program needs to know about this
// kernel: where the fields are in the record and the pageblock order.
type extfragLayout struct {
	allocType, fallbackType, fallbackOrder, changeOwnership int // offsets of 4-byte fields
	pageblockOrder                                          int
}

// layoutFromFormat finds the extfrag fields in the tracepoint's format.
func layoutFromFormat(f tracepointFormat, pageblockOrder int) (extfragLayout, error) {
	l := extfragLayout{pageblockOrder: pageblockOrder}
	for _, want := range []struct {
		name string
		dst  *int
	}{
		{"alloc_migratetype", &l.allocType},
		{"fallback_migratetype", &l.fallbackType},
		{"fallback_order", &l.fallbackOrder},
		{"change_ownership", &l.changeOwnership},
	} {
		fld, ok := f.fields[want.name]
		switch {
		case !ok:
			return l, fmt.Errorf("tracepoint %s has no field %s", f.name, want.name)
		case fld.size != 4 || fld.offset%4 != 0 || fld.offset > 1<<12:
			return l, fmt.Errorf("tracepoint %s field %s: offset %d size %d, want an aligned 4-byte int", f.name, want.name, fld.offset, fld.size)
		}
		*want.dst = fld.offset
	}
	if pageblockOrder < 0 || pageblockOrder > 30 {
		return l, fmt.Errorf("pageblock order %d out of range", pageblockOrder)
	}
	return l, nil
}

// extfragIndex is where the program counts an event: alloc type, fallback
// type, fragmenting, change_ownership, from the most significant bits down.
func extfragIndex(alloc, fallback int, fragmenting, claimed bool) int {
	i := (alloc&(extfragMaxTypes-1))<<(extfragTypeBits+2) | (fallback&(extfragMaxTypes-1))<<2
	if fragmenting {
		i |= 2
	}
	if claimed {
		i |= 1
	}
	return i
}

// extfragProgram builds the counting program. The counters live in the one
// value of an array map (extfragCounters u64s), so a scrape reads them all
// with one lookup.
func extfragProgram(l extfragLayout, counters *ebpf.Map) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // the tracepoint record
		asm.LoadMem(asm.R7, asm.R6, int16(l.allocType), asm.Word),
		asm.And.Imm(asm.R7, extfragMaxTypes-1),
		asm.LSh.Imm(asm.R7, extfragTypeBits+2),
		asm.LoadMem(asm.R2, asm.R6, int16(l.fallbackType), asm.Word),
		asm.And.Imm(asm.R2, extfragMaxTypes-1),
		asm.LSh.Imm(asm.R2, 2),
		asm.Or.Reg(asm.R7, asm.R2),
		asm.LoadMem(asm.R2, asm.R6, int16(l.fallbackOrder), asm.Word),
		asm.JGE.Imm(asm.R2, int32(l.pageblockOrder), "whole"), // unsigned: a negative order is not fragmenting
		asm.Or.Imm(asm.R7, 2),
		asm.LoadMem(asm.R2, asm.R6, int16(l.changeOwnership), asm.Word).WithSymbol("whole"),
		asm.JEq.Imm(asm.R2, 0, "index"),
		asm.Or.Imm(asm.R7, 1),
		asm.LSh.Imm(asm.R7, 3).WithSymbol("index"), // bytes into the counters
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, counters.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Add.Reg(asm.R0, asm.R7),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
}

// extfragCounter is the program, its map and the perf event attaching it.
type extfragCounter struct {
	counters *ebpf.Map
	prog     *ebpf.Program
	event    int // perf event fd
	values   []byte
}

// attachExtfragCounter loads the program and attaches it to the tracepoint
// with the given id (from its format file).
func attachExtfragCounter(id uint64, l extfragLayout) (*extfragCounter, error) {
	counters, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "memfrag_extfrag", Type: ebpf.Array, KeySize: 4, ValueSize: extfragCounters * 8, MaxEntries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the BPF counter map: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "memfrag_extfrag", Type: ebpf.TracePoint, License: "GPL",
		Instructions: extfragProgram(l, counters),
	})
	if err != nil {
		counters.Close()
		return nil, fmt.Errorf("loading the BPF counting program: %w", err)
	}
	fd, err := openTracepointEvent(id, -1)
	if err != nil {
		prog.Close()
		counters.Close()
		return nil, err
	}
	// A BPF program on a tracepoint runs for the event on every CPU,
	// whichever CPU its perf event was opened on.
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, prog.FD()); err != nil {
		unix.Close(fd)
		prog.Close()
		counters.Close()
		return nil, fmt.Errorf("attaching the BPF program to %s:%s: %w", extfragSystem, extfragEvent, err)
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
		unix.Close(fd)
		prog.Close()
		counters.Close()
		return nil, fmt.Errorf("enabling %s:%s: %w", extfragSystem, extfragEvent, err)
	}
	return &extfragCounter{counters: counters, prog: prog, event: fd, values: make([]byte, extfragCounters*8)}, nil
}

// openTracepointEvent opens a perf event on the tracepoint, on CPU 0 for
// all processes. cpu -1 opens it on CPU 0 for attaching a BPF program.
func openTracepointEvent(id uint64, cpu int) (int, error) {
	if cpu < 0 {
		cpu = 0
	}
	attr := unix.PerfEventAttr{
		Type:        unix.PERF_TYPE_TRACEPOINT,
		Size:        uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Config:      id,
		Sample:      1,
		Bits:        unix.PerfBitDisabled,
		Wakeup:      1,
		Sample_type: unix.PERF_SAMPLE_RAW,
	}
	fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("perf_event_open on tracepoint %s:%s (needs CAP_PERFMON and CAP_BPF, or root): %w", extfragSystem, extfragEvent, err)
	}
	return fd, nil
}

// read copies the counters; read(i) is then counter i.
func (c *extfragCounter) read() error {
	if err := c.counters.Lookup(uint32(0), &c.values); err != nil {
		return fmt.Errorf("reading the BPF counters: %w", err)
	}
	return nil
}

func (c *extfragCounter) value(i int) uint64 {
	return binary.NativeEndian.Uint64(c.values[i*8:])
}

func (c *extfragCounter) close() error {
	err := unix.Close(c.event)
	c.prog.Close()
	c.counters.Close()
	return err
}

// extfragConfig is what setup reads; tests point it at fixtures.
type extfragConfig struct {
	procPath, sysPath string
	pageblockOrder    int // if > 0, judge by this order instead of the kernel's (tests only)
}

type extfragCollector struct {
	cfg    extfragConfig
	logger log.Logger

	mu        sync.Mutex
	counter   *extfragCounter
	types     []string
	order     int
	err       error
	triedAt   time.Time
	closed    bool
	typeLabel []string // types, then numbers for indexes past them
}

func newExtfrag(cfg Config, logger log.Logger) (source, error) {
	c := &extfragCollector{cfg: extfragConfig{procPath: cfg.ProcPath, sysPath: cfg.SysPath}, logger: logger}
	c.setup()
	return c, nil
}

// setup attaches the counter; its error is served until extfragRetry has
// passed. The caller holds c.mu or owns c.
func (c *extfragCollector) setup() {
	c.triedAt = time.Now()
	counter, types, order, err := setupExtfrag(c.cfg, c.logger)
	if err != nil {
		c.err = err
		return
	}
	c.counter, c.types, c.order, c.err = counter, types, order, nil
	c.typeLabel = make([]string, extfragMaxTypes)
	for i := range c.typeLabel {
		if i < len(types) {
			c.typeLabel[i] = types[i]
		} else {
			c.typeLabel[i] = strconv.Itoa(i)
		}
	}
	level.Info(c.logger).Log("msg", "counting kmem:mm_page_alloc_extfrag with a BPF program", "pageblock_order", order, "migratetypes", fmt.Sprint(types))
}

// setupExtfrag reads the kernel's format, pageblock order and migrate types,
// then attaches the counter.
func setupExtfrag(cfg extfragConfig, logger log.Logger) (*extfragCounter, []string, int, error) {
	format, err := readExtfragFormat(cfg.sysPath, logger)
	if err != nil {
		return nil, nil, 0, err
	}
	var pti pagetypeinfo
	f := procfile.NewSlow(filepath.Join(cfg.procPath, "pagetypeinfo"))
	err = f.Do(func(data []byte) error { return pti.parse(data) })
	f.Close()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reading the pageblock order and migrate types from pagetypeinfo (mode 0400, needs root): %w", err)
	}
	if len(pti.types) > extfragMaxTypes {
		return nil, nil, 0, fmt.Errorf("%d migrate types in pagetypeinfo, at most %d counted", len(pti.types), extfragMaxTypes)
	}
	order := pti.pageblockOrder
	if cfg.pageblockOrder > 0 {
		order = cfg.pageblockOrder
	}
	layout, err := layoutFromFormat(format, order)
	if err != nil {
		return nil, nil, 0, err
	}
	counter, err := attachExtfragCounter(format.id, layout)
	if err != nil {
		return nil, nil, 0, err
	}
	return counter, append([]string(nil), pti.types...), order, nil
}

// readExtfragFormat reads the tracepoint's format file from tracefs (see
// findTracefs).
func readExtfragFormat(sysPath string, logger log.Logger) (tracepointFormat, error) {
	root, err := findTracefs(sysPath, logger)
	if err != nil {
		return tracepointFormat{}, err
	}
	p := filepath.Join(root, "events", extfragSystem, extfragEvent, "format")
	data, err := os.ReadFile(p)
	if err != nil {
		return tracepointFormat{}, fmt.Errorf("reading the tracepoint format: %w", err)
	}
	f, err := parseTracepointFormat(data)
	if err != nil {
		return f, fmt.Errorf("%s: %w", p, err)
	}
	return f, nil
}

// findTracefs returns the tracefs directory that has the extfrag event:
// <sysfs>/kernel/tracing or the older <sysfs>/kernel/debug/tracing. When
// neither has it and tracefs is not mounted on a real sysfs, it mounts
// tracefs at kernel/tracing (as root, in the exporter's mount namespace), as
// perf and bpftrace do.
func findTracefs(sysPath string, logger log.Logger) (string, error) {
	rel := filepath.Join("events", extfragSystem, extfragEvent, "format")
	tracing := filepath.Join(sysPath, "kernel", "tracing")
	candidates := []string{tracing, filepath.Join(sysPath, "kernel", "debug", "tracing")}
	var firstErr error
	for _, dir := range candidates {
		_, err := os.Stat(filepath.Join(dir, rel))
		if err == nil {
			return dir, nil
		}
		if errors.Is(err, fs.ErrPermission) {
			return "", fmt.Errorf("reading the tracepoint format: %w (tracefs is root only: run as root, or turn off --collector.extfrag)", err)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("reading the tracepoint format: %w", err)
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	mounted, err := mountTracefs(tracing)
	if err != nil {
		return "", fmt.Errorf("tracefs is not mounted at %s and mounting it failed: %w", tracing, err)
	}
	if mounted {
		level.Info(logger).Log("msg", "mounted tracefs", "path", tracing)
		_, err := os.Stat(filepath.Join(tracing, rel))
		if err == nil {
			return tracing, nil
		}
		firstErr = err
	}
	return "", fmt.Errorf("no tracepoint %s:%s (a kernel without it, or tracefs not mounted): %w", extfragSystem, extfragEvent, firstErr)
}

// mountTracefs mounts tracefs at dir when dir is an empty directory of a
// real sysfs (not a fixture, not something already mounted there).
func mountTracefs(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type != unix.SYSFS_MAGIC {
		return false, nil // a fixture, or a tracefs without the event
	}
	if err := unix.Mount("tracefs", dir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return false, fmt.Errorf("mount -t tracefs %s: %w (needs CAP_SYS_ADMIN; or mount it on the host)", dir, err)
	}
	return true, nil
}

func (c *extfragCollector) update(_ *scrape, out *samples) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counter == nil && !c.closed && time.Since(c.triedAt) >= extfragRetry {
		c.setup()
	}
	if c.counter == nil {
		return c.err
	}
	if err := c.counter.read(); err != nil {
		return err
	}
	out.add(extfragPageblockOrderDesc, prometheus.GaugeValue, float64(c.order))
	for a := range extfragMaxTypes {
		for f := range extfragMaxTypes {
			if a == f {
				continue
			}
			var n [2][2]uint64 // [fragmenting][claimed]
			for frag := range 2 {
				for claimed := range 2 {
					n[frag][claimed] = c.counter.value(extfragIndex(a, f, frag == 1, claimed == 1))
				}
			}
			if (a >= extfragPCPTypes || f >= extfragPCPTypes) && n == ([2][2]uint64{}) {
				continue
			}
			al, fl := c.typeLabel[a], c.typeLabel[f]
			out.add(extfragEventsDesc, prometheus.CounterValue, float64(n[0][0]+n[0][1]), al, fl, "false")
			out.add(extfragEventsDesc, prometheus.CounterValue, float64(n[1][0]+n[1][1]), al, fl, "true")
			out.add(extfragClaimsDesc, prometheus.CounterValue, float64(n[0][1]+n[1][1]), al, fl)
		}
	}
	return nil
}

func (c *extfragCollector) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.counter == nil {
		return nil
	}
	err := c.counter.close()
	c.counter = nil
	return err
}
