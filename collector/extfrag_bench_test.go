package collector

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"testing"
	"unsafe"

	"github.com/go-kit/log"
	"golang.org/x/sys/unix"

	"github.com/memfrag/memfrag_exporter/internal/livetest"
)

// The extfrag collector could count with perf alone: one counting event per
// CPU for each (alloc, fallback, fragmenting) combination, each with an
// ftrace filter. These benchmarks compare that with the BPF program on a
// tracepoint that fires at will (syscalls:sys_enter_pread64, whose fd,
// count, pos and __syscall_nr fields stand in for the four extfrag fields):
// what each costs per event (ns/op over the bare syscall), the descriptors
// it holds, and what a scrape costs.
//
//	sudo go test -run '^$' -bench Extfrag -benchtime=200000x ./collector/
//
// Measured on this 2-CPU VM (6.18): pread64 397.9 ns bare, 663.6 with the
// BPF program (+266 ns an event), 1006 with 12 filtered events per CPU
// (+608 ns); fds 3 and 24 (12 x CPUs: 3,072 at 256 CPUs); reading the
// counters 1.9 us (one map lookup) and 243 us (24 reads, each an IPI to the
// event's CPU: about 30 ms at 256 CPUs); the collector's whole update 4.3 us.

// extfragBenchPairs are the six (alloc, fallback) pairs that occur, as
// values of the stand-in fields.
var extfragBenchPairs = [][2]int{{0, 1}, {0, 2}, {1, 0}, {1, 2}, {2, 0}, {2, 1}}

func benchTracepoint(b *testing.B) (tracepointFormat, extfragLayout) {
	livetest.Root(b)
	data, err := os.ReadFile("/sys/kernel/tracing/events/syscalls/sys_enter_pread64/format")
	if err != nil {
		livetest.Skip(b, fmt.Sprintf("no syscall tracepoints: %v", err))
	}
	f, err := parseTracepointFormat(data)
	if err != nil {
		b.Fatal(err)
	}
	return f, extfragLayout{
		allocType: f.fields["fd"].offset, fallbackType: f.fields["count"].offset,
		fallbackOrder: f.fields["pos"].offset, changeOwnership: f.fields["__syscall_nr"].offset,
		pageblockOrder: 9,
	}
}

// perfFilterCounter is the perf-only design: filters x CPUs counting events.
type perfFilterCounter struct{ fds []int }

func openPerfFilterCounter(b *testing.B, id uint64, allocBase int) *perfFilterCounter {
	c := &perfFilterCounter{}
	for cpu := range runtime.NumCPU() {
		for _, p := range extfragBenchPairs {
			for _, cmp := range []string{"<", ">="} {
				attr := unix.PerfEventAttr{
					Type: unix.PERF_TYPE_TRACEPOINT, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
					Config: id, Bits: unix.PerfBitDisabled,
				}
				fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
				if err != nil {
					c.close()
					b.Fatalf("perf_event_open: %v", err)
				}
				c.fds = append(c.fds, fd)
				filter, _ := unix.BytePtrFromString(fmt.Sprintf("fd == %d && count == %d && pos %s 9", allocBase+p[0], p[1], cmp))
				if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.PERF_EVENT_IOC_SET_FILTER, uintptr(unsafe.Pointer(filter))); errno != 0 {
					c.close()
					b.Fatalf("PERF_EVENT_IOC_SET_FILTER: %v", errno)
				}
				if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
					c.close()
					b.Fatal(err)
				}
			}
		}
	}
	return c
}

func (c *perfFilterCounter) read() (uint64, error) {
	var sum uint64
	var buf [8]byte
	for _, fd := range c.fds {
		if _, err := unix.Read(fd, buf[:]); err != nil {
			return 0, err
		}
		sum += binary.NativeEndian.Uint64(buf[:])
	}
	return sum, nil
}

func (c *perfFilterCounter) close() {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// BenchmarkExtfragEventCost: ns/op is one pread64 with the tracepoint
// counted by nothing, by the BPF program, and by 12 filtered perf events
// per CPU; half the calls match a counter.
func BenchmarkExtfragEventCost(b *testing.B) {
	format, layout := benchTracepoint(b)
	zero, err := os.Open("/dev/zero")
	if err != nil {
		b.Fatal(err)
	}
	defer zero.Close()
	fd := int(zero.Fd())
	buf := make([]byte, 2)
	loop := func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			// alloc value fd (pair 0), fallback 1, pos 0 or 16: every
			// call matches one counter, fragmenting or not.
			unix.Pread(fd, buf[:1], int64(i&1)*16)
		}
	}
	b.Run("none", loop)
	b.Run("bpf", func(b *testing.B) {
		before := openFDs()
		c, err := attachExtfragCounter(format.id, layout)
		if err != nil {
			b.Fatal(err)
		}
		defer c.close()
		fds := openFDs() - before
		loop(b)
		b.ReportMetric(float64(fds), "fds")
	})
	b.Run("perf-filters", func(b *testing.B) {
		before := openFDs()
		c := openPerfFilterCounter(b, format.id, fd)
		defer c.close()
		fds := openFDs() - before
		loop(b)
		b.ReportMetric(float64(fds), "fds")
	})
}

// BenchmarkExtfragScrape is what a scrape pays to read the counters.
func BenchmarkExtfragScrape(b *testing.B) {
	format, layout := benchTracepoint(b)
	b.Run("bpf", func(b *testing.B) {
		c, err := attachExtfragCounter(format.id, layout)
		if err != nil {
			b.Fatal(err)
		}
		defer c.close()
		b.ReportAllocs()
		for b.Loop() {
			if err := c.read(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("perf-filters", func(b *testing.B) {
		c := openPerfFilterCounter(b, format.id, 3)
		defer c.close()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.read(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("collector", func(b *testing.B) {
		requireExtfragTracepoint(b)
		c := &extfragCollector{cfg: extfragConfig{procPath: "/proc", sysPath: "/sys"}, logger: log.NewNopLogger()}
		c.setup()
		if c.err != nil {
			b.Fatal(c.err)
		}
		defer c.close()
		benchmarkUpdate(b, c)
	})
}
