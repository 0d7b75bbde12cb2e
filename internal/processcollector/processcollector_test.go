package processcollector

import (
	"fmt"
	"math"
	"os"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

func gather(t testing.TB, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		out[mf.GetName()] = value(m)
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// The same metrics, help and (within what moves between two reads) values
// as client_golang's process collector, which node_exporter and most
// exporters serve.
func TestMatchesClientGolang(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this machine")
	}
	ref := gather(t, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ours := gather(t, New("/proc"))
	if len(ours) != len(ref) {
		t.Fatalf("ours exports %d metrics, client_golang %d: %v vs %v", len(ours), len(ref), ours, ref)
	}
	for name, want := range ref {
		got, ok := ours[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		tolerance := 0.0
		switch name {
		case "process_cpu_seconds_total":
			tolerance = 0.05
		case "process_resident_memory_bytes", "process_virtual_memory_bytes":
			tolerance = 0.05 * want // the two reads allocate in between
		case "process_open_fds":
			tolerance = 1
		case "process_start_time_seconds":
			tolerance = 0.011
		case "process_network_receive_bytes_total", "process_network_transmit_bytes_total":
			tolerance = 1 << 20 // other traffic in the namespace between the reads
		}
		if math.Abs(got-want) > tolerance {
			t.Errorf("%s = %v, client_golang %v", name, got, want)
		}
	}
	// help strings are the same too
	descs := func(c prometheus.Collector) map[string]string {
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		m := map[string]string{}
		for d := range ch {
			m[d.String()] = ""
		}
		return m
	}
	r, o := descs(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})), descs(New("/proc"))
	for d := range r {
		if _, ok := o[d]; !ok {
			t.Errorf("descriptor differs from client_golang's: %s", d)
		}
	}
}

func TestParseStat(t *testing.T) {
	var s procStat
	// a command name with spaces and a parenthesis
	line := []byte("42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 7 0 12345 1048576 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
	if err := s.parse(line); err != nil {
		t.Fatal(err)
	}
	if s != (procStat{startTicks: 12345}) {
		t.Errorf("parsed %+v", s)
	}
	for _, bad := range []string{"", "42 name S 1", "42 (x) S 1 2 3", "42 (x) S 1 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 7 0 x 1048576 300"} {
		if err := (&procStat{}).parse([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseStatm(t *testing.T) {
	size, resident, err := parseStatm([]byte("5916 1432 820 1 0 1118 0\n"))
	if err != nil || size != 5916 || resident != 1432 {
		t.Errorf("parsed %d %d, %v", size, resident, err)
	}
	for _, bad := range []string{"", "5916", "5916 x 820", "-1 2"} {
		if _, _, err := parseStatm([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestIPExtOctets(t *testing.T) {
	b := []byte("TcpExt: A B\nTcpExt: 1 2\nIpExt: InNoRoutes InOctets OutOctets\nIpExt: 0 1234 5678\nMPTcpExt: X\nMPTcpExt: 9\n")
	if in, out := ipExtOctets(b); in != 1234 || out != 5678 {
		t.Errorf("in %v out %v", in, out)
	}
	if in, out := ipExtOctets([]byte("TcpExt: A\nTcpExt: 1\n")); in != 0 || out != 0 {
		t.Errorf("absent: in %v out %v", in, out)
	}
}

func BenchmarkCollect(b *testing.B) {
	for name, c := range map[string]prometheus.Collector{
		"ours":          New("/proc"),
		"client_golang": collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		b.Run(name, func(b *testing.B) {
			ch := make(chan prometheus.Metric, 64)
			b.ReportAllocs()
			for b.Loop() {
				c.Collect(ch)
				for len(ch) > 0 {
					<-ch
				}
			}
		})
	}
}

// The kept fd directory descriptor sees descriptors opened and closed in
// between, and does not count itself, whether it reads the directory's
// size or, rewound for each count, its entries.
func TestFDCountFollows(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc on this machine")
	}
	for _, list := range []bool{false, true} {
		t.Run(fmt.Sprintf("list=%v", list), func(t *testing.T) { testFDCountFollows(t, list) })
	}
	if _, err := newFDDir("/nonexistent/fd").count(); err == nil {
		t.Error("absent directory: no error")
	}
}

// A descriptor that fails (here closed behind the counter's back, as a
// remounted /proc would leave it stale) is opened again, and the count
// keeps using the directory's size.
func TestFDCountReopens(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc on this machine")
	}
	d := newFDDir("/proc/self/fd")
	before, err := d.count()
	if err != nil {
		t.Fatal(err)
	}
	list := d.list
	syscall.Close(d.fd)
	if n, err := d.count(); err != nil || n != before {
		t.Errorf("after the descriptor was closed: %d, %v; want %d", n, err, before)
	}
	if d.list != list {
		t.Errorf("list %v after a failed fstat, %v before: a failing descriptor is not a kernel without the size", d.list, list)
	}
}

func testFDCountFollows(t *testing.T, list bool) {
	d := newFDDir("/proc/self/fd")
	d.list = list
	before, err := d.count()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// ReadDir lists its own descriptor and our kept one, which count
	// leaves out.
	if want := len(entries) - 2; before != want {
		t.Errorf("count %d, ReadDir lists %d entries besides its own and ours", before, want)
	}
	var files []*os.File
	for range 5 {
		f, err := os.Open("/proc/self/stat")
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if n, err := d.count(); err != nil || n != before+5 {
		t.Errorf("after opening 5 files: %d, %v; want %d", n, err, before+5)
	}
	for _, f := range files {
		f.Close()
	}
	if n, err := d.count(); err != nil || n != before {
		t.Errorf("after closing them: %d, %v; want %d", n, err, before)
	}
	if d.list != list {
		t.Logf("this kernel gives the directory no size (before Linux 6.2): its entries were counted")
	}
}

// BenchmarkFDCount compares the two ways of counting: the directory's size
// and its entries.
func BenchmarkFDCount(b *testing.B) {
	for _, list := range []bool{false, true} {
		b.Run(fmt.Sprintf("list=%v", list), func(b *testing.B) {
			d := newFDDir("/proc/self/fd")
			d.list = list
			for b.Loop() {
				if _, err := d.count(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
