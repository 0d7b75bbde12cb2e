package collector

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/memfrag/memfrag_exporter/fragmentation"
	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// /proc/pagetypeinfo breaks buddyinfo's free blocks down by migrate type and
// counts the pageblocks of each type: it shows whether free memory sits in
// Movable pageblocks (compaction can help) or unmovable allocations are
// scattered over many pageblocks (it cannot).
//
// Reading it is not free: the kernel walks every free list holding the zone
// lock with interrupts off (mm/vmstat.c pagetypeinfo_showfree_print), which
// takes tens of milliseconds on a fragmented machine and delays allocations
// on that zone meanwhile. Hence the collector is opt-in, reads the file at
// most once per MinInterval and serves the last result in between.

// DefaultPagetypeinfoMinInterval is the default minimum interval between two
// reads of /proc/pagetypeinfo. Measured reads take 0.3-0.6 ms on a calm
// machine and 5-10 ms (median) to 42 ms (worst) on a fragmented, busy one;
// the issue measured 10-28 ms. Pageblock migrate types change
// over minutes, so a minute of staleness loses nothing a human acts on, while
// it keeps the zone-lock time near 0.05% even when two Prometheus replicas
// scrape every 15 s (without the cache: 8 reads a minute, ~0.4%).
const DefaultPagetypeinfoMinInterval = time.Minute

// pagetypeinfoCap is the count at which kernels since 5.4 stop walking a free
// list and print ">100000" (mm/vmstat.c, commit 93b3a674485f); uncapped
// counts are then at most 99999, so a count of exactly this value is a cap.
const pagetypeinfoCap = 100000

var (
	pagetypeFreeDesc = newDesc(namespace+"_pagetype_free_blocks",
		"Free blocks of 2^order pages on the zone's free list of this migrate type (/proc/pagetypeinfo). Kernels since 5.4 stop counting a list at 100000 and print >100000: such a value is a lower bound and is flagged by memfrag_pagetype_free_blocks_capped.",
		[]string{"numa_node", "zone", "migratetype", "order"})
	pagetypeCappedDesc = newDesc(namespace+"_pagetype_free_blocks_capped",
		"Present (value 1) only for a free list the kernel stopped counting at its cap: the matching memfrag_pagetype_free_blocks is a lower bound, not an exact count.",
		[]string{"numa_node", "zone", "migratetype", "order"})
	pageblocksDesc = newDesc(namespace+"_pageblocks",
		"Pageblocks of this migrate type in the zone (/proc/pagetypeinfo). Many Unmovable/Reclaimable pageblocks relative to the unmovable memory in use means unmovable pages are scattered, which compaction cannot undo.",
		[]string{"numa_node", "zone", "migratetype"})
	pageblockOrderDesc = newDesc(namespace+"_pageblock_order",
		"The kernel's pageblock order: a pageblock (the unit migrate types are assigned to) holds 2^order pages.", nil)
	pagetypeReadDurationDesc = newDesc(namespace+"_pagetypeinfo_read_duration_seconds",
		"How long the last read of /proc/pagetypeinfo took; the kernel holds the zone lock for most of it.", nil)
	pagetypeReadTimeDesc = newDesc(namespace+"_pagetypeinfo_last_read_timestamp_seconds",
		"When the served pagetypeinfo values were read: the file is read at most once per --collector.pagetypeinfo.min-interval and the result served from cache in between.", nil)
)

type pagetypeinfoCollector struct {
	file        *procfile.File
	minInterval time.Duration
	now         func() time.Time

	parsed   pagetypeinfo
	readAt   time.Time // zero until the first read
	duration time.Duration
	err      error // outcome of the last read, served until the next one
}

func newPagetypeinfo(cfg Config, _ log.Logger) (source, error) {
	interval := cfg.Pagetypeinfo.MinInterval
	if interval < 0 {
		return nil, fmt.Errorf("pagetypeinfo minimum interval %v is negative", interval)
	}
	return &pagetypeinfoCollector{
		file:        procfile.NewSlow(filepath.Join(cfg.ProcPath, "pagetypeinfo")),
		minInterval: interval,
		now:         time.Now,
	}, nil
}

func (c *pagetypeinfoCollector) update(_ *scrape, out *samples) error {
	if now := c.now(); c.readAt.IsZero() || now.Sub(c.readAt) >= c.minInterval {
		// A failed read is also served until the interval ends: the file is
		// touched at most once per interval whatever happened last time.
		c.readAt = now
		c.err = c.file.Do(func(data []byte) error { return c.parsed.parse(data) })
		c.duration = c.now().Sub(now)
		if errors.Is(c.err, fs.ErrPermission) {
			c.err = fmt.Errorf("%w (the file is mode 0400: run as root or turn off --collector.pagetypeinfo)", c.err)
		}
	}
	out.add(pagetypeReadDurationDesc, prometheus.GaugeValue, c.duration.Seconds())
	if c.err != nil {
		return c.err
	}
	out.add(pagetypeReadTimeDesc, prometheus.GaugeValue, float64(c.readAt.UnixNano())/1e9)
	out.add(pageblockOrderDesc, prometheus.GaugeValue, float64(c.parsed.pageblockOrder))
	for i := range c.parsed.free {
		l := &c.parsed.free[i]
		for k, n := range l.counts {
			o := orderLabels[k]
			out.add(pagetypeFreeDesc, prometheus.GaugeValue, float64(n), l.node, l.zone, l.migratetype, o)
			if l.capped&(1<<k) != 0 {
				out.add(pagetypeCappedDesc, prometheus.GaugeValue, 1, l.node, l.zone, l.migratetype, o)
			}
		}
	}
	for i := range c.parsed.blocks {
		b := &c.parsed.blocks[i]
		out.add(pageblocksDesc, prometheus.GaugeValue, float64(b.count), b.node, b.zone, b.migratetype)
	}
	return nil
}

func (c *pagetypeinfoCollector) close() error { return c.file.Close() }

// errMalformedPagetypeinfo is wrapped by every parse error of pagetypeinfo.
var errMalformedPagetypeinfo = errors.New("malformed pagetypeinfo")

// pagetypeinfo is one parse of /proc/pagetypeinfo. Its storage is reused by
// the next parse, so parsing the same machine's file again allocates nothing.
type pagetypeinfo struct {
	pageblockOrder int
	free           []pagetypeFree   // one per node, zone and migrate type
	blocks         []pagetypeBlocks // one per node, zone and migrate type

	types []string           // migrate types of the current block-count header
	seen  map[ptKey]struct{} // rejects a repeated row: it would be a duplicate series
}

type pagetypeFree struct {
	node, zone, migratetype string
	counts                  []uint64 // counts[k]: free blocks of order k
	capped                  uint64   // bit k set: counts[k] is the kernel's cap, a lower bound
}

type pagetypeBlocks struct {
	node, zone, migratetype string
	count                   uint64
}

type ptField uint8

const (
	ptFree ptField = iota + 1
	ptBlocks
)

type ptKey struct {
	section         ptField
	node, zone, mig string
}

// maxPagetypeCount bounds a count so it stays exact as a float64 and below
// any real machine (2^50 pages is 4 EiB of 4 KiB pages).
const maxPagetypeCount = 1 << 50

// maxMigrateTypes bounds the columns of the block-count table; kernels have 4-7.
const maxMigrateTypes = 32

type ptSection int

const (
	ptNone ptSection = iota
	ptSectionFree
	ptSectionBlocks
	ptSectionSkip // "Number of mixed blocks" (page_owner): not exposed
)

// The kernel's headers (mm/vmstat.c, mm/page_owner.c), unchanged since 2.6.24.
var (
	ptHdrOrder  = []byte("Page block order:")
	ptHdrPages  = []byte("Pages per block:")
	ptHdrFree   = []byte("Free pages count per migrate type at order")
	ptHdrBlocks = []byte("Number of blocks type")
	ptHdrMixed  = []byte("Number of mixed blocks")
)

// parse reads the content of /proc/pagetypeinfo into p. The file repeats, for
// each NUMA node with memory: the pageblock order, the free-list table and
// the pageblock table (and, with page_owner, a table of mixed pageblocks,
// which is skipped). Anything unexpected is an error wrapping
// errMalformedPagetypeinfo; p's content is then not to be used.
func (p *pagetypeinfo) parse(data []byte) error {
	p.pageblockOrder = -1
	p.free = p.free[:0]
	p.blocks = p.blocks[:0]
	p.types = p.types[:0]
	if p.seen == nil {
		p.seen = make(map[ptKey]struct{})
	}
	clear(p.seen)
	orders := -1
	section := ptNone
	headerOrder := -1 // the current node's "Page block order"
	for lineNo := 1; len(data) > 0; lineNo++ {
		var line []byte
		line, data = procfile.CutLine(data)
		line = bytes.TrimRight(line, " \t\r")
		var err error
		switch {
		case len(line) == 0:
			continue
		case bytes.HasPrefix(line, ptHdrOrder):
			headerOrder, err = p.parseOrderHeader(line[len(ptHdrOrder):])
			section = ptNone
		case bytes.HasPrefix(line, ptHdrPages):
			err = checkPagesPerBlock(line[len(ptHdrPages):], headerOrder)
		case headerOrder < 0:
			err = fmt.Errorf("%q before %q", line, ptHdrOrder)
		case bytes.HasPrefix(line, ptHdrFree):
			section = ptSectionFree
			orders, err = parseOrderColumns(line[len(ptHdrFree):], orders)
		case bytes.HasPrefix(line, ptHdrBlocks):
			section = ptSectionBlocks
			err = p.parseTypeColumns(line[len(ptHdrBlocks):])
		case bytes.HasPrefix(line, ptHdrMixed):
			section = ptSectionSkip
		case !bytes.HasPrefix(line, []byte("Node ")):
			err = fmt.Errorf("unexpected line %q", line)
		case section == ptSectionFree:
			err = p.parseFreeRow(line, orders)
		case section == ptSectionBlocks:
			err = p.parseBlocksRow(line)
		case section == ptSectionSkip:
		default:
			err = fmt.Errorf("row %q outside a table", line)
		}
		if err != nil {
			return fmt.Errorf("%w: line %d: %w", errMalformedPagetypeinfo, lineNo, err)
		}
	}
	switch {
	case p.pageblockOrder < 0:
		return fmt.Errorf("%w: no %q", errMalformedPagetypeinfo, ptHdrOrder)
	case len(p.free) == 0:
		return fmt.Errorf("%w: no free-list rows", errMalformedPagetypeinfo)
	case len(p.blocks) == 0:
		return fmt.Errorf("%w: no pageblock rows", errMalformedPagetypeinfo)
	}
	return nil
}

func (p *pagetypeinfo) parseOrderHeader(rest []byte) (int, error) {
	f := procfile.Fields{Rest: rest}
	v, ok := procfile.ParseUint(f.Next())
	if !ok || v >= 63 || f.Next() != nil {
		return -1, fmt.Errorf("bad pageblock order %q", rest)
	}
	if p.pageblockOrder >= 0 && int(v) != p.pageblockOrder {
		return -1, fmt.Errorf("pageblock order %d differs from an earlier node's %d", v, p.pageblockOrder)
	}
	p.pageblockOrder = int(v)
	return int(v), nil
}

func checkPagesPerBlock(rest []byte, order int) error {
	f := procfile.Fields{Rest: rest}
	v, ok := procfile.ParseUint(f.Next())
	if !ok || f.Next() != nil || order < 0 || v != 1<<order {
		return fmt.Errorf("pages per block %q does not match pageblock order %d", rest, order)
	}
	return nil
}

// parseOrderColumns checks the free table's columns are the orders 0..N-1,
// and the same N as an earlier node's table.
func parseOrderColumns(rest []byte, want int) (int, error) {
	f := procfile.Fields{Rest: rest}
	n := 0
	for w := f.Next(); w != nil; w = f.Next() {
		v, ok := procfile.ParseUint(w)
		if !ok || v != uint64(n) {
			return -1, fmt.Errorf("order column %d reads %q", n, w)
		}
		n++
	}
	switch {
	case n == 0 || n > fragmentation.MaxOrders:
		return -1, fmt.Errorf("%d order columns, want 1..%d", n, fragmentation.MaxOrders)
	case want >= 0 && n != want:
		return -1, fmt.Errorf("%d order columns, an earlier node had %d", n, want)
	}
	return n, nil
}

func (p *pagetypeinfo) parseTypeColumns(rest []byte) error {
	f := procfile.Fields{Rest: rest}
	p.types = p.types[:0]
	for w := f.Next(); w != nil; w = f.Next() {
		if len(p.types) == maxMigrateTypes {
			return fmt.Errorf("more than %d migrate types", maxMigrateTypes)
		}
		if !procfile.IsName(w) {
			return fmt.Errorf("migrate type %q is not a kernel name", w)
		}
		for _, t := range p.types {
			if t == string(w) {
				return fmt.Errorf("migrate type %q twice", w)
			}
		}
		p.types = procfile.Grow(p.types)
		setString(&p.types[len(p.types)-1], w)
	}
	if len(p.types) == 0 {
		return errors.New("no migrate types in the pageblock header")
	}
	return nil
}

// parseFreeRow reads "Node 0, zone DMA32, type Movable 1 3 >100000 ...".
func (p *pagetypeinfo) parseFreeRow(line []byte, orders int) error {
	f := procfile.Fields{Rest: line}
	node, zone, err := procfile.NodeZone(&f)
	if err != nil {
		return err
	}
	if len(zone) < 2 || zone[len(zone)-1] != ',' {
		return fmt.Errorf("want zone name and comma, got %q", zone)
	}
	zone = zone[:len(zone)-1]
	if !procfile.IsName(zone) {
		return fmt.Errorf("zone name %q is not a kernel name", zone)
	}
	if w := f.Next(); string(w) != "type" {
		return fmt.Errorf("want %q, got %q", "type", w)
	}
	mig := f.Next()
	if !procfile.IsName(mig) {
		return fmt.Errorf("migrate type %q is not a kernel name", mig)
	}
	p.free = procfile.Grow(p.free)
	l := &p.free[len(p.free)-1]
	setString(&l.node, node)
	setString(&l.zone, zone)
	setString(&l.migratetype, mig)
	l.counts, l.capped = l.counts[:0], 0
	for w := f.Next(); w != nil; w = f.Next() {
		if len(l.counts) == orders {
			return fmt.Errorf("more than %d counts", orders)
		}
		capped := w[0] == '>'
		if capped {
			w = w[1:]
		}
		v, ok := procfile.ParseUint(w)
		if !ok || v > maxPagetypeCount {
			return fmt.Errorf("free count %q is not a number", w)
		}
		if capped {
			l.capped |= 1 << len(l.counts)
		}
		l.counts = append(l.counts, v)
	}
	if len(l.counts) != orders {
		return fmt.Errorf("%d counts, want %d", len(l.counts), orders)
	}
	return p.once(ptFree, l.node, l.zone, l.migratetype)
}

// parseBlocksRow reads "Node 0, zone DMA32 0 1528 0 ..." with one count per
// migrate type of the header.
func (p *pagetypeinfo) parseBlocksRow(line []byte) error {
	f := procfile.Fields{Rest: line}
	node, zone, err := procfile.NodeZone(&f)
	if err != nil {
		return err
	}
	if !procfile.IsName(zone) {
		return fmt.Errorf("zone name %q is not a kernel name", zone)
	}
	i := 0
	for w := f.Next(); w != nil; w = f.Next() {
		if i == len(p.types) {
			return fmt.Errorf("more than %d pageblock counts", len(p.types))
		}
		v, ok := procfile.ParseUint(w)
		if !ok || v > maxPagetypeCount {
			return fmt.Errorf("pageblock count %q is not a number", w)
		}
		p.blocks = procfile.Grow(p.blocks)
		b := &p.blocks[len(p.blocks)-1]
		setString(&b.node, node)
		setString(&b.zone, zone)
		b.migratetype = p.types[i]
		b.count = v
		if err := p.once(ptBlocks, b.node, b.zone, b.migratetype); err != nil {
			return err
		}
		i++
	}
	if i != len(p.types) {
		return fmt.Errorf("%d pageblock counts, want %d", i, len(p.types))
	}
	return nil
}

func (p *pagetypeinfo) once(section ptField, node, zone, mig string) error {
	k := ptKey{section, node, zone, mig}
	if _, dup := p.seen[k]; dup {
		return fmt.Errorf("node %s zone %s type %s listed twice", node, zone, mig)
	}
	p.seen[k] = struct{}{}
	return nil
}

// setString stores b in *s, allocating only when the content changed: the
// same machine prints the same names on every read.
func setString(s *string, b []byte) {
	if *s != string(b) {
		*s = string(b)
	}
}
