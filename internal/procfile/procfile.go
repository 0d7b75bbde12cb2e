// Package procfile reads small kernel text files (procfs, sysfs) cheaply and
// tokenizes them without allocating.
//
// A scrape reads the same few files every time. Opening a file costs more
// than reading it, so File keeps the descriptor and re-reads from offset 0
// with pread, which makes the kernel regenerate a seq_file's content. The
// buffer grows to the file's size once and is reused after that; while it
// grows, the read goes on at the offset where it stopped, so the kernel
// generates the file once per read, the first read included.
package procfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/memfrag/memfrag_exporter/internal/rawio"
)

// File is a kernel text file read again and again through one descriptor.
// It is safe for concurrent use; the returned bytes are valid until the next
// call of Read by the same caller holding the lock, so use them inside Do.
type File struct {
	path string

	mu   sync.Mutex
	f    *os.File
	fd   int  // f's descriptor
	slow bool // read with ordinary system calls (NewSlow)
	one  bool // one record: a short read has it all (NewOne)
	last int  // how many bytes the last whole read gave
	buf  []byte
	sbuf []byte // Stream's
}

// New returns a File for path. Nothing is opened until the first read, so an
// absent file is reported by the read that needs it.
//
// The buffer starts small and doubles until the file fits: a sysctl read
// makes the kernel allocate and zero a buffer as large as the read asks
// for, so reading "20\n" into 4 KiB zeroes 4 KiB twice (the read and the
// one that finds the end).
func New(path string) *File { return newSized(path, 128) }

// NewSlow returns a File for a file whose generation can take milliseconds
// however small it is (pagetypeinfo counts every free block under the zone
// lock): it is always read with ordinary system calls, so that the Go
// scheduler can hand the processor to other goroutines meanwhile. Other
// files are read with raw system calls (see rawio) while their last read
// gave at most rawLimit bytes.
func NewSlow(path string) *File {
	f := New(path)
	f.slow = true
	return f
}

// NewOne returns a File for a file the kernel generates as one record: a
// sysctl, a sysfs attribute, /proc/<pid>/stat, net/netstat. A read of it
// that returns less than it asked for has the whole file, so no second read
// looks for the end. (A file of many records, such as zoneinfo, may return
// less than asked for at any record boundary.)
func NewOne(path string) *File {
	f := New(path)
	f.one = true
	return f
}

// rawLimit is the size up to which a file is read with raw system calls:
// generating a few tens of KiB of text takes microseconds, while a zoneinfo
// of many NUMA nodes takes a hundred microseconds a node.
const rawLimit = 256 << 10

// pread reads at off, raw unless the file is slow or was large.
func (f *File) pread(b []byte, off int64) (int, error) {
	if f.slow || f.last > rawLimit {
		return rawio.PreadScheduled(f.fd, b, off)
	}
	return rawio.Pread(f.fd, b, off)
}

func newSized(path string, size int) *File {
	return &File{path: path, buf: make([]byte, 0, size)}
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Do reads the whole file and calls fn with its content while holding the
// file's lock. fn must not keep data after it returns.
func (f *File) Do(fn func(data []byte) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := f.read()
	if err != nil {
		return err
	}
	return fn(data)
}

func (f *File) read() ([]byte, error) {
	if f.f == nil {
		if err := f.open(); err != nil {
			return nil, err
		}
	}
	data, err := f.readAt()
	if err != nil {
		// The descriptor may have gone stale (e.g. a remounted /proc):
		// reopen once before giving up.
		f.f.Close()
		f.f = nil
		if oerr := f.open(); oerr != nil {
			return nil, fmt.Errorf("reading %s: %w", f.path, err)
		}
		if data, err = f.readAt(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", f.path, err)
		}
	}
	return data, nil
}

// maxSize bounds what one file may hold; kernel text files the exporter
// reads are far smaller (zoneinfo of a 64-node machine is ~1 MiB).
const maxSize = 64 << 20

// open opens the file.
func (f *File) open() error {
	fd, err := os.Open(f.path)
	if err != nil {
		return err
	}
	f.f, f.fd = fd, int(fd.Fd())
	return nil
}

func (f *File) readAt() ([]byte, error) {
	buf := f.buf[:cap(f.buf)]
	n := 0
	// grown is where the buffer last filled up and grew: a read there that
	// finds the end is ambiguous (see below).
	grown := -1
	for {
		if n == len(buf) {
			// Full: grow and go on at offset n. A seq_file continues
			// where the last read stopped without generating its
			// content again, so even a first read of a large file
			// walks the kernel's structures once.
			if len(buf) >= maxSize {
				return nil, fmt.Errorf("%s is larger than %d bytes", f.path, maxSize)
			}
			buf = append(buf[:n], make([]byte, len(buf))...)
			buf = buf[:cap(buf)]
			grown = n
		}
		if readHook != nil {
			readHook(f.path, n)
		}
		m, err := f.pread(buf[n:], int64(n))
		if f.one && n == 0 && err == nil && 0 < m && m < len(buf) {
			n = m
			break
		}
		n += m
		if errors.Is(err, io.EOF) || (err == nil && m == 0) {
			if m == 0 && n == grown && n > 0 {
				// The end came exactly where the buffer had filled
				// up. Either the file is that long, or it is an
				// integer sysctl, which answers a read at any offset
				// but 0 with EOF: read it again from the start into
				// the larger buffer, where it fits whole.
				grown, n = -1, 0
				continue
			}
			break
		}
		if err != nil {
			return nil, err
		}
	}
	f.buf = buf[:0]
	f.last = n
	return buf[:n], nil
}

// readHook, when set by a test, is called before every read with the
// file's path and the offset read at.
var readHook func(path string, off int)

// Stream reads the file a piece at a time through a buffer of chunk bytes,
// each read going on at the offset where the last one stopped (a seq_file
// is generated once), so memory does not grow with the file. fn gets the
// data read and not yet consumed and returns how much of its start it
// consumed; the rest is handed to it again with the next piece. The buffer
// grows only when fn consumes nothing of a full buffer. At the end of the
// file fn is called with final set. Not for integer sysctls, which answer
// reads at an offset but 0 with EOF: use Do.
func (f *File) Stream(chunk int, fn func(data []byte, final bool) (consumed int, err error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		if err := f.open(); err != nil {
			return err
		}
	}
	if cap(f.sbuf) < chunk {
		f.sbuf = make([]byte, chunk)
	}
	buf := f.sbuf[:cap(f.sbuf)]
	have, off := 0, 0
	for retried := false; ; {
		if have == len(buf) {
			if len(buf) >= maxSize {
				return fmt.Errorf("%s: a piece larger than %d bytes", f.path, maxSize)
			}
			buf = append(buf, make([]byte, len(buf))...)
			buf = buf[:cap(buf)]
		}
		if readHook != nil {
			readHook(f.path, off)
		}
		m, err := f.pread(buf[have:], int64(off))
		end := errors.Is(err, io.EOF) || (err == nil && m == 0)
		if err != nil && !end {
			if off == 0 && !retried {
				// A stale descriptor (e.g. a remounted /proc): reopen once.
				retried = true
				f.f.Close()
				f.f = nil
				if oerr := f.open(); oerr != nil {
					return fmt.Errorf("reading %s: %w", f.path, err)
				}
				continue
			}
			return fmt.Errorf("reading %s: %w", f.path, err)
		}
		have += m
		off += m
		used, err := fn(buf[:have], end)
		if err != nil || end {
			f.sbuf = buf
			f.last = off
			return err
		}
		have = copy(buf, buf[used:have])
	}
}

// Close releases the descriptor; a later read opens it again.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}

// Fields splits a line on spaces and tabs without allocating.
type Fields struct{ Rest []byte }

// Next returns the next field, or nil at the end of the line.
func (f *Fields) Next() []byte {
	b := f.Rest
	i := 0
	for i < len(b) && spaces[b[i]] {
		i++
	}
	if i == len(b) {
		f.Rest = nil
		return nil
	}
	j := i + 1
	for j < len(b) && !spaces[b[j]] {
		j++
	}
	f.Rest = b[j:]
	return b[i:j]
}

// spaces are the bytes that separate fields.
var spaces = [256]bool{' ': true, '\t': true, '\r': true, '\n': true}

// NodeZone reads the "Node <id>, zone <name>" that opens a zone's line or
// section in buddyinfo, zoneinfo and pagetypeinfo, and returns the node id
// and the zone token as printed (pagetypeinfo's free table follows it with
// a comma); the caller checks the zone name.
func NodeZone(f *Fields) (node, zone []byte, err error) {
	if w := f.Next(); string(w) != "Node" {
		return nil, nil, fmt.Errorf("want %q, got %q", "Node", w)
	}
	node = f.Next()
	if len(node) < 2 || node[len(node)-1] != ',' {
		return nil, nil, fmt.Errorf("want node id and comma, got %q", node)
	}
	node = node[:len(node)-1]
	if !IsDigits(node) || len(node) > 10 {
		return nil, nil, fmt.Errorf("node id %q is not a number", node)
	}
	if w := f.Next(); string(w) != "zone" {
		return nil, nil, fmt.Errorf("want %q, got %q", "zone", w)
	}
	if zone = f.Next(); len(zone) == 0 {
		return nil, nil, errors.New("missing zone name")
	}
	return node, zone, nil
}

// IsDigits reports whether b is a non-empty run of ASCII digits.
func IsDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// IsName reports whether b is a name as the kernel prints them in the files
// this exporter reads (zones, migrate types, vmstat counters, THP modes):
// 1 to 32 ASCII letters, digits, '_', '-' or '+'. Names become label values,
// so this keeps control characters and invalid UTF-8 out of them.
func IsName(b []byte) bool {
	if len(b) == 0 || len(b) > 32 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '+') {
			return false
		}
	}
	return true
}

// ParseUint parses a plain decimal count: digits only, no sign, no overflow
// (at most 19 digits).
func ParseUint(b []byte) (uint64, bool) {
	if !IsDigits(b) || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// ParseInt parses a plain decimal integer with an optional leading minus.
func ParseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	n, ok := ParseUint(b)
	if !ok || n > 1<<63-1 {
		return 0, false
	}
	if neg {
		return -int64(n), true
	}
	return int64(n), true
}

// Grow extends s by one element, reusing its capacity: the new last element
// keeps what an earlier parse left there, so a parser can reuse its strings
// and slices and reparsing the same file allocates nothing.
func Grow[T any](s []T) []T {
	if len(s) < cap(s) {
		return s[:len(s)+1]
	}
	var zero T
	return append(s, zero)
}

// CutLine splits data at its first newline: the line without it, and the
// rest (nil after the last line).
func CutLine(data []byte) (line, rest []byte) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[:i], data[i+1:]
	}
	return data, nil
}

// Lines calls fn for each line of data, without the newline.
func Lines(data []byte, fn func(line []byte) error) error {
	for len(data) > 0 {
		var line []byte
		line, data = CutLine(data)
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}
