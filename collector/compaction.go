package collector

import (
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/memfrag/memfrag_exporter/fragmentation"
)

var (
	scoreDesc = newDesc(namespace+"_compaction_score",
		"Kernel proactive-compaction score of the NUMA node (mm/compaction.c fragmentation_score_node, 0..100): the present-pages-weighted share of free memory unusable at the huge-page order.",
		[]string{"numa_node"})
	scoreOrderDesc = newDesc(namespace+"_compaction_score_order",
		"The order the compaction score is computed at (the PMD huge-page order).", nil)
	thresholdDesc = newDesc(namespace+"_compaction_score_threshold",
		"Kernel proactive-compaction thresholds derived from vm.compaction_proactiveness: kcompactd starts compacting a node whose score is above high and stops at low. Absent while proactive compaction is off.",
		[]string{"level"})
)

type compactionCollector struct {
	order  int
	scores []fragmentation.NodeScoreOf
}

func newCompaction(cfg Config, logger log.Logger) (source, error) {
	order, fromSysfs := fragmentation.HugePageOrder(cfg.SysPath, cfg.PageSize)
	if !fromSysfs {
		level.Info(logger).Log("msg", "no transparent_hugepage/hpage_pmd_size; scoring at PAGE_SHIFT-3", "order", order)
	}
	return &compactionCollector{order: order}, nil
}

func (c *compactionCollector) update(s *scrape, out *samples) error {
	zones, err := s.buddyinfo()
	if err != nil {
		return err
	}
	infos, err := s.zoneinfo()
	if err != nil {
		return err
	}
	if c.scores, err = fragmentation.NodeScores(zones, infos, c.order, c.scores); err != nil {
		return err
	}
	for _, sc := range c.scores {
		out.add(scoreDesc, prometheus.GaugeValue, float64(sc.Score), sc.Node)
	}
	out.add(scoreOrderDesc, prometheus.GaugeValue, float64(c.order))

	// Kernels before 5.9 or without compaction have no such sysctl (ok
	// false): no thresholds to draw.
	proactiveness, ok, err := s.compactionProactiveness()
	if err != nil {
		return err
	}
	if ok && proactiveness > 0 {
		low, high := fragmentation.ProactiveThresholds(proactiveness)
		out.add(thresholdDesc, prometheus.GaugeValue, float64(low), "low")
		out.add(thresholdDesc, prometheus.GaugeValue, float64(high), "high")
	}
	return nil
}
