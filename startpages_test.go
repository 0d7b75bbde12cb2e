package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// exeResident is the resident kB of this process's read-only mappings of
// its executable.
func exeResident(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skip("no /proc/self/exe")
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	kb, ours := 0, false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-"):
			ours = strings.Join(f[5:], " ") == exe && !strings.Contains(f[1], "w")
		case ours && len(f) == 3 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			kb += n
		}
	}
	return kb
}

// The executable's clean read-only pages leave the resident set, and the
// program goes on running from the page cache.
func TestReleaseStartupPages(t *testing.T) {
	before := exeResident(t)
	n, err := releaseStartupPages("/proc/self/smaps", "/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	after := exeResident(t)
	if n <= 0 || after >= before {
		t.Fatalf("released %d bytes; resident %d kB before, %d kB after", n, before, after)
	}
	// Code and data from every corner of the binary still work.
	if got := strconv.Quote(strings.Repeat("é", 3)); got != `"ééé"` {
		t.Errorf("after the release: %s", got)
	}
	if _, err := filepath.Glob("/proc/self/*"); err != nil {
		t.Error(err)
	}
	t.Logf("released %d KiB; executable resident %d -> %d kB", n>>10, before, after)
}

// A malformed smaps releases nothing and says so; a mapping of the
// executable with private copies of pages in it, resident or swapped out
// (relocations, a debugger's breakpoints), or whose counts are not known,
// is never released.
func TestReleaseStartupPagesRefuses(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skip("no /proc/self/exe")
	}
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad", "zz-yy r--p 00000000 00:00 0 "+exe+"\nRss: 4 kB\n")
	if n, err := releaseStartupPages(bad, "/proc/self/exe"); err == nil || n != 0 {
		t.Errorf("malformed smaps: %d, %v", n, err)
	}
	badRss := write("badrss", "1000-2000 r--p 00000000 00:00 0 "+exe+"\nRss: many kB\n")
	if n, err := releaseStartupPages(badRss, "/proc/self/exe"); err == nil || n != 0 {
		t.Errorf("malformed Rss: %d, %v", n, err)
	}
	// Addresses no mapping has: madvise would fail, so reaching it shows.
	dirty := write("dirty", "1000-2000 r--p 00000000 00:00 0 "+exe+"\nRss: 4 kB\nAnonymous: 4 kB\nSwap: 0 kB\n"+
		"7000-8000 r--p 00000000 00:00 0 "+exe+"\nRss: 4 kB\nAnonymous: 0 kB\nSwap: 4 kB\n"+
		"9000-a000 r--p 00000000 00:00 0 "+exe+"\nRss: 4 kB\nAnonymous: 0 kB\n"+
		"3000-4000 rw-p 00000000 00:00 0 "+exe+"\nRss: 4 kB\nAnonymous: 0 kB\nSwap: 0 kB\n"+
		"5000-6000 r--p 00000000 00:00 0 /usr/lib/other\nRss: 4 kB\nAnonymous: 0 kB\nSwap: 0 kB\n")
	if n, err := releaseStartupPages(dirty, "/proc/self/exe"); err != nil || n != 0 {
		t.Errorf("dirty, swapped, unknown, writable and other mappings: released %d, %v", n, err)
	}
	clean := write("clean", "1000-2000 r--p 00000000 00:00 0 "+exe+"\nRss: 4 kB\nAnonymous: 0 kB\nSwap: 0 kB\n")
	if _, err := releaseStartupPages(clean, "/proc/self/exe"); err == nil {
		t.Errorf("a clean mapping was not released (madvise of an unmapped range should fail)")
	}
}

// The executable's released pages leave the page cache too, once no one
// maps them, so fault-around has no neighbours to map; what is read again
// comes back from the file, one page at a time.
func TestReleaseStartupPagesDropsPageCache(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil || fs.Type == unix.TMPFS_MAGIC {
		t.Skipf("%s is on tmpfs (or unknown: %v), whose pages no fadvise drops", dir, err)
	}
	exe := filepath.Join(dir, "exe")
	const size = 64 * 4096
	content := bytes.Repeat([]byte("memfrag\n"), size/8)
	f, err := os.Create(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	// Not synced: an executable written moments ago has dirty pages.
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	cached := func() int {
		vec := make([]byte, size/4096)
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), size, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		n := 0
		for _, v := range vec {
			n += int(v & 1)
		}
		return n
	}
	if !bytes.Equal(m, content) || cached() != size/4096 {
		t.Fatalf("the mapping is not all read and cached: %d of %d pages", cached(), size/4096)
	}
	link := filepath.Join(dir, "self-exe")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	lo := uintptr(unsafe.Pointer(&m[0]))
	smaps := filepath.Join(dir, "smaps")
	if err := os.WriteFile(smaps, fmt.Appendf(nil, "%x-%x r--p 00000000 00:00 0 %s\nRss: %d kB\nAnonymous: 0 kB\nSwap: 0 kB\n", lo, lo+size, exe, size>>10), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := releaseStartupPages(smaps, link)
	if err != nil || n != size {
		t.Fatalf("released %d bytes, %v; want %d", n, err, size)
	}
	if c := cached(); c > 1 {
		t.Errorf("%d of %d pages still in the page cache after the release", c, size/4096)
	}
	if m[size-1] != '\n' || cached() > 2 {
		t.Errorf("reading one page back: %q, %d pages cached; want one page read, without readahead", m[size-1], cached())
	}
	if !bytes.Equal(m, content) {
		t.Error("the mapping reads back other bytes")
	}
}

// An executable this user may run but not open (mode 0711, or gone from
// its path) still has its pages unmapped; only the page cache stays, and
// the error says so.
func TestReleaseStartupPagesUnopenable(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "exe")
	const size = 16 * 4096
	if err := os.WriteFile(exe, bytes.Repeat([]byte("x"), size), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	_ = m[size-1] // resident
	gone := filepath.Join(dir, "gone")
	link := filepath.Join(dir, "self-exe")
	if err := os.Symlink(gone, link); err != nil {
		t.Fatal(err)
	}
	lo := uintptr(unsafe.Pointer(&m[0]))
	smaps := filepath.Join(dir, "smaps")
	if err := os.WriteFile(smaps, fmt.Appendf(nil, "%x-%x r--p 00000000 00:00 0 %s\nRss: 64 kB\nAnonymous: 0 kB\nSwap: 0 kB\n", lo, lo+size, gone), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := releaseStartupPages(smaps, link)
	if n != 64<<10 || err == nil || !strings.Contains(err.Error(), "page cache") {
		t.Fatalf("released %d bytes, %v; want 64 KiB and an error about the page cache", n, err)
	}
	if rss := mappingRss(t, lo); rss != 0 {
		t.Errorf("the mapping still has %d kB resident", rss)
	}
}

// mappingRss is the resident kB of this process's mapping starting at lo.
func mappingRss(t *testing.T, lo uintptr) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			in = strings.HasPrefix(f[0], fmt.Sprintf("%x-", lo))
		case in && len(f) == 3 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no mapping at %x", lo)
	return 0
}
