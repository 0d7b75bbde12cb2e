package procfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
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

// A buffer too small for the file grows and the file is read again from the
// start: an integer sysctl answers any read at an offset but 0 with EOF, so
// reading on from where the small buffer ended would cut the value short.
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
