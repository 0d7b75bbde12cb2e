package report

import (
	"fmt"
	"math"

	"github.com/memfrag/memfrag_exporter/fragmentation"
)

// DefaultUnusableThreshold is the unusable-free index from which a zone is
// "at risk" for an order unless Config says otherwise: 90% of its free
// memory sits in blocks too small for the order. It is the default of the
// criterion the shipped alerts and the remediation receiver use
// (memfrag_unusable_free_index >= --remediate.unusable-threshold).
const DefaultUnusableThreshold = 0.9

// FragmentationThreshold, in the kernel's thousandths, splits a failing
// allocation's cause.
const (
	// FragmentationThreshold splits a failing allocation's cause. It is the
	// kernel's default vm.extfrag_threshold (500): above it the kernel
	// itself judges the failure to be fragmentation and prefers compaction
	// over reclaim (mm/compaction.c compaction_suitable); at or below it,
	// compaction would not help and the zone simply lacks free memory.
	FragmentationThreshold = 500
)

// Verdict is what an allocation of one order in one zone can expect now.
// The values are ordered from good to bad, so the worst of several is the
// largest.
type Verdict int

// The verdicts, from good to bad.
const (
	// OK: a free block of the order exists and the unusable free index is
	// below the at-risk threshold.
	OK Verdict = iota
	// AtRisk: a free block of the order still exists, but the unusable
	// free index is at least the threshold (by default 90% of free memory
	// is in smaller blocks), so the next few allocations may take the last
	// ones.
	AtRisk
	// FailingLowMemory: no free block of the order or larger exists, and
	// either the fragmentation index is at most 0.5 or the zone's free
	// memory all together is smaller than one block of the order: the zone
	// lacks free memory; reclaim, not compaction, is the cure.
	FailingLowMemory
	// FailingFragmentation: no free block of the order or larger exists
	// although enough memory is free (fragmentation index above 0.5):
	// the allocation needs compaction, and drop_caches then compaction is
	// the cure.
	FailingFragmentation
)

// String is the verdict as the page and the table print it.
func (v Verdict) String() string {
	switch v {
	case OK:
		return "OK"
	case AtRisk:
		return "at risk"
	case FailingLowMemory:
		return "failing for low memory"
	case FailingFragmentation:
		return "failing for fragmentation"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Key is the verdict as a stable identifier for scripts and CSS classes.
func (v Verdict) Key() string {
	switch v {
	case OK:
		return "ok"
	case AtRisk:
		return "at_risk"
	case FailingLowMemory:
		return "failing_low_memory"
	case FailingFragmentation:
		return "failing_fragmentation"
	}
	return "unknown"
}

// MarshalText makes JSON carry the Key.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.Key()), nil }

// Failing says whether an allocation of the order fails without reclaim or
// compaction.
func (v Verdict) Failing() bool { return v >= FailingLowMemory }

// UnusableMilli converts an unusable-free-index threshold (0..1, as the
// flag and the alert rules write it) to the kernel's thousandths, rounding
// up as the remediation receiver does: the index is a whole number of
// thousandths, so index >= threshold exactly when index >= the result.
func UnusableMilli(threshold float64) (int64, error) {
	if !(threshold >= 0 && threshold <= 1) { // also rejects NaN
		return 0, fmt.Errorf("unusable threshold %v is not in 0..1", threshold)
	}
	return int64(math.Ceil(threshold*1000 - 1e-9)), nil
}

// Judge returns the verdict for an allocation of the order from a zone with
// free[k] free blocks of order k (buddyinfo). atRisk is the unusable-free
// index, in thousandths (see UnusableMilli), from which a zone that can
// still serve the order is at risk. A zone with nothing free is failing for
// low memory.
func Judge(free []uint64, order int, atRisk int64) Verdict {
	fi := fragmentation.FragmentationIndex(free, order)
	switch {
	case fi < 0:
		// The kernel returns -1000 whenever a block of the order is free,
		// so any index >= 0 means the allocation would fail.
	case fi > FragmentationThreshold && freePages(free) >= 1<<order:
		return FailingFragmentation
	default:
		// The index can exceed 0.5 with less free memory than one block
		// (a few scattered pages against a 2 MiB request): no compaction
		// can help then, and the kernel would not try (compaction_suitable
		// first wants the free pages above the watermark plus 2<<order).
		return FailingLowMemory
	}
	if fragmentation.UnusableFreeIndex(free, order) >= atRisk {
		return AtRisk
	}
	return OK
}

func freePages(free []uint64) uint64 {
	z := fragmentation.Zone{Free: free}
	return z.FreePages()
}

// Gating says whether a zone's verdict counts towards the machine's: the
// DMA zone does not. It is the first 16 MiB kept for devices that cannot
// address more, the allocator takes from it only as a last resort, and its
// few blocks say nothing about the machine. The shipped alerts and the
// remediation receiver leave it out for the same reason.
func Gating(zone string) bool { return zone != "DMA" }
