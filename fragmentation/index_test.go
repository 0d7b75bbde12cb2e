package fragmentation

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// floatIndices are DESIGN.md's formulas in real arithmetic, written apart
// from the kernel's integer version: with n_k free blocks of order k,
// B = Σn_k, F = Σ n_k·2^k, S = Σ_{k≥o} n_k·2^(k−o).
func floatIndices(free []uint64, o int) (frag, unusable float64) {
	var B, F, S float64
	for k, n := range free {
		B += float64(n)
		F += float64(n) * math.Pow(2, float64(k))
		if k >= o {
			S += float64(n) * math.Pow(2, float64(k-o))
		}
	}
	switch {
	case B == 0:
		frag = 0
	case S > 0:
		frag = -1
	default:
		frag = 1 - (1+F/math.Pow(2, float64(o)))/B
	}
	if F == 0 {
		unusable = 1
	} else {
		unusable = (F - S*math.Pow(2, float64(o))) / F
	}
	return frag, unusable
}

var zonesUnderTest = map[string][]uint64{
	// the seed's Normal zone before drop_caches, after it, after compaction
	"seed Normal before":  {127146, 68215, 1614, 0, 0, 0, 0, 0, 0, 0, 1},
	"seed Normal dropped": {524538, 365499, 176074, 45644, 4338, 140, 6, 0, 0, 0, 1},
	"seed Normal compact": {145048, 131183, 76864, 38454, 20405, 11854, 5149, 1143, 96, 3, 1},
	"seed DMA32 before":   {32995, 4377, 762, 211, 157, 108, 68, 23, 3, 0, 0},
	"only order 0":        {1000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	"nothing free":        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	"one huge block":      {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
	"arm64 14 orders":     {4000, 2100, 900, 300, 120, 30, 8, 2, 1, 0, 0, 0, 0, 1},
	"no high orders":      {5000, 300, 20, 1, 0, 0, 0, 0, 0, 0, 0},
}

// The kernel's integer results agree with the real-arithmetic formulas to
// within the 0.001 the kernel prints (it truncates, so the integer result
// is never above the exact one by more than rounding).
func TestIndicesMatchFormulas(t *testing.T) {
	for name, free := range zonesUnderTest {
		for o := range free {
			wantFrag, wantUnusable := floatIndices(free, o)
			gotFrag := float64(FragmentationIndex(free, o)) / 1000
			gotUnusable := float64(UnusableFreeIndex(free, o)) / 1000
			if math.Abs(gotFrag-wantFrag) > 0.001 {
				t.Errorf("%s order %d: fragmentation index %.3f, formula %.6f", name, o, gotFrag, wantFrag)
			}
			if math.Abs(gotUnusable-wantUnusable) > 0.001 {
				t.Errorf("%s order %d: unusable free index %.3f, formula %.6f", name, o, gotUnusable, wantUnusable)
			}
		}
	}
}

// Values worked out by hand from the seed, the numbers the practice reasons
// with: order-4 allocations in the Normal zone before, after drop_caches and
// after compaction.
func TestSeedByHand(t *testing.T) {
	cases := []struct {
		zone           string
		order          int
		unusable, frag int64
		suitablePages  uint64
	}{
		// F = 127146 + 2·68215 + 4·1614 + 1024 = 271056; S·16 = 1024 (the one order-10 block)
		{"seed Normal before", 4, (271056 - 1024) * 1000 / 271056, -1000, 1024},
		// S·16 = 16·4338 + 32·140 + 64·6 + 1024 = 75296 of F = 2400280
		{"seed Normal dropped", 4, (2400280 - 75296) * 1000 / 2400280, -1000, 75296},
		{"seed Normal compact", 4, 458, -1000, 1208784},
		// no block of order >= 4 at all: the index says whether that is for lack of memory
		// F = 5000 + 600 + 80 + 8 = 5688, B = 5321: 1000 - (1000 + 5688·1000/16)/5321
		{"no high orders", 4, 1000, 1000 - (1000+5688*1000/16)/5321, 0},
		{"nothing free", 4, 1000, 0, 0},
		{"only order 0", 1, 1000, 1000 - (1000+1000*1000/2)/1000, 0},
	}
	for _, tc := range cases {
		free := zonesUnderTest[tc.zone]
		if got := UnusableFreeIndex(free, tc.order); got != tc.unusable {
			t.Errorf("%s: unusable(%d) = %d, want %d", tc.zone, tc.order, got, tc.unusable)
		}
		if got := FragmentationIndex(free, tc.order); got != tc.frag {
			t.Errorf("%s: fragmentation(%d) = %d, want %d", tc.zone, tc.order, got, tc.frag)
		}
		if got := SuitableFreePages(free, tc.order); got != tc.suitablePages {
			t.Errorf("%s: suitable pages(%d) = %d, want %d", tc.zone, tc.order, got, tc.suitablePages)
		}
	}
}

func TestNodeScores(t *testing.T) {
	zones := []Zone{
		{"0", "DMA", []uint64{2, 2, 2, 1, 2, 1, 1, 0, 0, 0, 2}},
		{"0", "DMA32", zonesUnderTest["seed DMA32 before"]},
		{"0", "Normal", zonesUnderTest["seed Normal before"]},
		{"1", "Normal", zonesUnderTest["nothing free"]},
	}
	infos := []ZoneInfo{
		{Node: "0", Name: "DMA", Present: 3998}, {Node: "0", Name: "DMA32", Present: 1044480},
		{Node: "0", Name: "Normal", Present: 3932160}, {Node: "0", Name: "Movable", Present: 0},
		{Node: "1", Name: "Normal", Present: 100},
	}
	// Node 0, the seed before the cure: DMA 6%·3998/4980639 → 0;
	// DMA32 100%·1044480/4980639 → 20; Normal 99%·3932160/4980639 → 78.
	// Node 1: nothing free reads 0 (extfrag_for_order), not 100.
	scores, err := NodeScores(zones, infos, 9, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []NodeScoreOf{{"0", 98}, {"1", 0}}
	if len(scores) != 2 || scores[0] != want[0] || scores[1] != want[1] {
		t.Errorf("scores %v, want %v", scores, want)
	}
	// a zone buddyinfo lists but zoneinfo lacks has no known weight
	if _, err := NodeScores(zones, infos[:2], 9, nil); err == nil {
		t.Error("missing zoneinfo zone: no error")
	}
}

func TestProactiveThresholds(t *testing.T) {
	for _, tc := range []struct{ p, low, high uint64 }{
		{20, 80, 90}, {0, 100, 100}, {100, 5, 15}, {96, 5, 15}, {90, 10, 20}, {150, 5, 15},
	} {
		low, high := ProactiveThresholds(tc.p)
		if low != tc.low || high != tc.high {
			t.Errorf("proactiveness %d: thresholds %d/%d, want %d/%d", tc.p, low, high, tc.low, tc.high)
		}
	}
}

// ZoneIndices gives, for every order, what the per-order functions give.
func checkZoneIndices(t *testing.T, free []uint64) {
	t.Helper()
	frag, unusable := make([]int64, len(free)), make([]int64, len(free))
	ZoneIndices(free, frag, unusable)
	for o := range free {
		if fi, ui := FragmentationIndex(free, o), UnusableFreeIndex(free, o); frag[o] != fi || unusable[o] != ui {
			t.Fatalf("%v order %d: ZoneIndices %d/%d, per order %d/%d", free, o, frag[o], unusable[o], fi, ui)
		}
	}
}

func TestZoneIndices(t *testing.T) {
	for name, free := range zonesUnderTest {
		t.Run(name, func(t *testing.T) { checkZoneIndices(t, free) })
	}
	for _, free := range [][]uint64{{0, 0, 0}, {1}, {0, 0, 1}, {5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 << 20}} {
		checkZoneIndices(t, free)
	}
}

func BenchmarkZoneIndices(b *testing.B) {
	free := zonesUnderTest["seed Normal compact"]
	frag, unusable := make([]int64, len(free)), make([]int64, len(free))
	b.ReportAllocs()
	for b.Loop() {
		ZoneIndices(free, frag, unusable)
	}
}

func BenchmarkIndices(b *testing.B) {
	free := zonesUnderTest["seed Normal compact"]
	b.ReportAllocs()
	var sink int64
	for b.Loop() {
		for o := range free {
			sink += FragmentationIndex(free, o) + UnusableFreeIndex(free, o)
		}
	}
	_ = sink
}

func TestHugePageOrder(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		pageSize      int
		order         int
		fromSysfs     bool
	}{
		{"x86_64 2 MiB", "2097152\n", 4096, 9, true},
		{"arm64 64 KiB pages, 512 MiB", "536870912\n", 65536, 13, true},
		{"arm64 16 KiB pages, 32 MiB", "33554432", 16384, 11, true},
		{"absent: PAGE_SHIFT-3", "", 4096, 9, false},
		{"absent, 64 KiB pages", "", 65536, 13, false},
		{"garbage", "lots\n", 4096, 9, false},
		{"not a power of two", "3000000\n", 4096, 9, false},
		{"smaller than a page", "1024\n", 4096, 9, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := t.TempDir()
			if tc.content != "" {
				dir := filepath.Join(sys, "kernel/mm/transparent_hugepage")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "hpage_pmd_size"), []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			order, fromSysfs := HugePageOrder(sys, tc.pageSize)
			if order != tc.order || fromSysfs != tc.fromSysfs {
				t.Errorf("HugePageOrder = %d, %v; want %d, %v", order, fromSysfs, tc.order, tc.fromSysfs)
			}
		})
	}
}

// The merge walk for kernel-ordered files and the zone-by-zone scoring for
// any order agree, on a 64-node machine and with nodes out of order (which
// takes the second path), including nodes that zoneinfo has and buddyinfo
// lacks and nodes 2 and 10, which sort the other way as strings.
func TestNodeScoresOrders(t *testing.T) {
	var zones []Zone
	var infos []ZoneInfo
	for n := 0; n < 64; n++ {
		node := strconv.Itoa(n)
		infos = append(infos, ZoneInfo{Node: node, Name: "DMA32", Present: uint64(1000 + n)},
			ZoneInfo{Node: node, Name: "Normal", Present: uint64(50000 + 7*n)}, ZoneInfo{Node: node, Name: "Movable"})
		if n%5 == 3 {
			continue // a memoryless node: in zoneinfo, not in buddyinfo
		}
		zones = append(zones, Zone{node, "DMA32", []uint64{uint64(n), 3, 2, 1, 0, 0, 0, 0, 0, 1, 0}},
			Zone{node, "Normal", []uint64{100, uint64(n % 7), 30, 20, 10, 5, 2, 1, 0, uint64(n % 3), 1}})
	}
	ordered, err := NodeScores(zones, infos, 9, nil)
	if err != nil {
		t.Fatal(err)
	}
	anyOrder, err := nodeScoresAnyOrder(zones, infos, 9, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ordered, anyOrder) || len(ordered) != 64-13 {
		t.Fatalf("merge walk %v\nzone by zone %v", ordered, anyOrder)
	}
	nonZero := 0
	for _, s := range ordered {
		if s.Score > 0 {
			nonZero++
		}
	}
	if nonZero == 0 {
		t.Fatal("every score is 0: the comparison shows nothing")
	}
	// Reversed nodes take the other path and give the same scores, reversed.
	rz, ri := slices.Clone(zones), slices.Clone(infos)
	slices.Reverse(rz)
	slices.Reverse(ri)
	rev, err := NodeScores(rz, ri, 9, nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(rev)
	if !slices.Equal(rev, ordered) {
		t.Errorf("reversed input: %v, want %v", rev, ordered)
	}
	// A buddyinfo zone missing from zoneinfo is an error on both paths.
	if _, err := NodeScores(zones, slices.Delete(slices.Clone(infos), 3, 4), 9, nil); err == nil {
		t.Error("ordered input missing a zoneinfo zone: no error")
	}
	if _, err := NodeScores(rz, slices.Delete(slices.Clone(ri), 5, 6), 9, nil); err == nil {
		t.Error("unordered input missing a zoneinfo zone: no error")
	}
}

func TestDupCheck(t *testing.T) {
	for _, tc := range []struct {
		keys string // node:zone, space separated
		dup  int    // index of the first zone listed twice, -1 for none
	}{
		{"0:DMA 0:Normal 1:Normal 2:Normal 10:Normal", -1},
		{"0:DMA 0:Normal 0:DMA", 2},
		{"0:Normal 1:Normal 0:Normal", 2},       // node ids go back
		{"1:Normal 0:Normal 2:DMA 1:Normal", 3}, // went back once, later dup
		{"2:Normal 10:Normal 9:Normal", -1},
		{"10:Normal 2:Normal 10:Normal", 2},
	} {
		keys := strings.Fields(tc.keys)
		key := func(j int) (string, string) { n, z, _ := strings.Cut(keys[j], ":"); return n, z }
		var d dupCheck
		got := -1
		for i := range keys {
			if d.listedTwice(i, key) {
				got = i
				break
			}
		}
		if got != tc.dup {
			t.Errorf("%s: listed twice at %d, want %d", tc.keys, got, tc.dup)
		}
	}
}

// machine64 is a 64-node machine's buddyinfo and zoneinfo zones, 4 zones a
// node as the kernel lists them.
func machine64() ([]Zone, []ZoneInfo) {
	var zones []Zone
	var infos []ZoneInfo
	for n := 0; n < 64; n++ {
		node := strconv.Itoa(n)
		for _, name := range []string{"DMA", "DMA32", "Normal", "Movable"} {
			infos = append(infos, ZoneInfo{Node: node, Name: name, Present: 4096})
			zones = append(zones, Zone{node, name, []uint64{9, 8, 7, 6, 5, 4, 3, 2, 1, 1, 1}})
		}
	}
	return zones, infos
}

func BenchmarkNodeScores64(b *testing.B) {
	zones, infos := machine64()
	for _, bc := range []struct {
		name string
		fn   func([]Zone, []ZoneInfo, int, []NodeScoreOf) ([]NodeScoreOf, error)
	}{{"merge", NodeScores}, {"anyorder", nodeScoresAnyOrder}} {
		b.Run(bc.name, func(b *testing.B) {
			var dst []NodeScoreOf
			for b.Loop() {
				dst, _ = bc.fn(zones, infos, 9, dst)
			}
		})
	}
}
