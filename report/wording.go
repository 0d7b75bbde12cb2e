package report

import (
	"fmt"
	"strconv"
)

// The sentences below are shared by the page and the inspect table, so
// both say the same thing in the same words.

// OrderName names allocations of an order, marking the huge-page order.
func (s *Snapshot) OrderName(order int) string {
	if order == s.ScoreOrder {
		return "order-" + strconv.Itoa(order) + " (huge page)"
	}
	return "order-" + strconv.Itoa(order)
}

// Explain says why a zone has its verdict for the order.
func (s *Snapshot) Explain(z *Zone, order int) string {
	free := z.FreePages() * s.PageSize
	block := formatBytes(s.PageSize << order)
	switch v := s.Verdict(z, order); v {
	case FailingFragmentation:
		return fmt.Sprintf("no free block of %s or more, though %s is free (fragmentation index %s > 0.5): compaction would help",
			block, formatBytes(free), thousandths(z.FragIndex(order)))
	case FailingLowMemory:
		why := "fragmentation index " + thousandths(z.FragIndex(order)) + " <= 0.5"
		if free < s.PageSize<<order {
			why = "less than one block"
		}
		return fmt.Sprintf("no free block of %s or more, and only %s is free (%s): the zone lacks memory, compaction would not help",
			block, formatBytes(free), why)
	default:
		cmp := "<"
		if v == AtRisk {
			cmp = ">="
		}
		return fmt.Sprintf("%s of free memory is in blocks smaller than %s (unusable free index %s %s %s); %s usable",
			percent(z.Unusable(order)), block, thousandths(z.Unusable(order)), cmp, s.ThresholdText(),
			formatBytes(z.SuitablePages(order)*s.PageSize))
	}
}

// ThresholdText prints the at-risk threshold as the flag and the alert
// rules write it: 0.9, not 0.900.
func (s *Snapshot) ThresholdText() string {
	return strconv.FormatFloat(float64(s.AtRiskUnusable)/1000, 'f', -1, 64)
}

// ScoreSentence says where a node's compaction score stands against the
// kernel's proactive-compaction thresholds.
func (s *Snapshot) ScoreSentence(n *Node) string {
	if !n.HasScore {
		return "compaction score unknown (zoneinfo unreadable)"
	}
	head := fmt.Sprintf("compaction score %d at order %d", n.Score, s.ScoreOrder)
	low, high, on := s.Thresholds()
	switch {
	case s.Proactiveness < 0:
		return head + "; this kernel has no proactive compaction"
	case !on:
		return head + "; proactive compaction is off (vm.compaction_proactiveness=0)"
	case n.Score > high:
		return fmt.Sprintf("%s, above the high threshold %d: kcompactd compacts this node until the score falls to %d (vm.compaction_proactiveness=%d)", head, high, low, s.Proactiveness)
	case n.Score > low:
		return fmt.Sprintf("%s, between the thresholds %d and %d: kcompactd keeps compacting if it started, else waits for %d (vm.compaction_proactiveness=%d)", head, low, high, high, s.Proactiveness)
	default:
		return fmt.Sprintf("%s, at or below the low threshold %d: no proactive compaction needed (vm.compaction_proactiveness=%d)", head, low, s.Proactiveness)
	}
}

// LargestSentence names the largest free block.
func (s *Snapshot) LargestSentence(z *Zone) string {
	k := z.LargestFreeOrder()
	if k < 0 {
		return "nothing free"
	}
	return fmt.Sprintf("order %d (%s)", k, formatBytes(s.PageSize<<k))
}

// thousandths prints a kernel index kept in thousandths as the kernel's
// debugfs does: three decimals.
func thousandths(v int64) string {
	var b [24]byte
	return string(appendThousandths(b[:0], v))
}

func appendThousandths(dst []byte, v int64) []byte {
	if v < 0 {
		dst, v = append(dst, '-'), -v
	}
	dst = strconv.AppendInt(dst, v/1000, 10)
	f := v % 1000
	return append(dst, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
}

// percent prints thousandths as a percentage with one decimal.
func percent(v int64) string {
	return fmt.Sprintf("%d.%d%%", v/10, v%10)
}

// formatBytes prints a byte count in IEC units with at most one decimal.
func formatBytes(b uint64) string {
	var buf [24]byte
	return string(appendBytes(buf[:0], b))
}

func appendBytes(dst []byte, b uint64) []byte {
	const units = "KMGTPE"
	if b < 1024 {
		return append(strconv.AppendUint(dst, b, 10), " B"...)
	}
	u, div := 0, uint64(1024)
	for b/div >= 1024 && u < len(units)-1 {
		u, div = u+1, div*1024
	}
	// Tenths of the unit, rounded; in two steps so b*10 cannot overflow.
	tenths := b/div*10 + (b%div*10+div/2)/div
	if tenths >= 10240 && u < len(units)-1 { // 1023.96 MiB reads 1 GiB
		u, tenths = u+1, (tenths+512)/1024
	}
	dst = strconv.AppendUint(dst, tenths/10, 10)
	if tenths%10 != 0 {
		dst = append(dst, '.', byte('0'+tenths%10))
	}
	return append(dst, ' ', units[u], 'i', 'B')
}
