package collector

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/memfrag/memfrag_exporter/fragmentation"
	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// When an allocation fails the kernel logs
// "<comm>: page allocation failure: order:N, mode:0x...(GFP_...), nodemask=..."
// (mm/page_alloc.c warn_alloc): the very symptom users of a fragmented node
// see. This collector reads the kernel log from /dev/kmsg in a background
// goroutine and counts those messages by order.
//
// Where it starts: the reader opens /dev/kmsg at the oldest record still in
// the ring buffer and reads up to the end without counting ("history"); it
// only takes the last-seen timestamps from it. Counting starts at the end of
// the buffer, as SEEK_END would. Counting history instead would make every
// exporter restart replay old failures into a fresh counter, which rate()
// and increase() read as new failures. Failures logged while the exporter
// was down are thus not counted (the timestamp still shows them); when the
// reader itself stops and is restarted, it counts the records after the last
// one it saw.
//
// Only kernel records count (syslog facility 0): since 3.5 the kernel stamps
// everything written to /dev/kmsg from user space with LOG_USER, so a process
// cannot fake the symptom.

// DefaultKmsgPath is where the kernel log device normally lives.
const DefaultKmsgPath = "/dev/kmsg"

var (
	allocFailuresDesc = newDesc(namespace+"_page_allocation_failures_total",
		`"page allocation failure: order:N" messages the kernel logged since the exporter started, by order. A lower bound: the kernel rate-limits these messages and omits them for __GFP_NOWARN allocations (most opportunistic high-order ones, e.g. THP), so also watch memfrag_compaction_failures_total, memfrag_compaction_stalls_total and memfrag_thp_fault_fallback_total.`,
		[]string{"order"})
	allocFailureLastDesc = newDesc(namespace+"_page_allocation_failure_last_timestamp_seconds",
		"When the kernel last logged a page allocation failure of this order, including failures still in the kernel's ring buffer from before the exporter started (those timestamps come from the kernel log clock and may be off by seconds). Absent for orders that never failed.",
		[]string{"order"})
	kmsgOverrunsDesc = newDesc(namespace+"_kmsg_overruns_total",
		"Times the kernel log ring buffer overwrote records before the exporter read them (EPIPE from /dev/kmsg); allocation failures among them were not counted.",
		nil)
	kmsgLostDesc = newDesc(namespace+"_kmsg_lost_records_total",
		"Kernel log records the exporter could not read (overwritten, or too large), from gaps in their sequence numbers.",
		nil)
)

// Buffer sizes: the kernel returns one whole record per read and fails with
// EINVAL (skipping the record) when it does not fit. Records are at most
// CONSOLE_EXT_LOG_MAX (8 KiB) long, so 16 KiB always fits; a future kernel
// with longer records makes the buffer grow, up to kmsgMaxBuf.
const (
	kmsgBufSize = 16 << 10
	kmsgMaxBuf  = 1 << 20
)

// taskCommLen is the kernel's TASK_COMM_LEN: a comm holds at most 15 bytes.
const taskCommLen = 16

// kmsgOptions narrow what counts; only tests set them.
type kmsgOptions struct {
	userFacility bool         // also count records written from user space
	comm         string       // count only this task's failures
	onRecord     func([]byte) // sees each record's text, from the reader goroutine
	onLive       func()       // called when the reader has caught up with the log
}

type kmsgCollector struct {
	path   string
	logger log.Logger
	opts   kmsgOptions

	mu       sync.Mutex
	failures [fragmentation.MaxOrders]uint64
	last     [fragmentation.MaxOrders]float64 // unix seconds, 0 = never
	overruns uint64
	lost     uint64
	seq      uint64 // sequence number of the last record read
	haveSeq  bool
	running  bool
	file     *os.File
	done     chan struct{} // closed when the reader goroutine has ended
	err      error         // why the reader is not running
	closed   bool
}

func newKmsg(cfg Config, logger log.Logger) (source, error) {
	return newKmsgWith(cfg.Kmsg.Path, logger, kmsgOptions{}), nil
}

// newKmsgWith starts the reader. A kernel log that cannot be opened (a
// container without /dev/kmsg, no CAP_SYSLOG under dmesg_restrict) does not
// fail the exporter: update reports it, and tries again on every scrape.
func newKmsgWith(path string, logger log.Logger, opts kmsgOptions) *kmsgCollector {
	if path == "" {
		path = DefaultKmsgPath
	}
	c := &kmsgCollector{path: path, logger: logger, opts: opts}
	c.mu.Lock()
	c.err = c.startLocked()
	c.mu.Unlock()
	return c
}

func (c *kmsgCollector) startLocked() error {
	f, err := os.Open(c.path)
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("opening the kernel log: %w (needs root, or CAP_SYSLOG when kernel.dmesg_restrict=1)", err)
	}
	if err != nil {
		return fmt.Errorf("opening the kernel log: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening the kernel log %s: %w", c.path, err)
	}
	done := make(chan struct{})
	c.file, c.done, c.running = f, done, true
	boundary, haveBoundary := c.seq, c.haveSeq
	go func() {
		defer close(done)
		err := c.readLoop(func(buf []byte, wait bool) (int, error) { return rawRead(rc, buf, wait) }, boundary, haveBoundary)
		f.Close()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.running = false
		if !c.closed {
			c.err = fmt.Errorf("reading the kernel log %s: %w", c.path, err)
			level.Warn(c.logger).Log("msg", "kernel log reader stopped; reopening at the next scrape", "err", err)
		}
	}()
	return nil
}

// rawRead reads one record. With wait false it returns EAGAIN at the end of
// the log; with wait true it parks in the netpoller until a record arrives,
// so closing the file ends it.
func rawRead(rc syscall.RawConn, buf []byte, wait bool) (n int, err error) {
	rerr := rc.Read(func(fd uintptr) bool {
		n, err = unix.Read(int(fd), buf)
		return !(wait && err == unix.EAGAIN)
	})
	if rerr != nil {
		return 0, rerr
	}
	return n, err
}

// readLoop reads records until read fails for good. It starts in history:
// records before the end of the log count only when they follow boundary,
// the last record an earlier reader saw.
func (c *kmsgCollector) readLoop(read func(buf []byte, wait bool) (int, error), boundary uint64, haveBoundary bool) error {
	buf := make([]byte, kmsgBufSize)
	history := true
	// The kernel stamps records with its own clock, close to CLOCK_MONOTONIC:
	// the wall time of its zero converts history timestamps.
	boot := bootWallSeconds()
	for {
		n, err := read(buf, !history)
		switch {
		case err == nil && n == 0:
			return errors.New("end of file: not a kernel log device")
		case err == nil:
			rec, ok := parseKmsgRecord(buf[:n])
			if !ok {
				continue
			}
			if c.opts.onRecord != nil {
				c.opts.onRecord(rec.text)
			}
			counting := !history || (haveBoundary && rec.seq > boundary)
			ts := boot + float64(rec.usec)/1e6
			if !history {
				ts = float64(time.Now().UnixNano()) / 1e9
			}
			c.observe(&rec, counting, ts)
		case errors.Is(err, unix.EAGAIN):
			if history {
				history = false
				if c.opts.onLive != nil {
					c.opts.onLive()
				}
			}
		case errors.Is(err, unix.EPIPE):
			// The ring buffer overwrote records we had not read; the kernel
			// moved us to the oldest one left. The sequence gap counts them.
			if !history {
				c.mu.Lock()
				c.overruns++
				c.mu.Unlock()
			}
		case errors.Is(err, unix.EINVAL):
			// The record did not fit and the kernel skipped it (the sequence
			// gap counts it); make room for the next one.
			if len(buf) >= kmsgMaxBuf {
				return fmt.Errorf("a record longer than %d bytes: %w", len(buf), err)
			}
			buf = make([]byte, 2*len(buf))
		case errors.Is(err, unix.EINTR):
		default:
			return err
		}
	}
}

// observe accounts for one record: a counted one (read live, or after an
// earlier reader's last record) adds a failure and the records skipped
// before it.
func (c *kmsgCollector) observe(rec *kmsgRecord, counting bool, ts float64) {
	order, comm, failure := matchAllocFailure(rec.text)
	failure = failure && !rec.cont && (rec.facility == 0 || c.opts.userFacility) &&
		(c.opts.comm == "" || string(comm) == c.opts.comm)
	c.mu.Lock()
	defer c.mu.Unlock()
	if counting && c.haveSeq && rec.seq > c.seq+1 {
		c.lost += rec.seq - c.seq - 1
	}
	c.seq, c.haveSeq = rec.seq, true
	if !failure {
		return
	}
	if ts > c.last[order] {
		c.last[order] = ts
	}
	if counting {
		c.failures[order]++
	}
}

func (c *kmsgCollector) update(s *scrape, out *samples) error {
	c.mu.Lock()
	if !c.running && !c.closed {
		c.err = c.startLocked()
	}
	err := c.err
	if c.running {
		err = nil
	}
	failures, last, overruns, lost := c.failures, c.last, c.overruns, c.lost
	c.mu.Unlock()
	if err != nil {
		return err
	}
	// Every order the machine has gets a series from the start, so that the
	// first failure of an order shows in increase() and rate().
	orders := 11 // NR_PAGE_ORDERS on x86_64, when buddyinfo says nothing
	if s != nil && s.src != nil {
		if zones, berr := s.buddyinfo(); berr == nil && len(zones) > 0 {
			orders = len(zones[0].Free)
		}
	}
	for k := range failures {
		if k < orders || failures[k] > 0 {
			out.add(allocFailuresDesc, prometheus.CounterValue, float64(failures[k]), orderLabels[k])
		}
		if last[k] > 0 {
			out.add(allocFailureLastDesc, prometheus.GaugeValue, last[k], orderLabels[k])
		}
	}
	out.add(kmsgOverrunsDesc, prometheus.CounterValue, float64(overruns))
	out.add(kmsgLostDesc, prometheus.CounterValue, float64(lost))
	return nil
}

// close stops the reader: closing the file wakes it from the netpoller.
func (c *kmsgCollector) close() error {
	c.mu.Lock()
	c.closed = true
	f, done, running := c.file, c.done, c.running
	c.mu.Unlock()
	if !running {
		return nil
	}
	err := f.Close()
	<-done
	if errors.Is(err, os.ErrClosed) || errors.Is(err, fs.ErrClosed) {
		err = nil
	}
	return err
}

// bootWallSeconds is the wall-clock time, in unix seconds, at which
// CLOCK_MONOTONIC was zero.
func bootWallSeconds() float64 {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return float64(now.UnixNano())/1e9 - (float64(ts.Sec) + float64(ts.Nsec)/1e9)
}

// kmsgRecord is one record of /dev/kmsg (Documentation/ABI/testing/dev-kmsg):
// "prio,seq,usec,flags[,more];text\n" then dictionary lines starting with a
// space. The kernel escapes non-printable bytes of text as \xNN, so the text
// ends at the first newline.
type kmsgRecord struct {
	facility uint64
	seq      uint64
	usec     uint64
	cont     bool   // a continuation fragment (flag '+', kernels 3.5-4.8): not a message start
	text     []byte // aliases the read buffer
}

// parseKmsgRecord splits a record; ok is false for anything that is not one.
func parseKmsgRecord(rec []byte) (r kmsgRecord, ok bool) {
	semi := bytes.IndexByte(rec, ';')
	if semi < 0 {
		return r, false
	}
	header, text := rec[:semi], rec[semi+1:]
	if nl := bytes.IndexByte(text, '\n'); nl >= 0 {
		text = text[:nl]
	}
	var fields [4][]byte
	for i := range fields {
		comma := bytes.IndexByte(header, ',')
		if comma < 0 {
			if i < len(fields)-1 {
				return r, false
			}
			comma = len(header)
		}
		fields[i] = header[:comma]
		header = header[min(comma+1, len(header)):]
	}
	prio, ok1 := procfile.ParseUint(fields[0])
	seq, ok2 := procfile.ParseUint(fields[1])
	usec, ok3 := procfile.ParseUint(fields[2])
	if !ok1 || !ok2 || !ok3 || prio > 1<<31 {
		return r, false
	}
	return kmsgRecord{
		facility: prio >> 3,
		seq:      seq,
		usec:     usec,
		cont:     bytes.IndexByte(fields[3], '+') >= 0,
		text:     text,
	}, true
}

var (
	allocFailurePhrase = []byte(": page allocation failure")
	orderPrefix        = []byte("order:")
)

// matchAllocFailure recognizes the kernel's allocation-failure message:
//
//	2.6:      "<comm>: page allocation failure. order:4, mode:0xd0"
//	3.x-4.9:  "<comm>: page allocation failure: order:4, mode:0x...(GFP_...)"
//	4.10+:    "<comm>: page allocation failure: order:4, mode:0x...(GFP_...), nodemask=..."
//
// The phrase must follow the task name at the very start of the text; text
// that mentions the phrase anywhere else is not a failure.
func matchAllocFailure(text []byte) (order int, comm []byte, ok bool) {
	i := bytes.Index(text, allocFailurePhrase)
	if i < 1 || !commFits(text[:i]) {
		return 0, nil, false
	}
	rest := text[i+len(allocFailurePhrase):]
	if len(rest) < 2 || (rest[0] != '.' && rest[0] != ':') || rest[1] != ' ' {
		return 0, nil, false
	}
	rest = rest[2:]
	if !bytes.HasPrefix(rest, orderPrefix) {
		return 0, nil, false
	}
	rest = rest[len(orderPrefix):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	// The kernel prints the order with %d/%u: no sign, no leading zero.
	if j == 0 || j > 2 || (j == 2 && rest[0] == '0') || (j < len(rest) && rest[j] != ',') {
		return 0, nil, false
	}
	n, _ := procfile.ParseUint(rest[:j])
	if n >= fragmentation.MaxOrders {
		return 0, nil, false
	}
	return int(n), text[:i], true
}

// commFits reports whether s can be a task name as /dev/kmsg prints it: at
// most TASK_COMM_LEN-1 bytes once \xNN escapes are undone.
func commFits(s []byte) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			i += 3
		}
		n++
	}
	return n <= taskCommLen-1
}
