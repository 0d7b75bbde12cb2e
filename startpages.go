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
)

// Most of the exporter's resident memory is its own executable: the kernel
// maps a file's pages 64 KiB at a time around each one touched, and start-up
// touches most of the binary (every package's init, flag parsing, the web
// config and TLS set-up, the BPF loader, the landing page's templates):
// about 11 of 15 MiB resident were program text and read-only data, of
// which a scrape uses about 7.6. Once the first scrape has been answered,
// start-up is over:
// releaseStartupPages unmaps the executable's clean read-only pages
// (madvise MADV_DONTNEED, which for a file mapping drops this process's
// page table entries and leaves the pages in the page cache). What a scrape
// uses faults back in from the page cache on the next one; the rest stays
// out of this process's resident set, and under memory pressure the kernel
// can reclaim it without unmapping anything.

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
					level.Debug(logger).Log("msg", "start-up pages of the executable not released", "err", err)
					return
				}
				level.Debug(logger).Log("msg", "released the executable's start-up pages", "resident_kib", n>>10)
			}()
		})
	})
}

// releaseStartupPages unmaps the resident pages of every mapping of exe
// (resolved) in smaps that is neither writable nor holds a private copy of
// a page, in memory or swapped out (Anonymous and Swap 0: nothing relocated
// or written there, as in a PIE's RELRO segment), and returns how many
// bytes of them were resident.
func releaseStartupPages(smaps, exe string) (int64, error) {
	path, err := os.Readlink(exe)
	if err != nil {
		return 0, err
	}
	data, err := os.ReadFile(smaps)
	if err != nil {
		return 0, err
	}
	var released int64
	type mapping struct {
		lo, hi          uintptr
		ours            bool
		rss, anon, swap int64
	}
	var cur mapping
	flush := func() error {
		if !cur.ours || cur.anon != 0 || cur.swap != 0 || cur.rss == 0 {
			return nil
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, cur.lo, cur.hi-cur.lo, syscall.MADV_DONTNEED); e != 0 {
			return fmt.Errorf("madvise %x-%x: %w", cur.lo, cur.hi, e)
		}
		released += cur.rss
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && len(f) >= 5 && !strings.HasSuffix(f[0], ":") {
			if err := flush(); err != nil {
				return released, err
			}
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil {
				return released, fmt.Errorf("%s: malformed mapping %q", smaps, line)
			}
			cur = mapping{lo: uintptr(l), hi: uintptr(h)}
			cur.ours = len(f) >= 6 && strings.Join(f[5:], " ") == path && !strings.Contains(f[1], "w") && f[1][3] == 'p'
			cur.anon, cur.swap = -1, -1 // unknown until their lines are read
			continue
		}
		switch f[0] {
		case "Rss:", "Anonymous:", "Swap:":
			if len(f) < 3 || f[2] != "kB" {
				return released, fmt.Errorf("%s: malformed %q", smaps, line)
			}
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return released, fmt.Errorf("%s: malformed %q", smaps, line)
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
		return released, err
	}
	return released, flush()
}
