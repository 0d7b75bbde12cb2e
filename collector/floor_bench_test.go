package collector

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// floorFiles are the kernel files the default collectors read on every
// scrape, relative to / (compaction reads compaction_proactiveness a second
// time; the floor counts it once).
var floorFiles = []string{
	"proc/buddyinfo",
	"proc/zoneinfo",
	"proc/vmstat",
	"proc/sys/vm/compaction_proactiveness",
	"proc/sys/vm/extfrag_threshold",
	"proc/sys/vm/min_free_kbytes",
	"proc/sys/vm/watermark_scale_factor",
	"proc/sys/vm/watermark_boost_factor",
	"proc/sys/vm/defrag_mode",
	"sys/kernel/mm/transparent_hugepage/enabled",
	"sys/kernel/mm/transparent_hugepage/defrag",
}

// BenchmarkKernelReadFloor is the least a scrape can cost: reading this
// machine's files through kept descriptors (procfile.File, pread from 0 until
// EOF, as the collectors do) without parsing or emitting anything. The "all"
// case is the floor the collectors' summed duration metrics are held to
// (bench/compare.sh measures the same in its load client).
func BenchmarkKernelReadFloor(b *testing.B) {
	var files []*procfile.File
	for _, p := range floorFiles {
		if _, err := os.Stat("/" + p); err != nil {
			continue // e.g. defrag_mode before 6.15, no THP
		}
		files = append(files, procfile.New("/"+p))
	}
	if len(files) == 0 {
		b.Skip("none of the kernel files exists here")
	}
	b.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	nop := func([]byte) error { return nil }
	for _, f := range files {
		b.Run(filepath.Base(f.Path()), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := f.Do(nop); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, f := range files {
				if err := f.Do(nop); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
