package fragmentation

// The functions below repeat mm/vmstat.c and mm/compaction.c (Linux 6.x) with
// the same integer arithmetic, so they return exactly what the kernel computes.
// Indices are in thousandths, as the kernel keeps them; divide by 1000 for the
// metric.

// contig is the kernel's struct contig_page_info for one zone and order.
type contig struct {
	freePages      uint64 // F: free pages in the zone
	blocksTotal    uint64 // B: free blocks of any order
	blocksSuitable uint64 // S: free blocks of the wanted order, counting larger ones as several
}

// fill_contig_page_info
func contigInfo(free []uint64, order int) contig {
	var c contig
	for k, n := range free {
		c.blocksTotal += n
		c.freePages += n << k
		if k >= order {
			c.blocksSuitable += n << (k - order)
		}
	}
	return c
}

// FragmentationIndex is the kernel's __fragmentation_index in thousandths:
// -1000 when a block of the order is free (the index only means something
// when an allocation would fail); otherwise 0 (it would fail for lack of
// memory) up to 1000 (it would fail because free memory is fragmented).
// A zone with nothing free reads 0.
func FragmentationIndex(free []uint64, order int) int64 {
	c := contigInfo(free, order)
	if c.blocksTotal == 0 {
		return 0
	}
	if c.blocksSuitable > 0 {
		return -1000
	}
	requested := uint64(1) << order
	return 1000 - int64((1000+c.freePages*1000/requested)/c.blocksTotal)
}

// UnusableFreeIndex is the kernel's unusable_free_index in thousandths: the
// share of free memory that cannot serve an allocation of the order. A zone
// with nothing free reads 1000 (all of nothing is unusable).
func UnusableFreeIndex(free []uint64, order int) int64 {
	c := contigInfo(free, order)
	if c.freePages == 0 {
		return 1000
	}
	return int64((c.freePages - c.blocksSuitable<<order) * 1000 / c.freePages)
}

// ZoneIndices fills frag[k] and unusable[k] with FragmentationIndex and
// UnusableFreeIndex of every order k of the zone, in one pass from the
// highest order down (the blocks suitable for order k are free[k] plus
// twice those suitable for k+1), where calling the two functions for each
// order costs a pass per order. frag and unusable must hold len(free)
// values.
func ZoneIndices(free []uint64, frag, unusable []int64) {
	var freePages, blocksTotal uint64
	for k, n := range free {
		blocksTotal += n
		freePages += n << k
	}
	frag, unusable = frag[:len(free)], unusable[:len(free)]
	var suitable uint64
	for k := len(free) - 1; k >= 0; k-- {
		suitable = free[k] + 2*suitable
		switch {
		case blocksTotal == 0:
			frag[k] = 0
		case suitable > 0:
			frag[k] = -1000
		default:
			frag[k] = 1000 - int64((1000+freePages*1000/(uint64(1)<<k))/blocksTotal)
		}
		if freePages == 0 {
			unusable[k] = 1000
		} else {
			unusable[k] = int64((freePages - suitable<<k) * 1000 / freePages)
		}
	}
}

// extfragForOrder is the kernel's extfrag_for_order: the unusable share in
// percent, except that a zone with nothing free reads 0 (not 100), which is
// what the proactive-compaction score uses.
func extfragForOrder(free []uint64, order int) uint64 {
	c := contigInfo(free, order)
	if c.freePages == 0 {
		return 0
	}
	return (c.freePages - c.blocksSuitable<<order) * 100 / c.freePages
}

// SuitableFreePages is the free memory, in pages, held in blocks of the order
// or larger: what allocations of that order can actually use.
func SuitableFreePages(free []uint64, order int) uint64 {
	return contigInfo(free, order).blocksSuitable << order
}

// weightedZoneScore is the kernel's fragmentation_score_zone_weighted: the
// zone's unusable percentage at the order, weighted by its present pages over
// the node's (+1). The node score is the sum over populated zones.
func weightedZoneScore(free []uint64, presentPages, nodePresentPages uint64, order int) uint64 {
	return presentPages * extfragForOrder(free, order) / (nodePresentPages + 1)
}

// ProactiveThresholds are the kernel's fragmentation_score_wmark for a given
// vm.compaction_proactiveness: kcompactd starts proactive compaction of a node
// whose score exceeds high and stops once it falls to low. Proactive
// compaction is off when proactiveness is 0.
func ProactiveThresholds(proactiveness uint64) (low, high uint64) {
	p := min(proactiveness, 100)
	low = max(100-p, 5)
	high = min(low+10, 100)
	return low, high
}
