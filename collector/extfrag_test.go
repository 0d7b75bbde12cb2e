package collector

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/memfrag/memfrag_exporter/internal/livetest"
)

func TestParseTracepointFormat(t *testing.T) {
	real, err := os.ReadFile("testdata/extfrag/mm_page_alloc_extfrag.format")
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseTracepointFormat(real)
	if err != nil {
		t.Fatal(err)
	}
	if f.name != "mm_page_alloc_extfrag" || f.id != 650 {
		t.Errorf("name %q id %d, want mm_page_alloc_extfrag 650", f.name, f.id)
	}
	l, err := layoutFromFormat(f, 9)
	if err != nil {
		t.Fatal(err)
	}
	if want := (extfragLayout{allocType: 24, fallbackType: 28, fallbackOrder: 20, changeOwnership: 32, pageblockOrder: 9}); l != want {
		t.Errorf("layout %+v, want %+v", l, want)
	}
	if fld := f.fields["pfn"]; fld != (tracepointField{offset: 8, size: 8}) {
		t.Errorf("pfn %+v", fld)
	}

	bad := []struct {
		name, text, want string
	}{
		{"no ID", "name: x\nformat:\n\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n", "no ID"},
		{"bad ID", "ID: 12x\n", "bad ID"},
		{"field without size", "ID: 1\n\tfield:int a;\toffset:8;\tsigned:1;\t\n", "lacks"},
		{"field twice", "ID: 1\n\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:int a;\toffset:12;\tsize:4;\tsigned:1;\n", "twice"},
		{"bad offset", "ID: 1\n\tfield:int a;\toffset:-8;\tsize:4;\tsigned:1;\n", "bad offset"},
		{"no name", "ID: 1\n\tfield:;\toffset:8;\tsize:4;\tsigned:1;\n", "no field name"},
	}
	for _, tt := range bad {
		_, err := parseTracepointFormat([]byte(tt.text))
		if !errors.Is(err, errMalformedFormat) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want errMalformedFormat with %q", tt.name, err, tt.want)
		}
	}
}

func TestLayoutFromFormat(t *testing.T) {
	base := func() tracepointFormat {
		return tracepointFormat{name: "e", id: 1, fields: map[string]tracepointField{
			"alloc_migratetype":    {24, 4, true},
			"fallback_migratetype": {28, 4, true},
			"fallback_order":       {20, 4, true},
			"change_ownership":     {32, 4, true},
		}}
	}
	tests := []struct {
		name   string
		change func(f *tracepointFormat)
		order  int
		want   string
	}{
		{"ok", func(*tracepointFormat) {}, 9, ""},
		{"older kernel without change_ownership", func(f *tracepointFormat) { delete(f.fields, "change_ownership") }, 9, "no field change_ownership"},
		{"8-byte field", func(f *tracepointFormat) { f.fields["fallback_order"] = tracepointField{16, 8, false} }, 9, "4-byte"},
		{"unaligned field", func(f *tracepointFormat) { f.fields["alloc_migratetype"] = tracepointField{26, 4, true} }, 9, "4-byte"},
		{"pageblock order out of range", func(*tracepointFormat) {}, 31, "out of range"},
	}
	for _, tt := range tests {
		f := base()
		tt.change(&f)
		_, err := layoutFromFormat(f, tt.order)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestExtfragIndex(t *testing.T) {
	seen := map[int]bool{}
	for a := range extfragMaxTypes {
		for f := range extfragMaxTypes {
			for _, frag := range []bool{false, true} {
				for _, claimed := range []bool{false, true} {
					i := extfragIndex(a, f, frag, claimed)
					if i < 0 || i >= extfragCounters || seen[i] {
						t.Fatalf("index(%d,%d,%v,%v) = %d: out of range or taken", a, f, frag, claimed, i)
					}
					seen[i] = true
				}
			}
		}
	}
}

func FuzzParseTracepointFormat(f *testing.F) {
	real, _ := os.ReadFile("testdata/extfrag/mm_page_alloc_extfrag.format")
	f.Add(real)
	f.Add([]byte("ID: 1\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, err := parseTracepointFormat(data)
		if err != nil {
			return
		}
		for name, fld := range tf.fields {
			if name == "" || fld.offset > 1<<16 || fld.size > 1<<16 {
				t.Fatalf("field %q %+v accepted", name, fld)
			}
		}
		layoutFromFormat(tf, 9)
	})
}

// extfragFixture is an x86-vm tree with the extfrag collector's files as
// change makes them.
func extfragFixture(t *testing.T, change func(root string) error) (proc, sys string) {
	t.Helper()
	root := copyTree(t, "x86-vm")
	if err := change(root); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "proc"), filepath.Join(root, "sys")
}

func writeFixture(root, rel string, data []byte) error {
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

const extfragFormatRel = "sys/kernel/tracing/events/kmem/mm_page_alloc_extfrag/format"

// TestExtfragCleanFailure: without the tracepoint, with a format that does
// not parse or lacks a field, or without pagetypeinfo, the collector reports
// success 0 and logs once; the others still answer. None of these fixtures
// reaches the kernel.
func TestExtfragCleanFailure(t *testing.T) {
	realFormat, _ := os.ReadFile("testdata/extfrag/mm_page_alloc_extfrag.format")
	pti, _ := os.ReadFile("testdata/extfrag/pagetypeinfo")
	tests := []struct {
		name   string
		change func(root string) error
		want   string
	}{
		{"kernel without the tracepoint", func(r string) error {
			if err := writeFixture(r, "proc/pagetypeinfo", pti); err != nil {
				return err
			}
			return os.MkdirAll(filepath.Join(r, "sys/kernel/tracing/events/kmem"), 0o755)
		}, "no tracepoint kmem:mm_page_alloc_extfrag"},
		{"no tracefs at all", func(r string) error { return writeFixture(r, "proc/pagetypeinfo", pti) }, "no tracepoint"},
		{"format that does not parse", func(r string) error {
			if err := writeFixture(r, "proc/pagetypeinfo", pti); err != nil {
				return err
			}
			return writeFixture(r, extfragFormatRel, []byte("name: mm_page_alloc_extfrag\nID: many\n"))
		}, "malformed tracepoint format"},
		{"format without the fields", func(r string) error {
			if err := writeFixture(r, "proc/pagetypeinfo", pti); err != nil {
				return err
			}
			return writeFixture(r, extfragFormatRel, bytes.ReplaceAll(realFormat, []byte("fallback_migratetype"), []byte("fallback_type")))
		}, "no field fallback_migratetype"},
		{"no pagetypeinfo", func(r string) error { return writeFixture(r, extfragFormatRel, realFormat) }, "pagetypeinfo"},
		{"old debugfs location, malformed", func(r string) error {
			return writeFixture(r, "sys/kernel/debug/tracing/events/kmem/mm_page_alloc_extfrag/format", []byte("ID: 1\n\tfield:int a;\toffset:x;\tsize:4;\tsigned:1;\n"))
		}, "kernel/debug/tracing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc, sys := extfragFixture(t, tt.change)
			var logBuf bytes.Buffer
			e, err := New(Config{ProcPath: proc, SysPath: sys, PageSize: 4096, Enabled: map[string]bool{"extfrag": true}},
				log.NewLogfmtLogger(&logBuf))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			for i := range 3 {
				got := successOf(t, e)
				if got["extfrag"] != 0 || got["buddyinfo"] != 1 || got["zoneinfo"] != 1 {
					t.Errorf("scrape %d: success %v, want extfrag 0 and buddyinfo, zoneinfo 1", i, got)
				}
			}
			if n := strings.Count(logBuf.String(), "collector=extfrag"); n != 1 {
				t.Errorf("3 scrapes logged %d lines about extfrag, want 1:\n%s", n, logBuf.String())
			}
			if !strings.Contains(logBuf.String(), tt.want) {
				t.Errorf("log does not say %q:\n%s", tt.want, logBuf.String())
			}
		})
	}
}

// TestExtfragUnprivileged runs the setup on the real kernel as nobody, in a
// child process: it must fail with an error that says what is missing.
func TestExtfragUnprivileged(t *testing.T) {
	if os.Getenv("MEMFRAG_EXTFRAG_CHILD") == "1" {
		_, _, _, err := setupExtfrag(extfragConfig{procPath: "/proc", sysPath: "/sys"}, log.NewNopLogger())
		fmt.Printf("setup error: %v\n", err)
		return
	}
	livetest.Root(t)
	requireExtfragTracepoint(t)
	// nobody cannot enter the go build cache: run a copy of the test binary.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "memfrag-extfrag-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "collector.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestExtfragUnprivileged$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MEMFRAG_EXTFRAG_CHILD=1", "MEMFRAG_REQUIRE_LIVE=0")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	line := regexp.MustCompile(`setup error: (.*)`).FindSubmatch(out)
	if line == nil || string(line[1]) == "<nil>" {
		t.Fatalf("setup as nobody did not fail:\n%s", out)
	}
	if !bytes.Contains(line[1], []byte("permission denied")) && !bytes.Contains(line[1], []byte("operation not permitted")) {
		t.Errorf("setup as nobody failed without saying permission: %s", line[1])
	}
	t.Logf("as nobody: %s", line[1])
}

func requireExtfragTracepoint(t testing.TB) {
	t.Helper()
	if _, err := readExtfragFormat("/sys", log.NewNopLogger()); err != nil {
		livetest.Skip(t, fmt.Sprintf("this kernel offers no extfrag tracepoint: %v", err))
	}
}

// traceLine matches the fields of a mm_page_alloc_extfrag line of a tracefs
// instance's trace file.
var traceLine = regexp.MustCompile(`mm_page_alloc_extfrag: .*fallback_order=(\d+) pageblock_order=(\d+) alloc_migratetype=(\d+) fallback_migratetype=(\d+) fragmenting=(\d) change_ownership=(\d)`)

// extfragKey is one counter: alloc type, fallback type, fragmenting, claimed.
type extfragKey struct {
	alloc, fallback int
	frag, claimed   bool
}

// TestExtfragLive provokes fallbacks on the real kernel (unmovable socket
// buffers, in bursts, until at least 50 events or 4 GiB) and checks our
// counters against a tracefs instance recording the same events in the
// same window: per pair, fragmenting and change_ownership, exactly. A
// second collector judges by pageblock order 11 (above any fallback order
// x86 has), so that both sides of the fragmenting branch are checked
// against the trace's fallback_order.
func TestExtfragLive(t *testing.T) {
	livetest.Root(t)
	requireExtfragTracepoint(t)
	tracefs, err := findTracefs("/sys", log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	inst := filepath.Join(tracefs, "instances", fmt.Sprintf("memfrag-extfrag-%d", os.Getpid()))
	if err := os.Mkdir(inst, 0o700); err != nil {
		t.Fatalf("creating a tracefs instance: %v", err)
	}
	defer os.Remove(inst)
	write := func(rel, v string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(inst, rel), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("buffer_size_kb", "4096")
	write("events/kmem/mm_page_alloc_extfrag/enable", "1")
	defer write("events/kmem/mm_page_alloc_extfrag/enable", "0")

	logger := log.NewNopLogger()
	ours := &extfragCollector{cfg: extfragConfig{procPath: "/proc", sysPath: "/sys"}, logger: logger}
	ours.setup()
	if ours.err != nil {
		t.Fatal(ours.err)
	}
	defer ours.close()
	alt := &extfragCollector{cfg: extfragConfig{procPath: "/proc", sysPath: "/sys", pageblockOrder: 11}, logger: logger}
	alt.setup()
	if alt.err != nil {
		t.Fatal(alt.err)
	}
	defer alt.close()

	snapshot := func(c *extfragCollector) map[extfragKey]uint64 {
		t.Helper()
		if err := c.counter.read(); err != nil {
			t.Fatal(err)
		}
		out := map[extfragKey]uint64{}
		for a := range extfragMaxTypes {
			for f := range extfragMaxTypes {
				for _, frag := range []bool{false, true} {
					for _, claimed := range []bool{false, true} {
						if n := c.counter.value(extfragIndex(a, f, frag, claimed)); n > 0 {
							out[extfragKey{a, f, frag, claimed}] = n
						}
					}
				}
			}
		}
		return out
	}
	delta := func(after, before map[extfragKey]uint64) map[extfragKey]uint64 {
		out := map[extfragKey]uint64{}
		for k, v := range after {
			if d := v - before[k]; d > 0 {
				out[k] = d
			}
		}
		return out
	}

	// Other work on the machine may fire the event in the microseconds
	// between the snapshots and the trace's start and stop; such a window
	// is tried again.
	for attempt := 1; attempt <= 3; attempt++ {
		write("trace", "")
		write("tracing_on", "1")
		before, beforeAlt := snapshot(ours), snapshot(alt)
		start := time.Now()
		bursts, mib := provokeFallbacks(t, func() uint64 {
			var n uint64
			for _, v := range delta(snapshot(ours), before) {
				n += v
			}
			return n
		})
		gotOurs, gotAlt := delta(snapshot(ours), before), delta(snapshot(alt), beforeAlt)
		write("tracing_on", "0")
		trace, err := os.ReadFile(filepath.Join(inst, "trace"))
		if err != nil {
			t.Fatal(err)
		}
		wantOurs, wantAlt := map[extfragKey]uint64{}, map[extfragKey]uint64{}
		var total uint64
		for _, m := range traceLine.FindAllSubmatch(trace, -1) {
			v := make([]int, 6)
			for i := range v {
				v[i], _ = strconv.Atoi(string(m[i+1]))
			}
			if v[1] != ours.order {
				t.Fatalf("the trace says pageblock_order=%d, the collector judges by %d", v[1], ours.order)
			}
			wantOurs[extfragKey{v[2], v[3], v[4] == 1, v[5] == 1}]++
			wantAlt[extfragKey{v[2], v[3], v[0] < 11, v[5] == 1}]++
			total++
		}
		lost := bytes.Contains(trace, []byte("LOST")) || bytes.Contains(trace, []byte("entries-in-buffer/entries-written: 0/"))
		t.Logf("attempt %d: %d bursts, %d MiB of socket buffers in %v: trace %d events %v; ours %v; order-11 collector %v (trace %v)",
			attempt, bursts, mib, time.Since(start).Round(time.Millisecond), total, wantOurs, gotOurs, gotAlt, wantAlt)
		if total == 0 {
			t.Fatalf("no fallback events provoked (%d MiB of unmovable memory)", mib)
		}
		if !lost && maps.Equal(gotOurs, wantOurs) && maps.Equal(gotAlt, wantAlt) {
			if s, err := ours.counter.prog.Stats(); err == nil && s.RunCount > 0 {
				t.Logf("program: %d runs, %v (%v a run; kernel.bpf_stats_enabled)", s.RunCount, s.Runtime, s.Runtime/time.Duration(s.RunCount))
			}
			return
		}
	}
	t.Fatal("in 3 windows the counters never matched the trace exactly")
}

// provokeFallbacks fills socket buffers (unmovable kernel memory) in bursts
// of 2,000 socket pairs until counted reports 50 events or 4 GiB are held,
// then frees everything.
func provokeFallbacks(t *testing.T, counted func() uint64) (bursts, mib int) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	saved := lim
	lim.Cur = lim.Max
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	buf := make([]byte, 64<<10)
	held := 0
	for held < 4<<30 && counted() < 50 && uint64(len(fds)+4000+64) < lim.Cur {
		bursts++
		for range 2000 {
			p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Logf("socketpair: %v", err)
				return bursts, held >> 20
			}
			fds = append(fds, p[0], p[1])
			for {
				n, err := unix.Write(p[0], buf)
				if err != nil {
					break
				}
				held += n
			}
		}
	}
	return bursts, held >> 20
}

// TestExtfragExporterLive serves the collector through the Exporter on the
// real kernel: success 1, the pairs the kernel falls back between from the
// first scrape, and metrics that pass the linter.
func TestExtfragExporterLive(t *testing.T) {
	livetest.Root(t)
	requireExtfragTracepoint(t)
	e, err := New(Config{ProcPath: "/proc", SysPath: "/sys", Enabled: map[string]bool{"extfrag": true}}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := successOf(t, e); got["extfrag"] != 1 {
		t.Fatalf("success %v, want extfrag 1", got)
	}
	problems, err := testutil.CollectAndLint(e, "memfrag_extfrag_events_total", "memfrag_extfrag_pageblock_claims_total", "memfrag_extfrag_pageblock_order")
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
	// 6 ordered pairs of Unmovable, Movable, Reclaimable x fragmenting.
	if n := testutil.CollectAndCount(e, "memfrag_extfrag_events_total"); n < 12 {
		t.Errorf("%d extfrag series, want at least 12", n)
	}
	if n := testutil.CollectAndCount(e, "memfrag_extfrag_pageblock_claims_total"); n < 6 {
		t.Errorf("%d claim series, want at least 6", n)
	}
}

// TestExtfragMountsTracefs: on a real sysfs without tracefs at
// kernel/tracing the collector mounts it there; where it is mounted it
// leaves it alone.
func TestExtfragMountsTracefs(t *testing.T) {
	livetest.Root(t)
	dir := "/sys/kernel/tracing"
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		livetest.Skip(t, fmt.Sprintf("no %s: %v", dir, err))
	}
	wasMounted := st.Type == unix.TRACEFS_MAGIC
	mounted, err := mountTracefs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mounted == wasMounted {
		t.Fatalf("tracefs mounted before: %v; mountTracefs mounted: %v", wasMounted, mounted)
	}
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TRACEFS_MAGIC {
		t.Fatalf("after mountTracefs %s is not tracefs (%x, %v)", dir, st.Type, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "events/kmem/mm_page_alloc_extfrag/format")); err != nil {
		t.Errorf("tracefs at %s has no extfrag event: %v", dir, err)
	}
	again, err := mountTracefs(dir)
	if again || err != nil {
		t.Errorf("mountTracefs on a mounted tracefs: %v, %v; want false, nil", again, err)
	}
	t.Logf("tracefs was mounted: %v; mounted now: %v", wasMounted, mounted)
}
