package report

import (
	"math"
	"testing"

	"github.com/memfrag/memfrag_exporter/fragmentation"
)

func TestJudge(t *testing.T) {
	tests := []struct {
		name  string
		free  []uint64
		order int
		want  Verdict
	}{
		{"nothing free", []uint64{0, 0, 0, 0, 0}, 4, FailingLowMemory},
		{"empty zone line", []uint64{0}, 0, FailingLowMemory},
		// The seed's Normal zone before the cure: one 4 MiB block keeps
		// order 4 alive, but 99.6% of free memory is in smaller blocks.
		{"seed before, order 4", []uint64{127146, 68215, 1614, 0, 0, 0, 0, 0, 0, 0, 1}, 4, AtRisk},
		{"seed before DMA32, order 4", []uint64{32995, 4377, 762, 211, 157, 108, 68, 23, 3, 0, 0}, 4, OK},
		{"seed before DMA32, order 9", []uint64{32995, 4377, 762, 211, 157, 108, 68, 23, 3, 0, 0}, 9, FailingFragmentation},
		{"plenty free, no large block", []uint64{181022, 24011, 2950, 9, 0, 0}, 4, FailingFragmentation},
		// 28 pages in 4 blocks against a 16-page request: index 0.313.
		{"low memory", []uint64{0, 0, 1, 3, 0}, 4, FailingLowMemory},
		// 28 pages against a 512-page request: index 0.737 > 0.5, but less
		// than one block is free, so compaction cannot help.
		{"index high, less than one block free", []uint64{0, 0, 1, 3, 0, 0, 0, 0, 0, 0}, 9, FailingLowMemory},
		// 8 order-0 + 1 order-1 = 10 pages, 2 usable at order 1: 0.800.
		{"unusable 0.8 is OK", []uint64{8, 1}, 1, OK},
		// 18 order-0 + 1 order-1 = 20 pages, 2 usable: exactly 0.900.
		{"unusable exactly 0.9 is at risk", []uint64{18, 1}, 1, AtRisk},
		// 17 order-0 + 1 order-1 = 19 pages, 2 usable: 0.894.
		{"unusable just below 0.9 is OK", []uint64{17, 1}, 1, OK},
		{"order 0 with any page free", []uint64{1}, 0, OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Judge(tt.free, tt.order, 900); got != tt.want {
				t.Errorf("Judge(%v, %d) = %v (fragindex %d, unusable %d), want %v", tt.free, tt.order, got,
					fragmentation.FragmentationIndex(tt.free, tt.order), fragmentation.UnusableFreeIndex(tt.free, tt.order), tt.want)
			}
		})
	}
}

// TestJudgeFragmentationThreshold pins the split at the kernel's default
// extfrag_threshold: an index of exactly 0.500 is low memory (the kernel
// compacts only above the threshold), 0.501 and up is fragmentation.
func TestJudgeFragmentationThreshold(t *testing.T) {
	// Search small zones for the boundary indices rather than hand-craft
	// them, so the test follows the kernel formula in package fragmentation.
	var at500, above500 bool
	for a := uint64(0); a < 40; a++ {
		for b := uint64(0); b < 40; b++ {
			free := []uint64{a, b, 0}
			fi := fragmentation.FragmentationIndex(free, 2)
			pages := a + 2*b
			got := Judge(free, 2, 900)
			switch {
			case fi == 500:
				at500 = true
				if got != FailingLowMemory {
					t.Errorf("%v: index 0.500 judged %v, want %v", free, got, FailingLowMemory)
				}
			case fi > 500 && pages >= 4:
				above500 = true
				if got != FailingFragmentation {
					t.Errorf("%v: index %d judged %v, want %v", free, fi, got, FailingFragmentation)
				}
			}
		}
	}
	if !at500 || !above500 {
		t.Fatalf("search found no zone at the boundary (at 0.500: %v, above: %v)", at500, above500)
	}
}

func TestVerdictNames(t *testing.T) {
	for v, want := range map[Verdict][2]string{
		OK:                   {"OK", "ok"},
		AtRisk:               {"at risk", "at_risk"},
		FailingLowMemory:     {"failing for low memory", "failing_low_memory"},
		FailingFragmentation: {"failing for fragmentation", "failing_fragmentation"},
	} {
		if v.String() != want[0] || v.Key() != want[1] {
			t.Errorf("verdict %d: %q/%q, want %q/%q", int(v), v.String(), v.Key(), want[0], want[1])
		}
	}
	if !(OK < AtRisk && AtRisk < FailingLowMemory && FailingLowMemory < FailingFragmentation) {
		t.Error("verdicts are not ordered from good to bad")
	}
	if OK.Failing() || AtRisk.Failing() || !FailingLowMemory.Failing() || !FailingFragmentation.Failing() {
		t.Error("Failing disagrees with the verdicts")
	}
}

func TestWorstSkipsDMA(t *testing.T) {
	s := &Snapshot{PageSize: 4096, Orders: 5, AtRiskUnusable: 900, Nodes: []Node{{ID: "0", Zones: []Zone{
		{Zone: fragmentation.Zone{Node: "0", Name: "DMA", Free: []uint64{9, 0, 0, 0, 0}}},
		{Zone: fragmentation.Zone{Node: "0", Name: "Normal", Free: []uint64{8, 1, 1, 1, 1}}},
	}}}}
	if v, z := s.Worst(4); v != OK || z == nil || z.Name != "Normal" {
		t.Errorf("Worst(4) = %v in %v, want OK in Normal (DMA failing does not count)", v, z)
	}
	s.Nodes[0].Zones = s.Nodes[0].Zones[:1]
	if v, z := s.Worst(4); v != OK || z != nil {
		t.Errorf("Worst(4) with only DMA = %v in %v, want OK and no zone", v, z)
	}
}

func TestUnusableMilli(t *testing.T) {
	tests := []struct {
		in      float64
		want    int64
		wantErr bool
	}{
		{0.9, 900, false},
		{0.95, 950, false}, // 0.95*1000 is 950.0000000000001 in floats
		{0.9005, 901, false},
		{0, 0, false},
		{1, 1000, false},
		{-0.1, 0, true},
		{1.5, 0, true},
		{math.NaN(), 0, true},
	}
	for _, tt := range tests {
		got, err := UnusableMilli(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("UnusableMilli(%v) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestJudgeThreshold: the at-risk threshold is the caller's, not a constant.
func TestJudgeThreshold(t *testing.T) {
	seed := []uint64{127146, 68215, 1614, 0, 0, 0, 0, 0, 0, 0, 1} // unusable 0.996 at order 4
	tests := []struct {
		atRisk int64
		want   Verdict
	}{
		{900, AtRisk},
		{996, AtRisk},
		{997, OK},
		{1000, OK},
		{0, AtRisk},
	}
	for _, tt := range tests {
		if got := Judge(seed, 4, tt.atRisk); got != tt.want {
			t.Errorf("Judge(seed, 4, %d) = %v, want %v", tt.atRisk, got, tt.want)
		}
	}
	// Failing verdicts do not depend on it.
	if got := Judge([]uint64{181022, 24011, 2950, 9, 0, 0}, 4, 1000); got != FailingFragmentation {
		t.Errorf("failing zone at threshold 1.0: %v", got)
	}
}
