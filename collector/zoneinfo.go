package collector

import (
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	zoneManagedDesc = newDesc(namespace+"_zone_managed_bytes",
		"Memory the buddy allocator manages in the zone (zoneinfo managed).", zoneLabels)
	zonePresentDesc = newDesc(namespace+"_zone_present_bytes",
		"Physical memory present in the zone (zoneinfo present); weights the zone in the compaction score.", zoneLabels)
	zoneSpannedDesc = newDesc(namespace+"_zone_spanned_bytes",
		"Address range the zone spans, holes included (zoneinfo spanned).", zoneLabels)
	watermarkDesc = newDesc(namespace+"_zone_watermark_bytes",
		"Zone watermark: below min only atomic/reclaim allocations succeed, below low kswapd wakes, at high it sleeps; promo is the tiering promotion mark.",
		[]string{"numa_node", "zone", "watermark"})
	boostDesc = newDesc(namespace+"_zone_watermark_boost_bytes",
		"Temporary watermark boost after a fragmentation event (vm.watermark_boost_factor); non-zero means the kernel is reclaiming to defragment.", zoneLabels)
	freeBlocksBytesDesc = newDesc(namespace+"_zone_free_pageblock_bytes",
		"Free memory held in whole free pageblocks (zoneinfo nr_free_pages_blocks, kernels >= 6.15).", zoneLabels)
)

type zoneinfoCollector struct {
	pageSize float64
}

func newZoneinfo(cfg Config, _ log.Logger) (source, error) {
	return &zoneinfoCollector{pageSize: float64(cfg.PageSize)}, nil
}

func (c *zoneinfoCollector) update(s *scrape, out *samples) error {
	infos, err := s.zoneinfo()
	if err != nil {
		return err
	}
	bytes := func(pages uint64) float64 { return float64(pages) * c.pageSize }
	for i := range infos {
		z := &infos[i]
		if z.Spanned == 0 {
			continue // a zone with no memory at all (e.g. an unused Movable or Device zone)
		}
		n, name := z.Node, z.Name
		if z.HasManaged {
			out.add(zoneManagedDesc, prometheus.GaugeValue, bytes(z.Managed), n, name)
		}
		out.add(zonePresentDesc, prometheus.GaugeValue, bytes(z.Present), n, name)
		out.add(zoneSpannedDesc, prometheus.GaugeValue, bytes(z.Spanned), n, name)
		out.add(watermarkDesc, prometheus.GaugeValue, bytes(z.Min), n, name, "min")
		out.add(watermarkDesc, prometheus.GaugeValue, bytes(z.Low), n, name, "low")
		out.add(watermarkDesc, prometheus.GaugeValue, bytes(z.High), n, name, "high")
		if z.HasPromo {
			out.add(watermarkDesc, prometheus.GaugeValue, bytes(z.Promo), n, name, "promo")
		}
		if z.HasBoost {
			out.add(boostDesc, prometheus.GaugeValue, bytes(z.Boost), n, name)
		}
		if z.HasFreePagesBlocks {
			out.add(freeBlocksBytesDesc, prometheus.GaugeValue, bytes(z.FreePagesBlocks), n, name)
		}
	}
	return nil
}
