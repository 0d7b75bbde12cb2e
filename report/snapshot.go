package report

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/memfrag/memfrag_exporter/fragmentation"
	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// Config says where to read, how to size pages and when a zone is at risk.
type Config struct {
	ProcPath string // procfs root, normally /proc
	SysPath  string // sysfs root, normally /sys
	PageSize int    // bytes per page; 0 means this machine's
	// UnusableThreshold is the unusable-free index (0..1) from which a zone
	// that can still serve an order is "at risk" for it. main passes
	// --remediate.unusable-threshold, so the page, inspect, the alert rules
	// and the remediation receiver share one criterion. Taken as given, as
	// the receiver takes it: 0 is a valid (if alarming) threshold, so a
	// caller wanting the default sets DefaultUnusableThreshold.
	UnusableThreshold float64
}

// Reader reads snapshots of one machine. It keeps its descriptors open
// between reads, and is safe for concurrent use (reads take turns).
type Reader struct {
	pageSize            uint64
	atRisk              int64 // Config.UnusableThreshold in thousandths
	scoreOrder          int
	scoreOrderFromSysfs bool

	mu            sync.Mutex // guards src and scores, which reuse storage
	src           *fragmentation.Source
	proactiveness *procfile.File
	scores        []fragmentation.NodeScoreOf
}

// NewReader returns a Reader for cfg, or an error when cfg's threshold is
// out of range. The huge-page order the compaction score is computed at is
// read once here, as the compaction collector does.
func NewReader(cfg Config) (*Reader, error) {
	atRisk, err := UnusableMilli(cfg.UnusableThreshold)
	if err != nil {
		return nil, err
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = os.Getpagesize()
	}
	order, fromSysfs := fragmentation.HugePageOrder(cfg.SysPath, cfg.PageSize)
	return &Reader{
		pageSize:            uint64(cfg.PageSize),
		atRisk:              atRisk,
		scoreOrder:          order,
		scoreOrderFromSysfs: fromSysfs,
		src:                 fragmentation.NewSource(cfg.ProcPath),
		proactiveness:       procfile.NewOne(filepath.Join(cfg.ProcPath, fragmentation.ProactivenessFile)),
	}, nil
}

// Close releases the descriptors.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proactiveness.Close()
	return r.src.Close()
}

// Snapshot is one reading of a machine's free memory.
type Snapshot struct {
	PageSize uint64 // bytes per page
	Orders   int    // orders the kernel prints (NR_PAGE_ORDERS)
	// AtRiskUnusable is the unusable-free index, in thousandths, from which
	// a zone is at risk (Config.UnusableThreshold); every verdict on this
	// snapshot goes through Verdict, which applies it.
	AtRiskUnusable int64

	// ScoreOrder is the order the kernel's proactive-compaction score is
	// computed at (the PMD huge-page order); ScoreOrderFromSysfs is false
	// when THP is absent and it was derived from the page size.
	ScoreOrder          int
	ScoreOrderFromSysfs bool
	// Proactiveness is vm.compaction_proactiveness, or -1 when the kernel
	// has none (before 5.9, or without CONFIG_COMPACTION) or it could not be
	// read.
	Proactiveness int64

	Nodes []Node
	// Warnings name what could not be read; the rest of the snapshot holds.
	Warnings []string
}

// Node is one NUMA node.
type Node struct {
	ID       string
	Score    uint64 // proactive-compaction score, 0..100
	HasScore bool   // false when zoneinfo could not be read
	Zones    []Zone
}

// Zone is one zone's free lists and size.
type Zone struct {
	fragmentation.Zone
	PresentPages uint64 // zoneinfo "present"; 0 when zoneinfo is unknown
	ManagedPages uint64 // zoneinfo "managed"
}

// Thresholds returns the kernel's proactive-compaction score thresholds:
// kcompactd starts compacting a node whose score is above high and stops
// at low. on is false when proactive compaction is off or unknown.
func (s *Snapshot) Thresholds() (low, high uint64, on bool) {
	if s.Proactiveness <= 0 {
		return 0, 0, false
	}
	low, high = fragmentation.ProactiveThresholds(uint64(s.Proactiveness))
	return low, high, true
}

// CheckOrder reports whether the kernel knows the order at all.
func (s *Snapshot) CheckOrder(order int) error {
	if order < 0 || order >= s.Orders {
		return fmt.Errorf("order %d is outside this kernel's orders 0..%d", order, s.Orders-1)
	}
	return nil
}

// Worst is the worst verdict for the order among the zones that gate (all
// but DMA), and the zone it was found in. With no gating zone it is OK.
func (s *Snapshot) Worst(order int) (Verdict, *Zone) {
	worst, where := OK, (*Zone)(nil)
	for i := range s.Nodes {
		for j := range s.Nodes[i].Zones {
			z := &s.Nodes[i].Zones[j]
			if !Gating(z.Name) {
				continue
			}
			if v := s.Verdict(z, order); where == nil || v > worst {
				worst, where = v, z
			}
		}
	}
	return worst, where
}

// Verdict judges an allocation of the order from the zone, at the
// snapshot's at-risk threshold.
func (s *Snapshot) Verdict(z *Zone, order int) Verdict { return Judge(z.Free, order, s.AtRiskUnusable) }

// Unusable is the unusable-free index at the order, in thousandths.
func (z *Zone) Unusable(order int) int64 { return fragmentation.UnusableFreeIndex(z.Free, order) }

// FragIndex is the fragmentation index at the order, in thousandths.
func (z *Zone) FragIndex(order int) int64 { return fragmentation.FragmentationIndex(z.Free, order) }

// SuitablePages is the free memory, in pages, that an allocation of the
// order can use.
func (z *Zone) SuitablePages(order int) uint64 { return fragmentation.SuitableFreePages(z.Free, order) }

// Read takes a snapshot. It fails only when buddyinfo cannot be read; a
// missing zoneinfo or sysctl leaves the score or thresholds out and adds a
// warning. The snapshot owns its memory.
func (r *Reader) Read() (*Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	zones, err := r.src.Buddyinfo()
	if err != nil {
		return nil, err
	}
	infos, infoErr := r.src.Zoneinfo()
	s := &Snapshot{
		PageSize:            r.pageSize,
		AtRiskUnusable:      r.atRisk,
		ScoreOrder:          r.scoreOrder,
		ScoreOrderFromSysfs: r.scoreOrderFromSysfs,
		Proactiveness:       -1,
	}
	r.scores = s.fill(zones, infos, infoErr, r.scores)

	// Absent (an old kernel) leaves -1 without a warning: not a fault.
	switch v, ok, err := fragmentation.ReadProactiveness(r.proactiveness); {
	case err != nil:
		s.Warnings = append(s.Warnings, fmt.Sprintf("no compaction thresholds: %v", err))
	case ok:
		s.Proactiveness = int64(min(v, 100))
	}
	return s, nil
}

// fill copies parsed buddyinfo (at least one zone, as ParseBuddyinfo
// guarantees) and zoneinfo into the snapshot and scores the nodes; scores is
// storage to reuse, returned for next time.
func (s *Snapshot) fill(zones []fragmentation.Zone, infos []fragmentation.ZoneInfo, infoErr error, scores []fragmentation.NodeScoreOf) []fragmentation.NodeScoreOf {
	s.Orders = len(zones[0].Free)
	// One backing array for all counts: a snapshot is a few allocations
	// whatever the number of zones.
	counts := make([]uint64, 0, len(zones)*s.Orders)
	all := make([]Zone, len(zones))
	for i := range zones {
		start := len(counts)
		counts = append(counts, zones[i].Free...)
		all[i].Zone = fragmentation.Zone{Node: zones[i].Node, Name: zones[i].Name, Free: counts[start:len(counts):len(counts)]}
	}
	err := infoErr
	if err == nil {
		scores, err = fragmentation.NodeScores(zones, infos, s.ScoreOrder, scores)
	}
	if err != nil {
		s.Warnings = append(s.Warnings, fmt.Sprintf("no compaction score: %v", err))
		scores = scores[:0]
	} else {
		for i := range all {
			for j := range infos {
				if infos[j].Node == all[i].Node && infos[j].Name == all[i].Name {
					all[i].PresentPages, all[i].ManagedPages = infos[j].Present, infos[j].Managed
					break
				}
			}
		}
	}
	s.Nodes = groupByNode(all, scores)
	return scores
}

// groupByNode splits zones, in buddyinfo's order, into nodes in the order
// their first zone appears.
func groupByNode(zones []Zone, scores []fragmentation.NodeScoreOf) []Node {
	var nodes []Node
	for i := 0; i < len(zones); {
		j := i + 1
		for j < len(zones) && zones[j].Node == zones[i].Node {
			j++
		}
		n := Node{ID: zones[i].Node, Zones: zones[i:j:j]}
		for _, sc := range scores {
			if sc.Node == n.ID {
				n.Score, n.HasScore = sc.Score, true
			}
		}
		nodes = append(nodes, n)
		i = j
	}
	return nodes
}
