package collector

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Label pairs are reused between scrapes only while the series stay the
// same: when the machine's zones change (memory hot-plug, a different
// fixture), the next scrape shows exactly the new series.
func TestSamplesFollowChangingSeries(t *testing.T) {
	root := copyTree(t, "x86-vm")
	e, err := New(Config{ProcPath: filepath.Join(root, "proc"), SysPath: filepath.Join(root, "sys"), PageSize: 4096,
		Enabled: map[string]bool{"zoneinfo": false, "compaction": false, "vmstat": false, "sysctl": false}}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(root, "proc/buddyinfo"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct{ buddyinfo, want string }{
		{"Node 0, zone Normal 1 2\n", `
memfrag_largest_free_order{numa_node="0",zone="Normal"} 1
memfrag_free_blocks{numa_node="0",order="0",zone="Normal"} 1
memfrag_free_blocks{numa_node="0",order="1",zone="Normal"} 2
`},
		{"Node 0, zone Normal 3 0\nNode 1, zone Movable 0 5\n", `
memfrag_largest_free_order{numa_node="0",zone="Normal"} 0
memfrag_largest_free_order{numa_node="1",zone="Movable"} 1
memfrag_free_blocks{numa_node="0",order="0",zone="Normal"} 3
memfrag_free_blocks{numa_node="0",order="1",zone="Normal"} 0
memfrag_free_blocks{numa_node="1",order="0",zone="Movable"} 0
memfrag_free_blocks{numa_node="1",order="1",zone="Movable"} 5
`},
		{"Node 1, zone Movable 0 5\n", `
memfrag_largest_free_order{numa_node="1",zone="Movable"} 1
memfrag_free_blocks{numa_node="1",order="0",zone="Movable"} 0
memfrag_free_blocks{numa_node="1",order="1",zone="Movable"} 5
`},
	}
	for i, tc := range cases {
		write(tc.buddyinfo)
		got := string(exposition(t, e))
		for _, line := range strings.Split(strings.TrimSpace(tc.want), "\n") {
			if !strings.Contains(got, line+"\n") {
				t.Errorf("scrape %d lacks %s", i, line)
			}
		}
		if n := strings.Count(got, "memfrag_largest_free_order{"); n != strings.Count(tc.want, "memfrag_largest_free_order{") {
			t.Errorf("scrape %d: %d zones exposed, want %d:\n%s", i, n, strings.Count(tc.want, "memfrag_largest_free_order{"), got)
		}
	}
}

// Concurrent scrapes each see a complete, consistent exposition (run with
// -race: samples of one scrape must not be overwritten by the next).
func TestConcurrentScrapes(t *testing.T) {
	e := newFixtureExporter(t, "numa-sparse", 4096, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	want, err := testutil.GatherAndCount(reg, "memfrag_free_blocks")
	if err != nil || want == 0 {
		t.Fatalf("first scrape: %d series, %v", want, err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				got, err := testutil.GatherAndCount(reg, "memfrag_free_blocks")
				if err != nil || got != want {
					t.Errorf("concurrent scrape: %d series, %v; want %d", got, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// A label value prometheus would refuse drops that sample and becomes the
// collector's error, instead of a panic in the middle of the scrape.
func TestSamplesRefuseInvalidLabel(t *testing.T) {
	var s samples
	s.reset()
	s.add(largestOrderDesc, prometheus.GaugeValue, 1, "0", "Normal")
	s.add(largestOrderDesc, prometheus.GaugeValue, 2, "0", "Nor\xffmal")
	s.add(largestOrderDesc, prometheus.GaugeValue, 3, "1", "Normal")
	if s.err == nil || s.len() != 2 || s.values[1] != 3 {
		t.Fatalf("err %v, %d samples kept; want an error and the 2 valid samples", s.err, s.len())
	}
	s.reset()
	if s.err != nil {
		t.Errorf("reset kept the error %v", s.err)
	}
}
