package procfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/memfrag/memfrag_exporter/internal/livetest"
)

func read(t *testing.T, f *File) string {
	t.Helper()
	var got string
	if err := f.Do(func(data []byte) error { got = string(data); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// A kept descriptor sees the file's current content on every read, however
// large it grows, and an absent file is reported as fs.ErrNotExist.
func TestFileRereads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buddyinfo")
	f := New(path)
	defer f.Close()
	if err := f.Do(func([]byte) error { return nil }); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("absent file: err = %v, want fs.ErrNotExist", err)
	}
	for _, content := range []string{"first\n", strings.Repeat("x", 10000), "short"} {
		// Overwrite in place (same inode), as the kernel regenerates a seq_file.
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := read(t, f); got != content {
			t.Fatalf("read %d bytes, want %d", len(got), len(content))
		}
	}
	// reads from /proc work the same way
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		p := New("/proc/self/stat")
		defer p.Close()
		if got := read(t, p); !strings.Contains(got, "(") {
			t.Errorf("/proc/self/stat read %q", got)
		}
	}
}

func TestFileErrorFromCallback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("x"), 0o644)
	f := New(path)
	defer f.Close()
	want := errors.New("bad")
	if err := f.Do(func([]byte) error { return want }); !errors.Is(err, want) {
		t.Fatalf("err = %v", err)
	}
}

func TestTokenizers(t *testing.T) {
	f := Fields{Rest: []byte("  Node 0,\tzone   Normal \r\n")}
	var words []string
	for w := f.Next(); w != nil; w = f.Next() {
		words = append(words, string(w))
	}
	if got := strings.Join(words, "|"); got != "Node|0,|zone|Normal" {
		t.Errorf("fields %q", got)
	}
	for _, tc := range []struct {
		in string
		n  uint64
		ok bool
	}{
		{"0", 0, true}, {"18446744073709551615", 0, false}, {"9999999999999999999", 9999999999999999999, true},
		{"", 0, false}, {"-1", 0, false}, {"1e3", 0, false}, {"+1", 0, false},
	} {
		n, ok := ParseUint([]byte(tc.in))
		if n != tc.n || ok != tc.ok {
			t.Errorf("ParseUint(%q) = %d, %v", tc.in, n, ok)
		}
	}
	if n, ok := ParseInt([]byte("-42")); n != -42 || !ok {
		t.Errorf("ParseInt(-42) = %d, %v", n, ok)
	}
	if _, ok := ParseInt([]byte("-")); ok {
		t.Error("ParseInt(-) accepted")
	}
	var lines [][]byte
	Lines([]byte("a\n\nb"), func(l []byte) error { lines = append(lines, l); return nil })
	if !bytes.Equal(bytes.Join(lines, []byte("|")), []byte("a||b")) {
		t.Errorf("lines %q", lines)
	}
}

func BenchmarkFileRead(b *testing.B) {
	f := New("/proc/buddyinfo")
	defer f.Close()
	if err := f.Do(func([]byte) error { return nil }); err != nil {
		b.Skip(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		f.Do(func([]byte) error { return nil })
	}
}

// The hand-written tokenizers agree with the standard library wherever the
// input is in their domain: ASCII space/tab-separated decimal fields.
func FuzzTokenizers(f *testing.F) {
	f.Add([]byte("Node 0, zone   Normal 127146  68215 \t 1614\r\n"))
	f.Add([]byte("18446744073709551615 -9223372036854775808 007"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fields := Fields{Rest: data}
		var got []string
		for w := fields.Next(); w != nil; w = fields.Next() {
			got = append(got, string(w))
			if u, ok := ParseUint(w); ok {
				if want, err := strconv.ParseUint(string(w), 10, 64); err != nil || want != u {
					t.Fatalf("ParseUint(%q) = %d; strconv: %d, %v", w, u, want, err)
				}
			}
			if n, ok := ParseInt(w); ok {
				if want, err := strconv.ParseInt(string(w), 10, 64); err != nil || want != n {
					t.Fatalf("ParseInt(%q) = %d; strconv: %d, %v", w, n, want, err)
				}
			}
		}
		ascii := true
		for _, c := range data {
			if c >= 0x80 || c == '\v' || c == '\f' {
				ascii = false
			}
		}
		if ascii {
			if want := strings.Fields(string(data)); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("Fields %q, strings.Fields %q", got, want)
			}
		}
	})
}

// A buffer too small for an integer sysctl grows and the file is read again
// from the start: a sysctl answers any read at an offset but 0 with EOF, so
// the read that goes on where the small buffer ended finds nothing.
func TestFileGrowsOnSysctl(t *testing.T) {
	const path = "/proc/sys/vm/min_free_kbytes"
	want, err := os.ReadFile(path)
	if err != nil {
		livetest.Skip(t, "no "+path+": "+err.Error())
	}
	f := newSized(path, 1)
	defer f.Close()
	if got := read(t, f); got != string(want) {
		t.Errorf("read %q through a 1-byte starting buffer, want %q", got, want)
	}
	// A regular file larger than the buffer reads whole as well.
	long := filepath.Join(t.TempDir(), "long")
	content := strings.Repeat("Node 0, zone Normal 1 2 3\n", 100)
	if err := os.WriteFile(long, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	g := newSized(long, 1)
	defer g.Close()
	if got := read(t, g); got != content {
		t.Errorf("read %d bytes of a %d-byte file", len(got), len(content))
	}
}

func TestNodeZone(t *testing.T) {
	for _, tc := range []struct{ in, node, zone, err string }{
		{"Node 0, zone   Normal 1 2", "0", "Normal", ""},
		{"Node 63, zone DMA32, type Movable", "63", "DMA32,", ""},
		{"Nod 0, zone DMA", "", "", `want "Node"`},
		{"Node 0 zone DMA", "", "", "want node id and comma"},
		{"Node x, zone DMA", "", "", "is not a number"},
		{"Node 12345678901, zone DMA", "", "", "is not a number"},
		{"Node 0, zones DMA", "", "", `want "zone"`},
		{"Node 0, zone", "", "", "missing zone name"},
	} {
		node, zone, err := NodeZone(&Fields{Rest: []byte(tc.in)})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || string(node) != tc.node || string(zone) != tc.zone {
			t.Errorf("%q: %q, %q, %v; want %q, %q", tc.in, node, zone, err, tc.node, tc.zone)
		}
	}
}

// recordReads records the offsets of every read of path until the test ends.
func recordReads(t *testing.T, path string) *[]int {
	t.Helper()
	var offs []int
	readHook = func(p string, off int) {
		if p == path {
			offs = append(offs, off)
		}
	}
	t.Cleanup(func() { readHook = nil })
	return &offs
}

// A first read of a seq_file larger than the starting buffer goes on at the
// offset where each read stopped: the kernel generates the content once (a
// read back at offset 0 would make it walk its zones and free lists again).
// A file ending exactly where the buffer filled up is read again from 0,
// once, since that is how an integer sysctl's EOF looks.
func TestFirstReadOnce(t *testing.T) {
	for _, path := range []string{"/proc/zoneinfo", "/proc/pagetypeinfo", "/proc/vmstat"} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			if _, err := os.ReadFile(path); err != nil {
				livetest.Skip(t, "cannot read "+path+": "+err.Error())
			}
			offs := recordReads(t, path)
			f := newSized(path, 128)
			defer f.Close()
			got := read(t, f)
			if len(got) <= 128 {
				t.Skipf("%s is only %d bytes", path, len(got))
			}
			zeros := 0
			for i, o := range *offs {
				if o == 0 {
					zeros++
				}
				if i > 0 && o <= (*offs)[i-1] {
					t.Errorf("read at offset %d after one at %d: %v", o, (*offs)[i-1], *offs)
				}
			}
			if zeros != 1 {
				t.Errorf("%d reads at offset 0 (%v), want 1", zeros, *offs)
			}
			// The second read fits the grown buffer: one read and the
			// one that finds the end.
			*offs = nil
			read(t, f)
			if want := []int{0, len(got)}; !slices.Equal(*offs, want) {
				t.Errorf("second read at offsets %v, want %v", *offs, want)
			}
		})
	}
	t.Run("exact fit", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "f")
		content := strings.Repeat("x", 127) + "\n"
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		offs := recordReads(t, path)
		f := newSized(path, 128)
		defer f.Close()
		if got := read(t, f); got != content {
			t.Fatalf("read %q", got)
		}
		// Full at 128, nothing at 128, then from the start into 256
		// bytes and the read that finds the end.
		if want := []int{0, 128, 0, 128}; !slices.Equal(*offs, want) {
			t.Errorf("offsets %v, want %v", *offs, want)
		}
	})
}

// A file of one record is read with one read once its buffer fits it; a
// growing first read still goes on where it stopped, and an integer sysctl
// that fills the buffer exactly is read again from the start.
func TestOneRecordRead(t *testing.T) {
	for _, path := range []string{"/proc/self/stat", "/proc/sys/vm/min_free_kbytes", "/proc/self/net/netstat", "/sys/kernel/mm/transparent_hugepage/enabled"} {
		t.Run(strings.ReplaceAll(path, "/", "_"), func(t *testing.T) {
			want, err := os.ReadFile(path)
			if err != nil {
				livetest.Skip(t, "cannot read "+path+": "+err.Error())
			}
			f := NewOne(path)
			defer f.Close()
			read(t, f) // sizes the buffer
			offs := recordReads(t, path)
			got := read(t, f)
			if !slices.Equal(*offs, []int{0}) {
				t.Errorf("reads at offsets %v, want [0]", *offs)
			}
			if path != "/proc/self/stat" && path != "/proc/self/net/netstat" && got != string(want) {
				t.Errorf("read %q, os.ReadFile %q", got, want)
			}
			if len(got) == 0 || got[len(got)-1] != '\n' {
				t.Errorf("read %q: not a whole file", got)
			}
		})
	}
	for _, tc := range []struct {
		name    string
		content string
		offs    []int
	}{
		{"exact fit", strings.Repeat("x", 127) + "\n", []int{0, 128, 0}},
		{"grows", strings.Repeat("y", 1000) + "\n", []int{0, 128, 256, 512, 1001}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			offs := recordReads(t, path)
			f := NewOne(path)
			defer f.Close()
			if got := read(t, f); got != tc.content {
				t.Fatalf("read %q", got)
			}
			if !slices.Equal(*offs, tc.offs) {
				t.Errorf("offsets %v, want %v", *offs, tc.offs)
			}
		})
	}
}

// The same, counted in system calls: strace the test binary reading
// /proc/zoneinfo once through a 128-byte starting buffer and count the
// pread64 calls at offset 0.
func TestFirstReadOnceStrace(t *testing.T) {
	if os.Getenv("PROCFILE_STRACE_CHILD") == "1" {
		f := newSized("/proc/zoneinfo", 128)
		defer f.Close()
		read(t, f)
		return
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("no strace")
	}
	if _, err := os.ReadFile("/proc/zoneinfo"); err != nil {
		livetest.Skip(t, "no /proc/zoneinfo: "+err.Error())
	}
	log := filepath.Join(t.TempDir(), "strace")
	cmd := exec.Command(strace, "-f", "-qq", "-e", "trace=openat,pread64", "-o", log,
		os.Args[0], "-test.run=^TestFirstReadOnceStrace$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PROCFILE_STRACE_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot strace here: %v: %s", err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	fd := ""
	var preads []string
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, `openat(AT_FDCWD, "/proc/zoneinfo"`); i >= 0 {
			if j := strings.LastIndex(line, "= "); j >= 0 {
				fd = strings.TrimSpace(line[j+2:])
			}
			continue
		}
		if fd != "" && strings.Contains(line, "pread64("+fd+",") {
			preads = append(preads, line)
		}
	}
	if fd == "" || len(preads) < 2 {
		t.Fatalf("strace shows no reads of /proc/zoneinfo (fd %q):\n%s", fd, b)
	}
	atZero := 0
	for _, p := range preads {
		if strings.HasSuffix(strings.TrimSpace(p[:strings.LastIndex(p, ")")]), ", 0") {
			atZero++
		}
	}
	t.Logf("%d pread64 calls of /proc/zoneinfo, %d at offset 0", len(preads), atZero)
	if atZero != 1 {
		t.Errorf("%d pread64 calls at offset 0, want 1:\n%s", atZero, strings.Join(preads, "\n"))
	}
}

// Stream hands the file on in pieces, each read going on at the offset, and
// what fn consumes adds up to the file; a piece fn does not consume grows
// the buffer. On the live /proc/zoneinfo only the first read is at 0.
func TestStream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	var content strings.Builder
	for i := range 500 {
		content.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	if err := os.WriteFile(path, []byte(content.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 7, 100, 1 << 16} {
		f := New(path)
		var got []byte
		err := f.Stream(chunk, func(data []byte, final bool) (int, error) {
			n := len(data)
			if !final {
				n = bytes.LastIndexByte(data, '\n') + 1 // whole lines only
			}
			got = append(got, data[:n]...)
			return n, nil
		})
		f.Close()
		if err != nil || string(got) != content.String() {
			t.Fatalf("chunk %d: %v, %d of %d bytes", chunk, err, len(got), content.Len())
		}
	}
	if err := New(filepath.Join(t.TempDir(), "absent")).Stream(8, func([]byte, bool) (int, error) { return 0, nil }); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
	if _, err := os.ReadFile("/proc/zoneinfo"); err != nil {
		livetest.Skip(t, "no /proc/zoneinfo: "+err.Error())
	}
	offs := recordReads(t, "/proc/zoneinfo")
	f := New("/proc/zoneinfo")
	defer f.Close()
	total := 0
	if err := f.Stream(512, func(data []byte, _ bool) (int, error) { total += len(data); return len(data), nil }); err != nil {
		t.Fatal(err)
	}
	if len(*offs) < 3 || (*offs)[0] != 0 || total < 1024 {
		t.Fatalf("offsets %v for %d bytes", *offs, total)
	}
	for i := 1; i < len(*offs); i++ {
		if (*offs)[i] <= (*offs)[i-1] {
			t.Errorf("read at %d after %d", (*offs)[i], (*offs)[i-1])
		}
	}
}

// A file that has grown past rawLimit, and a slow one from the start, is
// read the same way with ordinary system calls.
func TestLargeAndSlowFiles(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	content := strings.Repeat("0123456789abcdef\n", (rawLimit+4096)/17)
	if err := os.WriteFile(big, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	f := New(big)
	defer f.Close()
	for i := range 2 {
		if got := read(t, f); got != content {
			t.Fatalf("read %d: %d bytes, want %d", i, len(got), len(content))
		}
		if i == 0 && !(f.last > rawLimit) {
			t.Fatalf("after a %d-byte read the next one is still raw (last %d)", len(content), f.last)
		}
	}
	var streamed int
	if err := f.Stream(64<<10, func(data []byte, final bool) (int, error) { streamed += len(data); return len(data), nil }); err != nil {
		t.Fatal(err)
	}
	if streamed != len(content) {
		t.Errorf("streamed %d bytes, want %d", streamed, len(content))
	}
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := NewSlow(small)
	defer s.Close()
	if got := read(t, s); got != "20\n" || !s.slow {
		t.Errorf("slow file read %q", got)
	}
}
