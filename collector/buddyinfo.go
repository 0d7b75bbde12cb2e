package collector

import (
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/memfrag/memfrag_exporter/fragmentation"
)

var (
	zoneOrderLabels = []string{"numa_node", "zone", "order"}
	zoneLabels      = []string{"numa_node", "zone"}

	freeBlocksDesc = newDesc(namespace+"_free_blocks",
		"Free blocks of 2^order pages in the zone (/proc/buddyinfo).", zoneOrderLabels)
	freeBytesDesc = newDesc(namespace+"_free_bytes",
		"Free memory held in blocks of exactly this order; sum without(order) is the zone's free memory.", zoneOrderLabels)
	fragIndexDesc = newDesc(namespace+"_fragmentation_index",
		"Kernel fragmentation index (mm/vmstat.c __fragmentation_index/1000): -1 while a block of this order is free; otherwise towards 0 an allocation of this order fails for lack of memory, towards 1 because free memory is fragmented.", zoneOrderLabels)
	unusableDesc = newDesc(namespace+"_unusable_free_index",
		"Kernel unusable free index (mm/vmstat.c unusable_free_index/1000): share of the zone's free memory that cannot serve an allocation of this order; 1 when nothing is free.", zoneOrderLabels)
	largestOrderDesc = newDesc(namespace+"_largest_free_order",
		"Highest order with a free block in the zone, -1 when nothing is free: an allocation above this order fails without reclaim or compaction.", zoneLabels)
)

type buddyinfoCollector struct {
	pageSize float64
}

func newBuddyinfo(cfg Config, _ log.Logger) (source, error) {
	return &buddyinfoCollector{pageSize: float64(cfg.PageSize)}, nil
}

func (c *buddyinfoCollector) update(s *scrape, out *samples) error {
	zones, err := s.buddyinfo()
	if err != nil {
		return err
	}
	var frag, unusable [fragmentation.MaxOrders]int64
	for i := range zones {
		z := &zones[i]
		fragmentation.ZoneIndices(z.Free, frag[:], unusable[:])
		for k, n := range z.Free {
			o := orderLabels[k]
			out.add(freeBlocksDesc, prometheus.GaugeValue, float64(n), z.Node, z.Name, o)
			out.add(freeBytesDesc, prometheus.GaugeValue, float64(n<<k)*c.pageSize, z.Node, z.Name, o)
			out.add(fragIndexDesc, prometheus.GaugeValue, float64(frag[k])/1000, z.Node, z.Name, o)
			out.add(unusableDesc, prometheus.GaugeValue, float64(unusable[k])/1000, z.Node, z.Name, o)
		}
		out.add(largestOrderDesc, prometheus.GaugeValue, float64(z.LargestFreeOrder()), z.Node, z.Name)
	}
	return nil
}
