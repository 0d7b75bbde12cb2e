package collector

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/memfrag/memfrag_exporter/fragmentation"
	"github.com/memfrag/memfrag_exporter/internal/livetest"
)

func TestMatchAllocFailure(t *testing.T) {
	tests := []struct {
		text  string
		order int
		comm  string
		ok    bool
	}{
		{"events/0: page allocation failure. order:1, mode:0x20", 1, "events/0", true},
		{"kswapd0: page allocation failure: order:2, mode:0x4020", 2, "kswapd0", true},
		{"swapper/0: page allocation failure: order:3, mode:0x2080020(GFP_ATOMIC)", 3, "swapper/0", true},
		{"kworker/u8:2: page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null),cpuset=/,mems_allowed=0", 4, "kworker/u8:2", true},
		{"Web Content: page allocation failure: order:10, mode:0x0", 10, "Web Content", true},
		{"a: page allocation failure: order:31", 31, "a", true},                                                                                                                      // end of text after the order
		{`\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f: page allocation failure: order:4,`, 4, `\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f`, true}, // 15 escaped bytes
		{`\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10: page allocation failure: order:4,`, 0, "", false},                                                        // 16 bytes: not a comm
		{"abcdefghijklmnop: page allocation failure: order:4, mode:0x20", 0, "", false},                                                                                              // 16 bytes
		{"retrying after page allocation failure: order:4", 0, "", false},
		{"x: retrying after page allocation failure: order:4", 0, "", false},
		{"x: page allocation failure: order:32, mode:0x20", 0, "", false},
		{"x: page allocation failure: order:123, mode:0x20", 0, "", false},
		{"x: page allocation failure: order:-1, mode:0x20", 0, "", false},
		{"x: page allocation failure: order:4x", 0, "", false},
		{"x: page allocation failure: order:01, mode:0x20", 0, "", false}, // the kernel prints no leading zero
		{"x: page allocation failure; order:4", 0, "", false},
		{"x: page allocation failure:order:4", 0, "", false},
		{"x: page allocation failure", 0, "", false},
		{": page allocation failure: order:4", 0, "", false},
		{"x: vmalloc error: size 4096, page order 4, failed to allocate pages", 0, "", false},
		{"", 0, "", false},
	}
	for _, tt := range tests {
		order, comm, ok := matchAllocFailure([]byte(tt.text))
		if ok != tt.ok || order != tt.order || string(comm) != tt.comm {
			t.Errorf("matchAllocFailure(%q) = %d, %q, %v; want %d, %q, %v", tt.text, order, comm, ok, tt.order, tt.comm, tt.ok)
		}
	}
}

func TestParseKmsgRecord(t *testing.T) {
	tests := []struct {
		rec  string
		want kmsgRecord
		ok   bool
	}{
		{"6,339,5140900,-;NET: Registered protocol family 10\n", kmsgRecord{facility: 0, seq: 339, usec: 5140900, text: []byte("NET: Registered protocol family 10")}, true},
		{"30,340,5690716,-;udevd[80]: starting version 181\n", kmsgRecord{facility: 3, seq: 340, usec: 5690716, text: []byte("udevd[80]: starting version 181")}, true},
		{"4,1,2,-,caller=T12;x\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:02.0\n", kmsgRecord{seq: 1, usec: 2, text: []byte("x")}, true},
		{"4,9,9,+;fragment", kmsgRecord{seq: 9, usec: 9, cont: true, text: []byte("fragment")}, true},
		{"4,9,9,c;start\n", kmsgRecord{seq: 9, usec: 9, text: []byte("start")}, true},
		{"4,9,9;x\n", kmsgRecord{}, false},
		{"4,9,x,-;x\n", kmsgRecord{}, false},
		{"no header\n", kmsgRecord{}, false},
		{"99999999999,1,1,-;x\n", kmsgRecord{}, false},
		{"", kmsgRecord{}, false},
	}
	for _, tt := range tests {
		got, ok := parseKmsgRecord([]byte(tt.rec))
		if ok != tt.ok || (ok && (got.facility != tt.want.facility || got.seq != tt.want.seq || got.usec != tt.want.usec ||
			got.cont != tt.want.cont || !bytes.Equal(got.text, tt.want.text))) {
			t.Errorf("parseKmsgRecord(%q) = %+v, %v; want %+v, %v", tt.rec, got, ok, tt.want, tt.ok)
		}
	}
}

// step is one answer of a scripted /dev/kmsg: a record or an errno.
type step struct {
	rec string
	err error
}

var errScriptDone = errors.New("script done")

// scriptedRead plays steps the way /dev/kmsg answers read(2): one record
// per read, EINVAL (record skipped) when it does not fit the buffer. It
// reports whether each read asked to wait.
func scriptedRead(steps []step, waits *[]bool) func([]byte, bool) (int, error) {
	return func(buf []byte, wait bool) (int, error) {
		if waits != nil {
			*waits = append(*waits, wait)
		}
		if len(steps) == 0 {
			return 0, errScriptDone
		}
		s := steps[0]
		steps = steps[1:]
		if s.err != nil {
			return 0, s.err
		}
		if len(s.rec) > len(buf) {
			return 0, unix.EINVAL
		}
		return copy(buf, s.rec), nil
	}
}

// fixtureRecords splits a kmsg dump (what cat /dev/kmsg prints) into
// records: dictionary lines start with a space and belong to the record
// above them.
func fixtureRecords(t testing.TB, name string) []step {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/kmsg", name))
	if err != nil {
		t.Fatal(err)
	}
	var steps []step
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, " ") && len(steps) > 0 {
			steps[len(steps)-1].rec += line
			continue
		}
		steps = append(steps, step{rec: line})
	}
	return steps
}

func failuresOf(c *kmsgCollector) map[int]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]uint64{}
	for k, n := range c.failures {
		if n > 0 {
			out[k] = n
		}
	}
	return out
}

// runScript feeds steps to a collector's read loop as live records (the
// history before them is empty).
func runScript(t *testing.T, c *kmsgCollector, steps []step) {
	t.Helper()
	all := append([]step{{err: unix.EAGAIN}}, steps...)
	if err := c.readLoop(scriptedRead(all, nil), 0, false); !errors.Is(err, errScriptDone) {
		t.Fatalf("readLoop ended with %v", err)
	}
}

func TestKmsgFixtures(t *testing.T) {
	tests := []struct {
		file string
		want map[int]uint64
	}{
		{"linux-6.1-warn-alloc.txt", map[int]uint64{0: 1, 3: 1, 4: 2}},
		{"linux-4.4-mode-flags.txt", map[int]uint64{2: 1, 5: 2}},
		{"linux-3.10-cont-fragments.txt", map[int]uint64{2: 1}},
		{"linux-2.6-dot-format.txt", map[int]uint64{1: 1, 3: 1}},
		{"decoys.txt", map[int]uint64{}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c := &kmsgCollector{}
			runScript(t, c, fixtureRecords(t, tt.file))
			got := failuresOf(c)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("failures by order = %v, want %v", got, tt.want)
			}
			if c.lost != 0 || c.overruns != 0 {
				t.Errorf("lost %d, overruns %d in a gapless log", c.lost, c.overruns)
			}
		})
	}
}

// History (the records before the first EAGAIN) sets the last-seen time but
// is not counted: a restarted exporter must not report old failures as new.
func TestKmsgHistoryNotCounted(t *testing.T) {
	var live int
	c := &kmsgCollector{opts: kmsgOptions{onLive: func() { live++ }}}
	var waits []bool
	steps := []step{
		{rec: "4,10,2000000,-;a: page allocation failure: order:4, mode:0x20\n"},
		{rec: "4,11,3000000,-;a: page allocation failure: order:2, mode:0x20\n"},
		{err: unix.EAGAIN},
		{rec: "4,12,4000000,-;a: page allocation failure: order:4, mode:0x20\n"},
		{err: unix.EAGAIN}, // a spurious wake-up while live changes nothing
	}
	start := float64(time.Now().UnixNano()) / 1e9
	if err := c.readLoop(scriptedRead(steps, &waits), 0, false); !errors.Is(err, errScriptDone) {
		t.Fatal(err)
	}
	if got := failuresOf(c); fmt.Sprint(got) != "map[4:1]" {
		t.Errorf("failures = %v, want only the live one: map[4:1]", got)
	}
	if live != 1 {
		t.Errorf("onLive called %d times, want 1", live)
	}
	if fmt.Sprint(waits) != "[false false false true true true]" {
		t.Errorf("reads waited %v: history must not wait, live reads must", waits)
	}
	boot := bootWallSeconds()
	if c.last[2] < boot+2.9 || c.last[2] > boot+3.1 {
		t.Errorf("history failure at 3 s after boot has timestamp %f, boot is %f", c.last[2], boot)
	}
	if c.last[4] < start {
		t.Errorf("live failure has timestamp %f, before the test started (%f)", c.last[4], start)
	}
}

// A restarted reader counts the records after the last one its predecessor
// saw, and the gap to them as lost.
func TestKmsgRestartCountsAfterBoundary(t *testing.T) {
	c := &kmsgCollector{}
	steps := []step{
		{rec: "4,40,1,-;a: page allocation failure: order:1, mode:0x20\n"}, // seen before
		{rec: "4,41,1,-;a: page allocation failure: order:2, mode:0x20\n"}, // the boundary
		{rec: "4,44,1,-;a: page allocation failure: order:3, mode:0x20\n"}, // new; 42, 43 lost
		{err: unix.EAGAIN},
	}
	c.seq, c.haveSeq = 41, true
	if err := c.readLoop(scriptedRead(steps, nil), 41, true); !errors.Is(err, errScriptDone) {
		t.Fatal(err)
	}
	if got := failuresOf(c); fmt.Sprint(got) != "map[3:1]" {
		t.Errorf("failures = %v, want map[3:1]", got)
	}
	if c.lost != 2 {
		t.Errorf("lost = %d, want 2", c.lost)
	}
}

func TestKmsgOverrun(t *testing.T) {
	c := &kmsgCollector{}
	runScript(t, c, []step{
		{rec: "4,10,1,-;a: page allocation failure: order:4, mode:0x20\n"},
		{err: unix.EPIPE}, // 11..14 were overwritten
		{rec: "4,15,1,-;a: page allocation failure: order:4, mode:0x20\n"},
		{err: unix.EINTR},
		{rec: "4,16,1,-;a: page allocation failure: order:4, mode:0x20\n"},
	})
	if got := failuresOf(c); fmt.Sprint(got) != "map[4:3]" {
		t.Errorf("failures = %v, want map[4:3]", got)
	}
	if c.overruns != 1 || c.lost != 4 {
		t.Errorf("overruns %d, lost %d; want 1, 4", c.overruns, c.lost)
	}
}

// A record longer than the buffer is skipped by the kernel (EINVAL); the
// loop grows its buffer, reads the next long record whole, and gives up
// only past kmsgMaxBuf.
func TestKmsgLongRecords(t *testing.T) {
	long := "4,%d,1,-;a: page allocation failure: order:%d, mode:0x20 " + strings.Repeat("x", kmsgBufSize) + "\n"
	c := &kmsgCollector{}
	runScript(t, c, []step{
		{rec: "4,0,1,-;short\n"},
		{rec: fmt.Sprintf(long, 1, 5)}, // does not fit 16 KiB: skipped
		{rec: fmt.Sprintf(long, 2, 6)}, // fits the grown buffer
	})
	if got := failuresOf(c); fmt.Sprint(got) != "map[6:1]" {
		t.Errorf("failures = %v, want map[6:1]", got)
	}
	if c.lost != 1 {
		t.Errorf("lost = %d, want 1 (the skipped record)", c.lost)
	}

	huge := strings.Repeat("y", kmsgMaxBuf+1)
	steps := []step{{err: unix.EAGAIN}}
	for i := 0; i < 10; i++ {
		steps = append(steps, step{rec: huge})
	}
	if err := (&kmsgCollector{}).readLoop(scriptedRead(steps, nil), 0, false); !errors.Is(err, unix.EINVAL) {
		t.Errorf("records beyond %d bytes: readLoop = %v, want EINVAL", kmsgMaxBuf, err)
	}
}

func TestKmsgNotADevice(t *testing.T) {
	read := func([]byte, bool) (int, error) { return 0, nil }
	if err := (&kmsgCollector{}).readLoop(read, 0, false); err == nil {
		t.Error("a read of 0 bytes must end the loop with an error")
	}
}

// Without /dev/kmsg (a container) the collector reports success 0 on every
// scrape and the exporter logs it once; the other collectors still answer.
func TestKmsgMissingDevice(t *testing.T) {
	var logBuf bytes.Buffer
	e, err := New(Config{
		ProcPath: "testdata/x86-vm/proc", SysPath: "testdata/x86-vm/sys", PageSize: 4096,
		Enabled: map[string]bool{"kmsg": true},
		Kmsg:    KmsgConfig{Path: filepath.Join(t.TempDir(), "kmsg")},
	}, log.NewLogfmtLogger(&logBuf))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for i := 0; i < 3; i++ {
		got := successOf(t, e)
		if got["kmsg"] != 0 || got["buddyinfo"] != 1 {
			t.Errorf("scrape %d: success = %v, want kmsg 0 and buddyinfo 1", i, got)
		}
	}
	if n := strings.Count(logBuf.String(), "collector=kmsg"); n != 1 {
		t.Errorf("3 scrapes logged %d lines about kmsg, want 1:\n%s", n, logBuf.String())
	}
}

// The exposition: a zero series for every order the machine has (so the
// first failure shows in increase()), timestamps only for orders seen.
func TestKmsgExposition(t *testing.T) {
	c := &kmsgCollector{running: true}
	runScript(t, c, fixtureRecords(t, "linux-6.1-warn-alloc.txt"))
	c.last = [fragmentation.MaxOrders]float64{4: 1.7e9}
	c.overruns, c.lost = 2, 5
	var want strings.Builder
	want.WriteString(`# HELP memfrag_page_allocation_failures_total "page allocation failure: order:N" messages the kernel logged since the exporter started, by order. A lower bound: the kernel rate-limits these messages and omits them for __GFP_NOWARN allocations (most opportunistic high-order ones, e.g. THP), so also watch memfrag_compaction_failures_total, memfrag_compaction_stalls_total and memfrag_thp_fault_fallback_total.
# TYPE memfrag_page_allocation_failures_total counter
`)
	for k := 0; k < 11; k++ {
		n := map[int]int{0: 1, 3: 1, 4: 2}[k]
		fmt.Fprintf(&want, "memfrag_page_allocation_failures_total{order=\"%d\"} %d\n", k, n)
	}
	want.WriteString(`# HELP memfrag_page_allocation_failure_last_timestamp_seconds When the kernel last logged a page allocation failure of this order, including failures still in the kernel's ring buffer from before the exporter started (those timestamps come from the kernel log clock and may be off by seconds). Absent for orders that never failed.
# TYPE memfrag_page_allocation_failure_last_timestamp_seconds gauge
memfrag_page_allocation_failure_last_timestamp_seconds{order="4"} 1.7e+09
# HELP memfrag_kmsg_overruns_total Times the kernel log ring buffer overwrote records before the exporter read them (EPIPE from /dev/kmsg); allocation failures among them were not counted.
# TYPE memfrag_kmsg_overruns_total counter
memfrag_kmsg_overruns_total 2
# HELP memfrag_kmsg_lost_records_total Kernel log records the exporter could not read (overwritten, or too large), from gaps in their sequence numbers.
# TYPE memfrag_kmsg_lost_records_total counter
memfrag_kmsg_lost_records_total 5
`)
	coll := kmsgScrape{c, fragmentation.NewSource("testdata/x86-vm/proc")}
	defer coll.src.Close()
	if err := testutil.CollectAndCompare(coll, strings.NewReader(want.String())); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(coll); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// kmsgScrape runs the kmsg source with a scrape on a fixture's buddyinfo.
type kmsgScrape struct {
	c   *kmsgCollector
	src *fragmentation.Source
}

func (k kmsgScrape) Describe(chan<- *prometheus.Desc) {}
func (k kmsgScrape) Collect(ch chan<- prometheus.Metric) {
	s := scrape{src: k.src}
	var out samples
	out.reset()
	_ = k.c.update(&s, &out)
	out.send(ch)
}

func FuzzKmsgRecord(f *testing.F) {
	files, _ := filepath.Glob("testdata/kmsg/*.txt")
	for _, file := range files {
		for _, s := range fixtureRecords(f, filepath.Base(file)) {
			f.Add([]byte(s.rec))
		}
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		r, ok := parseKmsgRecord(rec)
		if !ok {
			return
		}
		if bytes.IndexByte(r.text, '\n') >= 0 || !bytes.Contains(rec, r.text) {
			t.Fatalf("text %q is not one line of %q", r.text, rec)
		}
		order, comm, ok := matchAllocFailure(r.text)
		if !ok {
			return
		}
		// Independent check of what matched: the comm starts the text and
		// the phrase and the order follow it directly.
		prefix := string(comm) + ": page allocation failure"
		want1 := prefix + ". order:" + strconv.Itoa(order)
		want2 := prefix + ": order:" + strconv.Itoa(order)
		text := string(r.text)
		if !strings.HasPrefix(text, want1) && !strings.HasPrefix(text, want2) {
			t.Fatalf("matched %q as comm %q order %d", text, comm, order)
		}
		if order < 0 || order >= fragmentation.MaxOrders || len(comm) == 0 || len(comm) > 4*(taskCommLen-1) {
			t.Fatalf("matched %q: order %d, comm %q out of range", text, order, comm)
		}
		if strings.Contains(string(comm), ": page allocation failure") {
			t.Fatalf("comm %q contains the phrase", comm)
		}
		// Whatever follows the order's comma cannot change the verdict.
		if end := strings.IndexByte(text[len(prefix)+8:], ','); end >= 0 {
			o2, c2, ok2 := matchAllocFailure(r.text[:len(prefix)+8+end])
			if !ok2 || o2 != order || !bytes.Equal(c2, comm) {
				t.Fatalf("the text after the order changed the match of %q", text)
			}
		}
	})
}

func BenchmarkKmsgObserve(b *testing.B) {
	for _, tc := range []struct{ name, rec string }{
		{"failure", "4,1202,3802112001,-;kworker/u8:2: page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null),cpuset=/,mems_allowed=0\n"},
		{"other", "6,1219,3803200000,-;docker0: port 1(veth12ab) entered blocking state\n SUBSYSTEM=net\n DEVICE=n3\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := &kmsgCollector{}
			rec := []byte(tc.rec)
			b.ReportAllocs()
			for b.Loop() {
				r, ok := parseKmsgRecord(rec)
				if !ok {
					b.Fatal("not a record")
				}
				c.observe(&r, true, 1)
			}
		})
	}
}

// TestKmsgLive writes allocation-failure messages in every historic format
// to the real /dev/kmsg and watches the counters move by exactly that many.
// User-space writes carry facility LOG_USER, which the collector ignores, so
// the collector under test also accepts them, narrowed to this test's task
// name; a second collector with the production filter must count none.
func TestKmsgLive(t *testing.T) {
	livetest.Root(t)
	if mode, err := os.ReadFile("/proc/sys/kernel/printk_devkmsg"); err == nil && strings.TrimSpace(string(mode)) == "off" {
		livetest.Skip(t, "kernel.printk_devkmsg=off: the kernel drops writes to /dev/kmsg")
	}
	if f, err := os.OpenFile(DefaultKmsgPath, os.O_RDWR, 0); err != nil {
		livetest.Skip(t, fmt.Sprintf("cannot open %s: %v", DefaultKmsgPath, err))
	} else {
		f.Close()
	}
	comm := fmt.Sprintf("mfrag%d", os.Getpid()%10000000) // at most 12 bytes: a valid comm
	sentinel := fmt.Sprintf("%s: sentinel %d", comm, time.Now().UnixNano())

	type watched struct {
		c        *kmsgCollector
		live     chan struct{}
		sentinel chan struct{}
	}
	start := func(opts kmsgOptions) *watched {
		w := &watched{live: make(chan struct{}), sentinel: make(chan struct{})}
		var once1, once2 sync.Once
		opts.onLive = func() { once1.Do(func() { close(w.live) }) }
		opts.onRecord = func(text []byte) {
			if string(text) == sentinel {
				once2.Do(func() { close(w.sentinel) })
			}
		}
		w.c = newKmsgWith("", log.NewNopLogger(), opts)
		t.Cleanup(func() { closeWithin(t, w.c) })
		if w.c.err != nil {
			t.Fatalf("starting the reader: %v", w.c.err)
		}
		waitFor(t, w.live, "the reader to catch up with the kernel log")
		return w
	}
	counting := start(kmsgOptions{userFacility: true, comm: comm})
	production := start(kmsgOptions{comm: comm})

	testStart := float64(time.Now().UnixNano()) / 1e9
	lines := []string{
		comm + ": page allocation failure. order:1, mode:0x20",                                                                    // 2.6
		comm + ": page allocation failure: order:2, mode:0x4020",                                                                  // 3.x
		comm + ": page allocation failure: order:3, mode:0x2080020(GFP_ATOMIC)",                                                   // 4.4
		comm + ": page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null),cpuset=/,mems_allowed=0", // 4.10+
		comm + ": page allocation failure: order:4, mode:0x820(GFP_ATOMIC), nodemask=0-1,cpuset=/pod,mems_allowed=0-1",            // again
		comm + ": retrying after page allocation failure: order:5, mode:0x20",                                                     // a mention
		"note: " + comm + ": page allocation failure: order:6, mode:0x20",                                                         // not at the start
		comm + " page allocation failure: order:7, mode:0x20",                                                                     // no colon after the comm
		sentinel,
	}
	for _, l := range lines {
		writeKmsg(t, "<4>"+l+"\n")
	}
	for _, w := range []*watched{counting, production} {
		select {
		case <-w.sentinel:
		case <-time.After(20 * time.Second):
			w.c.mu.Lock()
			err, running, failures := w.c.err, w.c.running, w.c.failures
			w.c.mu.Unlock()
			t.Fatalf("gave up waiting 20 s for the sentinel record; reader running %v, err %v, failures %v", running, err, failures)
		}
	}

	if got := failuresOf(counting.c); fmt.Sprint(got) != "map[1:1 2:1 3:1 4:2]" {
		t.Errorf("failures = %v, want map[1:1 2:1 3:1 4:2]", got)
	}
	if got := failuresOf(production.c); len(got) != 0 {
		t.Errorf("the production filter counted user-space records: %v", got)
	}
	counting.c.mu.Lock()
	last4 := counting.c.last[4]
	counting.c.mu.Unlock()
	if last4 < testStart {
		t.Errorf("last order-4 failure at %f, before the lines were written (%f)", last4, testStart)
	}

	// A new reader, as after an exporter restart: the same records are now
	// history, so they set the timestamp but count nothing.
	restarted := start(kmsgOptions{userFacility: true, comm: comm})
	if got := failuresOf(restarted.c); len(got) != 0 {
		t.Errorf("a restarted reader counted history: %v", got)
	}
	restarted.c.mu.Lock()
	hist4 := restarted.c.last[4]
	restarted.c.mu.Unlock()
	if d := hist4 - last4; d < -60 || d > 60 {
		t.Errorf("order-4 timestamp from history %f, live %f: the kernel clock conversion is off by %.1f s", hist4, last4, d)
	}
}

// writeKmsg writes one record. Each open file gets its own rate limit
// (printk_devkmsg=ratelimit allows a burst of 10), so every line opens anew.
// A line must end in a newline: the kernel keeps a record without one open
// for continuation, and readers do not see it until the next record.
func writeKmsg(t *testing.T, line string) {
	t.Helper()
	f, err := os.OpenFile(DefaultKmsgPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Fatalf("writing %q to %s: %v", line, DefaultKmsgPath, err)
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("gave up waiting 20 s for %s", what)
	}
}

// closeWithin closes c and fails if its reader goroutine does not end.
func closeWithin(t *testing.T, c *kmsgCollector) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("close did not stop the reader within 10 s")
	}
}
