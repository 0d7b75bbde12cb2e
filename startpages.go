package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"golang.org/x/sys/unix"
)

// Most of the exporter's resident memory is its own executable: the kernel
// maps a file's pages 64 KiB at a time around each one touched (fault-around,
// of pages already in the page cache), and start-up touches most of the
// binary (every package's init, flag parsing, the web config and TLS
// set-up, the BPF loader, the landing page's templates): about 11 of 15 MiB
// resident were program text and read-only data. A scrape uses a few
// hundred scattered pages of them, and with fault-around those kept 7.4 MiB
// resident. Once the first scrape has been answered, start-up is over, and
// releaseStartupPages
//   - marks the executable's clean read-only mappings MADV_RANDOM, so that a
//     page read back from the file comes alone, without readahead;
//   - unmaps their pages (MADV_DONTNEED: for a file mapping this drops the
//     process's page table entries and leaves the pages in the page cache);
//   - and asks the kernel to drop the executable's cached pages that no one
//     maps (POSIX_FADV_DONTNEED, after writing out any dirty ones), so that
//     fault-around finds no neighbours.
// What the exporter then runs is read back from the file, a few hundred
// major faults on the next scrapes, once. The read-only data then holds
// what is used (4.7 -> 1.4 MiB resident after 900 scrapes at 8 NUMA nodes;
// RSS 12.6 -> 9.4 MiB), and so does the page cache charged to the
// container. Program text gains little: since Linux 6.16 an executable
// mapping reads ahead (128 KiB by default) whatever MADV_RANDOM says.

// releaseAfterFirst releases the start-up pages after h has answered its
// first request.
func releaseAfterFirst(h http.Handler, logger log.Logger) http.Handler {
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		once.Do(func() {
			go func() { // not in the way of this response or the next
				n, err := releaseStartupPages("/proc/self/smaps", "/proc/self/exe")
				if err != nil {
					level.Debug(logger).Log("msg", "start-up pages of the executable not all released", "released_kib", n>>10, "err", err)
					return
				}
				level.Debug(logger).Log("msg", "released the executable's start-up pages", "resident_kib", n>>10)
			}()
		})
	})
}

// releaseStartupPages releases, as described above, the resident pages of
// every mapping of exe (resolved) in smaps that is neither writable nor
// holds a private copy of a page, in memory or swapped out (Anonymous and
// Swap 0: nothing relocated or written there, as in a PIE's RELRO segment),
// and returns how many bytes of them were resident.
func releaseStartupPages(smaps, exe string) (int64, error) {
	path, err := os.Readlink(exe)
	if err != nil {
		return 0, err
	}
	// The file, for its page cache. An executable written moments ago (an
	// upgrade, a build) has dirty pages, which no fadvise drops: they are
	// written out first, before smaps is read, so that nothing between the
	// read and the madvise calls takes long. A file system that cannot
	// (read-only, special) has none. An executable this user may run but
	// not read (mode 0711) still has its pages unmapped.
	file, openErr := os.Open(exe)
	if openErr == nil {
		defer file.Close()
		_ = unix.Fdatasync(int(file.Fd()))
	}
	data, err := os.ReadFile(smaps)
	if err != nil {
		return 0, err
	}
	type mapping struct {
		lo, hi          uintptr
		ours            bool
		rss, anon, swap int64
	}
	var release []mapping
	var cur mapping
	flush := func() {
		if cur.ours && cur.anon == 0 && cur.swap == 0 && cur.rss != 0 {
			release = append(release, cur)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && len(f) >= 5 && !strings.HasSuffix(f[0], ":") {
			flush()
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil {
				return 0, fmt.Errorf("%s: malformed mapping %q", smaps, line)
			}
			cur = mapping{lo: uintptr(l), hi: uintptr(h)}
			cur.ours = len(f) >= 6 && strings.Join(f[5:], " ") == path && !strings.Contains(f[1], "w") && f[1][3] == 'p'
			cur.anon, cur.swap = -1, -1 // unknown until their lines are read
			continue
		}
		switch f[0] {
		case "Rss:", "Anonymous:", "Swap:":
			if len(f) < 3 || f[2] != "kB" {
				return 0, fmt.Errorf("%s: malformed %q", smaps, line)
			}
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: malformed %q", smaps, line)
			}
			switch f[0] {
			case "Rss:":
				cur.rss = v << 10
			case "Anonymous:":
				cur.anon = v << 10
			default:
				cur.swap = v << 10
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	flush()
	if len(release) == 0 {
		return 0, nil
	}
	var released int64
	for _, m := range release {
		for _, advice := range [...]uintptr{syscall.MADV_RANDOM, syscall.MADV_DONTNEED} {
			if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, m.lo, m.hi-m.lo, advice); e != 0 {
				return released, fmt.Errorf("madvise %x-%x: %w", m.lo, m.hi, e)
			}
		}
		released += m.rss
	}
	if openErr != nil {
		return released, fmt.Errorf("pages unmapped; %s stays in the page cache: %w", path, openErr)
	}
	if err := unix.Fadvise(int(file.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return released, fmt.Errorf("pages unmapped; dropping %s from the page cache: %w", path, err)
	}
	return released, nil
}
