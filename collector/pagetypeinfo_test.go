package collector

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/memfrag/memfrag_exporter/fragmentation"
	"github.com/memfrag/memfrag_exporter/internal/livetest"
	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

var updateGolden = flag.Bool("update-pagetypeinfo", false, "rewrite testdata/pagetypeinfo/*.golden")

// dump renders a parse as text for the golden files: one line per row,
// capped counts marked the way the kernel prints them.
func (p *pagetypeinfo) dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pageblock_order %d\n", p.pageblockOrder)
	for _, l := range p.free {
		fmt.Fprintf(&b, "free node=%s zone=%s type=%s", l.node, l.zone, l.migratetype)
		for k, n := range l.counts {
			if l.capped&(1<<k) != 0 {
				fmt.Fprintf(&b, " >%d", n)
			} else {
				fmt.Fprintf(&b, " %d", n)
			}
		}
		b.WriteByte('\n')
	}
	for _, bl := range p.blocks {
		fmt.Fprintf(&b, "blocks node=%s zone=%s type=%s %d\n", bl.node, bl.zone, bl.migratetype, bl.count)
	}
	return b.String()
}

func pagetypeinfoFixtures(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/pagetypeinfo/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no pagetypeinfo fixtures: %v", err)
	}
	return files
}

func TestParsePagetypeinfoGolden(t *testing.T) {
	for _, file := range pagetypeinfoFixtures(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var p pagetypeinfo
			if err := p.parse(data); err != nil {
				t.Fatalf("parse: %v", err)
			}
			got := p.dump()
			golden := strings.TrimSuffix(file, ".txt") + ".golden"
			if *updateGolden {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update-pagetypeinfo to create it)", err)
			}
			if got != string(want) {
				t.Errorf("parse differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// TestParsePagetypeinfoFacts pins facts each fixture is there for, so a
// regenerated golden file cannot silently lose them.
func TestParsePagetypeinfoFacts(t *testing.T) {
	tests := []struct {
		file                   string
		order, orders          int
		freeRows, blockRows    int
		capped                 int
		someNode, someZone, mt string
	}{
		{"linux-2.6.32-doc.txt", 9, 11, 10, 10, 0, "0", "DMA32", "Reserve"},
		{"linux-3.10-arm-cma-highmem.txt", 10, 11, 12, 12, 0, "0", "HighMem", "CMA"},
		{"linux-4.18-x86_64.txt", 9, 11, 15, 15, 0, "0", "Normal", "HighAtomic"},
		{"linux-5.15-numa2-capped.txt", 9, 11, 24, 24, 4, "1", "Normal", "Isolate"},
		{"linux-6.6-arm64-64k.txt", 13, 14, 18, 18, 0, "0", "Movable", "CMA"},
		{"linux-6.18-x86_64.txt", 9, 11, 15, 15, 0, "0", "Normal", "Reclaimable"},
		{"numa16.txt", 9, 11, 80, 80, 0, "15", "Normal", "Isolate"},
		{"page-owner-mixed.txt", 9, 11, 18, 18, 0, "1", "Normal", "CMA"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/pagetypeinfo", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var p pagetypeinfo
			if err := p.parse(data); err != nil {
				t.Fatal(err)
			}
			capped, found := 0, false
			for _, l := range p.free {
				if len(l.counts) != tt.orders {
					t.Errorf("%s/%s/%s: %d orders, want %d", l.node, l.zone, l.migratetype, len(l.counts), tt.orders)
				}
				for k := range l.counts {
					if l.capped&(1<<k) != 0 {
						capped++
						if l.counts[k] != pagetypeinfoCap {
							t.Errorf("capped count %d, want the kernel's cap %d", l.counts[k], pagetypeinfoCap)
						}
					}
				}
				found = found || (l.node == tt.someNode && l.zone == tt.someZone && l.migratetype == tt.mt)
			}
			if p.pageblockOrder != tt.order || len(p.free) != tt.freeRows || len(p.blocks) != tt.blockRows || capped != tt.capped {
				t.Errorf("order %d, %d free rows, %d block rows, %d capped; want %d, %d, %d, %d",
					p.pageblockOrder, len(p.free), len(p.blocks), capped, tt.order, tt.freeRows, tt.blockRows, tt.capped)
			}
			if !found {
				t.Errorf("no free row for node %s zone %s type %s", tt.someNode, tt.someZone, tt.mt)
			}
		})
	}
}

func TestParsePagetypeinfoMalformed(t *testing.T) {
	const (
		hdr     = "Page block order: 9\nPages per block:  512\n\n"
		freeHdr = "Free pages count per migrate type at order       0      1 \n"
		row     = "Node    0, zone   Normal, type      Movable      1      2 \n"
		blkHdr  = "\nNumber of blocks type     Unmovable      Movable \n"
		blkRow  = "Node 0, zone   Normal            1            2 \n"
	)
	valid := hdr + freeHdr + row + blkHdr + blkRow
	var p pagetypeinfo
	if err := p.parse([]byte(valid)); err != nil {
		t.Fatalf("the base case must parse: %v", err)
	}
	tests := map[string]string{
		"empty":                 "",
		"no header":             freeHdr + row + blkHdr + blkRow,
		"no free rows":          hdr + freeHdr + blkHdr + blkRow,
		"no block rows":         hdr + freeHdr + row + blkHdr,
		"bad order":             "Page block order: x\n" + freeHdr + row + blkHdr + blkRow,
		"huge order":            "Page block order: 99\n" + freeHdr + row + blkHdr + blkRow,
		"pages mismatch":        "Page block order: 9\nPages per block:  256\n" + freeHdr + row + blkHdr + blkRow,
		"orders differ by node": valid + "Page block order: 10\n" + freeHdr + row + blkHdr + blkRow,
		"order columns skip":    hdr + "Free pages count per migrate type at order 0 2\n" + row + blkHdr + blkRow,
		"no order columns":      hdr + "Free pages count per migrate type at order\n" + row + blkHdr + blkRow,
		"too few counts":        hdr + freeHdr + "Node 0, zone Normal, type Movable 1\n" + blkHdr + blkRow,
		"too many counts":       hdr + freeHdr + "Node 0, zone Normal, type Movable 1 2 3\n" + blkHdr + blkRow,
		"negative count":        hdr + freeHdr + "Node 0, zone Normal, type Movable -1 2\n" + blkHdr + blkRow,
		"lone cap sign":         hdr + freeHdr + "Node 0, zone Normal, type Movable > 2\n" + blkHdr + blkRow,
		"huge count":            hdr + freeHdr + "Node 0, zone Normal, type Movable 99999999999999999 2\n" + blkHdr + blkRow,
		"no zone comma":         hdr + freeHdr + "Node 0, zone Normal type Movable 1 2\n" + blkHdr + blkRow,
		"no node comma":         hdr + freeHdr + "Node 0 zone Normal, type Movable 1 2\n" + blkHdr + blkRow,
		"bad node id":           hdr + freeHdr + "Node x, zone Normal, type Movable 1 2\n" + blkHdr + blkRow,
		"missing type word":     hdr + freeHdr + "Node 0, zone Normal, kind Movable 1 2\n" + blkHdr + blkRow,
		"duplicate free row":    hdr + freeHdr + row + row + blkHdr + blkRow,
		"duplicate block row":   hdr + freeHdr + row + blkHdr + blkRow + blkRow,
		"row outside table":     hdr + row + freeHdr + row + blkHdr + blkRow,
		"unknown line":          valid + "Something new\n",
		"block counts short":    hdr + freeHdr + row + blkHdr + "Node 0, zone Normal 1\n",
		"block counts long":     hdr + freeHdr + row + blkHdr + "Node 0, zone Normal 1 2 3\n",
		"no migrate types":      hdr + freeHdr + row + "Number of blocks type\n" + blkRow,
		"duplicate type column": hdr + freeHdr + row + "Number of blocks type Movable Movable\n" + blkRow,
		"bad block count":       hdr + freeHdr + row + blkHdr + "Node 0, zone Normal 1 >2\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			// Parse into storage of an earlier good parse: leftovers must
			// not make a bad file look good.
			p := pagetypeinfo{}
			if err := p.parse([]byte(valid)); err != nil {
				t.Fatal(err)
			}
			err := p.parse([]byte(in))
			if !errors.Is(err, errMalformedPagetypeinfo) {
				t.Errorf("parse(%q) = %v, want an error wrapping errMalformedPagetypeinfo", in, err)
			}
		})
	}
}

// TestPagetypeinfoCollector checks the exposition, that the file is read at
// most once per interval, and that the cap shows as a lower bound.
func TestPagetypeinfoCollector(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pagetypeinfo")
	write := func(movable0 string) {
		t.Helper()
		content := "Page block order: 9\nPages per block:  512\n\n" +
			"Free pages count per migrate type at order       0      1 \n" +
			"Node   12, zone   Normal, type      Movable " + movable0 + "      2 \n" +
			"Node   12, zone   Normal, type          CMA      0      1 \n" +
			"\nNumber of blocks type     Unmovable      Movable \n" +
			"Node 12, zone   Normal            3          500 \n"
		if err := os.WriteFile(file, []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	write(">100000")
	now := time.Unix(1700000000, 0)
	src, err := newPagetypeinfo(Config{ProcPath: dir, Pagetypeinfo: PagetypeinfoConfig{MinInterval: time.Minute}}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	c := src.(*pagetypeinfoCollector)
	defer c.close()
	c.now = func() time.Time { return now }

	want := `
# HELP memfrag_pageblock_order The kernel's pageblock order: a pageblock (the unit migrate types are assigned to) holds 2^order pages.
# TYPE memfrag_pageblock_order gauge
memfrag_pageblock_order 9
# HELP memfrag_pageblocks Pageblocks of this migrate type in the zone (/proc/pagetypeinfo). Many Unmovable/Reclaimable pageblocks relative to the unmovable memory in use means unmovable pages are scattered, which compaction cannot undo.
# TYPE memfrag_pageblocks gauge
memfrag_pageblocks{migratetype="Movable",numa_node="12",zone="Normal"} 500
memfrag_pageblocks{migratetype="Unmovable",numa_node="12",zone="Normal"} 3
# HELP memfrag_pagetype_free_blocks Free blocks of 2^order pages on the zone's free list of this migrate type (/proc/pagetypeinfo). Kernels since 5.4 stop counting a list at 100000 and print >100000: such a value is a lower bound and is flagged by memfrag_pagetype_free_blocks_capped.
# TYPE memfrag_pagetype_free_blocks gauge
memfrag_pagetype_free_blocks{migratetype="CMA",numa_node="12",order="0",zone="Normal"} 0
memfrag_pagetype_free_blocks{migratetype="CMA",numa_node="12",order="1",zone="Normal"} 1
memfrag_pagetype_free_blocks{migratetype="Movable",numa_node="12",order="0",zone="Normal"} %s
memfrag_pagetype_free_blocks{migratetype="Movable",numa_node="12",order="1",zone="Normal"} 2
%s# HELP memfrag_pagetypeinfo_last_read_timestamp_seconds When the served pagetypeinfo values were read: the file is read at most once per --collector.pagetypeinfo.min-interval and the result served from cache in between.
# TYPE memfrag_pagetypeinfo_last_read_timestamp_seconds gauge
memfrag_pagetypeinfo_last_read_timestamp_seconds %s
`
	const capped = `# HELP memfrag_pagetype_free_blocks_capped Present (value 1) only for a free list the kernel stopped counting at its cap: the matching memfrag_pagetype_free_blocks is a lower bound, not an exact count.
# TYPE memfrag_pagetype_free_blocks_capped gauge
memfrag_pagetype_free_blocks_capped{migratetype="Movable",numa_node="12",order="0",zone="Normal"} 1
`
	names := []string{"memfrag_pageblock_order", "memfrag_pageblocks", "memfrag_pagetype_free_blocks",
		"memfrag_pagetype_free_blocks_capped", "memfrag_pagetypeinfo_last_read_timestamp_seconds"}
	check := func(step, value, cappedPart, readAt string) {
		t.Helper()
		coll := singleSource{c}
		if err := testutil.CollectAndCompare(coll, strings.NewReader(fmt.Sprintf(want, value, cappedPart, readAt)), names...); err != nil {
			t.Errorf("%s: %v", step, err)
		}
		if problems, err := testutil.CollectAndLint(coll); err != nil || len(problems) > 0 {
			t.Errorf("%s: lint: %v %v", step, err, problems)
		}
	}
	check("first read", "100000", capped, "1.7e+09")

	write("     42")
	now = now.Add(59 * time.Second)
	check("within the interval: cached", "100000", capped, "1.7e+09")

	now = now.Add(time.Second)
	check("interval over: read again", "42", "", "1.70000006e+09")
}

func TestPagetypeinfoMissingFile(t *testing.T) {
	src, err := newPagetypeinfo(Config{ProcPath: t.TempDir()}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	var out samples
	if err := src.update(nil, &out); !errors.Is(err, errNotExist) {
		t.Errorf("update without the file = %v, want not-exist", err)
	}
}

func TestPagetypeinfoNegativeInterval(t *testing.T) {
	if _, err := newPagetypeinfo(Config{Pagetypeinfo: PagetypeinfoConfig{MinInterval: -time.Second}}, log.NewNopLogger()); err == nil {
		t.Error("a negative interval must be refused")
	}
}

// TestPagetypeinfoLive parses the running kernel's file and checks it
// against /proc/buddyinfo: summed over migrate types, the free lists hold
// what buddyinfo reports. The files are read at different instants, and
// other tests may be churning memory meanwhile, so buddyinfo is read before
// and after; the test passes at once when pagetypeinfo equals either, and
// after 20 tries accepts values between the two readings give or take 2%
// (a misread column is off by far more).
func TestPagetypeinfoLive(t *testing.T) {
	livetest.Root(t)
	if _, err := os.Stat("/proc/pagetypeinfo"); err != nil {
		livetest.Skip(t, fmt.Sprintf("no /proc/pagetypeinfo: %v", err))
	}
	readBuddy := func() []fragmentation.Zone {
		bi, err := os.ReadFile("/proc/buddyinfo")
		if err != nil {
			t.Fatal(err)
		}
		zones, err := fragmentation.ParseBuddyinfo(bi, nil)
		if err != nil {
			t.Fatal(err)
		}
		return zones
	}
	var p pagetypeinfo
	var before, after []fragmentation.Zone
	for attempt := 0; attempt < 20; attempt++ {
		before = readBuddy()
		data, err := os.ReadFile("/proc/pagetypeinfo")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.parse(data); err != nil {
			t.Fatalf("parsing the live file: %v\n%s", err, data)
		}
		after = readBuddy()
		if comparePagetypeBuddy(&p, before, before, 0) == "" || comparePagetypeBuddy(&p, after, after, 0) == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	if diff := comparePagetypeBuddy(&p, before, after, 0.02); diff != "" {
		t.Errorf("pagetypeinfo disagrees with buddyinfo read around it: %s", diff)
	}
	t.Logf("memory churned during all 20 tries; pagetypeinfo agreed with buddyinfo within 2%%")
}

// comparePagetypeBuddy returns "" when every zone's free lists sum to a
// count between its buddyinfo counts in a and b, give or take slack (a
// share), else the first difference. A capped list only has to be no
// larger.
func comparePagetypeBuddy(p *pagetypeinfo, a, b []fragmentation.Zone, slack float64) string {
	if len(a) == 0 || len(a) != len(b) {
		return fmt.Sprintf("buddyinfo has %d then %d zones", len(a), len(b))
	}
	checked := 0
	for i, z := range a {
		if b[i].Node != z.Node || b[i].Name != z.Name || len(b[i].Free) != len(z.Free) {
			return "buddyinfo changed shape between reads"
		}
		sum := make([]uint64, len(z.Free))
		capped := make([]bool, len(z.Free))
		rows := 0
		for _, l := range p.free {
			if l.node != z.Node || l.zone != z.Name {
				continue
			}
			rows++
			if len(l.counts) != len(z.Free) {
				return fmt.Sprintf("node %s zone %s: %d orders, buddyinfo %d", z.Node, z.Name, len(l.counts), len(z.Free))
			}
			for k, n := range l.counts {
				sum[k] += n
				capped[k] = capped[k] || l.capped&(1<<k) != 0
			}
		}
		if rows == 0 {
			continue // buddyinfo lists unpopulated zones that pagetypeinfo skips
		}
		checked++
		for k := range sum {
			lo, hi := float64(min(z.Free[k], b[i].Free[k])), float64(max(z.Free[k], b[i].Free[k]))
			lo, hi = lo*(1-slack), hi*(1+slack)
			if capped[k] {
				lo = 0 // the kernel stopped counting: a lower bound
			}
			if s := float64(sum[k]); s < lo || s > hi {
				return fmt.Sprintf("node %s zone %s order %d: pagetypeinfo %d, buddyinfo %d..%d", z.Node, z.Name, k, sum[k], z.Free[k], b[i].Free[k])
			}
		}
	}
	if checked == 0 {
		return "no zone of buddyinfo is in pagetypeinfo"
	}
	return ""
}

func FuzzParsePagetypeinfo(f *testing.F) {
	for _, file := range pagetypeinfoFixtures(f) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("Page block order: 9\nFree pages count per migrate type at order 0\nNode 0, zone Z, type T >100000\nNumber of blocks type T\nNode 0, zone Z 1\n"))
	f.Add([]byte("Page block order: 9\nFree pages count per migrate type at order 0\nNode 0, zone Z, type Unm\xffvable 1\nNumber of blocks type Unm\xffvable\nNode 0, zone Z 1\n"))
	var reused pagetypeinfo
	f.Fuzz(func(t *testing.T, data []byte) {
		var fresh pagetypeinfo
		err := fresh.parse(data)
		rerr := reused.parse(data)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("fresh parse: %v, parse into reused storage: %v", err, rerr)
		}
		if err != nil {
			if !errors.Is(err, errMalformedPagetypeinfo) {
				t.Fatalf("error %v does not wrap errMalformedPagetypeinfo", err)
			}
			return
		}
		// Reused storage must give exactly what a fresh parse gives.
		if fresh.dump() != reused.dump() {
			t.Fatalf("reused storage parses differently:\n%s\nvs\n%s", reused.dump(), fresh.dump())
		}
		orders := len(fresh.free[0].counts)
		for _, l := range fresh.free {
			if len(l.counts) != orders || l.node == "" || !procfile.IsName([]byte(l.zone)) || !procfile.IsName([]byte(l.migratetype)) {
				t.Fatalf("bad row %+v", l)
			}
			if l.capped>>orders != 0 {
				t.Fatalf("capped bits %b beyond %d orders", l.capped, orders)
			}
			for _, n := range l.counts {
				if n > maxPagetypeCount {
					t.Fatalf("count %d out of range", n)
				}
			}
		}
		if err := rowsMatchInput(data, fresh.free); err != nil {
			t.Fatal(err)
		}
		if fresh.pageblockOrder < 0 || fresh.pageblockOrder >= 63 {
			t.Fatalf("pageblock order %d", fresh.pageblockOrder)
		}
	})
}

// rowsMatchInput checks, independently of the parser, that each free row's
// counts are the last tokens of an input line starting with "Node", the
// rows in input order: no number may come from anywhere else.
func rowsMatchInput(data []byte, rows []pagetypeFree) error {
	lines := strings.Split(string(data), "\n")
	i := 0
	for _, l := range rows {
		for ; i < len(lines); i++ {
			f := strings.Fields(lines[i])
			if strings.HasPrefix(lines[i], "Node ") && len(f) >= len(l.counts)+6 && countsEqual(f[len(f)-len(l.counts):], &l) {
				break
			}
		}
		if i == len(lines) {
			return fmt.Errorf("row %+v matches no input line", l)
		}
		i++
	}
	return nil
}

// countsEqual compares tokens with counts as numbers ("007" is 7), a
// leading ">" exactly where the row says the count is capped.
func countsEqual(tokens []string, l *pagetypeFree) bool {
	for k, tok := range tokens {
		digits := strings.TrimPrefix(tok, ">")
		if (digits != tok) != (l.capped&(1<<k) != 0) {
			return false
		}
		if strings.TrimLeft(digits, "0") != strings.TrimLeft(fmt.Sprint(l.counts[k]), "0") {
			return false
		}
	}
	return true
}

func BenchmarkParsePagetypeinfo(b *testing.B) {
	for _, name := range []string{"linux-6.18-x86_64.txt", "numa16.txt"} {
		data, err := os.ReadFile(filepath.Join("testdata/pagetypeinfo", name))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			var p pagetypeinfo
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := p.parse(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// singleSource runs one source as a prometheus.Collector for testutil.
type singleSource struct{ s source }

func (c singleSource) Describe(chan<- *prometheus.Desc) {}
func (c singleSource) Collect(ch chan<- prometheus.Metric) {
	var s scrape
	var out samples
	out.reset()
	_ = c.s.update(&s, &out)
	out.send(ch)
}

// BenchmarkPagetypeinfoLive reads and parses the running kernel's file: the
// cost a scrape pays when the cache has expired, most of it in the kernel.
func BenchmarkPagetypeinfoLive(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("/proc/pagetypeinfo is readable by root only")
	}
	src, err := newPagetypeinfo(Config{ProcPath: "/proc"}, log.NewNopLogger())
	if err != nil {
		b.Fatal(err)
	}
	c := src.(*pagetypeinfoCollector)
	defer c.close()
	benchmarkUpdate(b, c)
}
