// Package rawio makes the short system calls of a scrape as raw system
// calls, which the Go scheduler does not hear about.
//
// syscall.Syscall tells the scheduler that the goroutine may block, so that
// its processor can be handed to another thread. When the process was idle,
// the first such call also wakes sysmon, the runtime's monitor thread, which
// then sleeps 20 µs at a time until it has seen a millisecond without work.
// A scrape arrives at an idle process and lasts under a millisecond, so
// every scrape paid for a train of 20 µs sleeps; on a VM each one costs
// 10-20 µs of CPU in timer programming. Measured under scrape load on the
// 2-CPU VM this was written on: sysmon took 58 of the exporter's 390 CPU
// ticks (30,645 wakeups in 5,000 scrapes); with the calls below raw, 17
// ticks (6,311 wakeups).
//
// Only calls that cannot block and end quickly belong here: a raw call
// keeps its processor, and a garbage collection waits for it. That is
// reads of small procfs and sysfs text files (procfile reads large ones and
// pagetypeinfo, which counts free blocks under the zone lock, with ordinary
// calls), of a /proc directory, getrlimit, and reads and writes on a
// non-blocking socket, which wait in the network poller when they would
// block, as net does.
package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

func ptr(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// Pread is pread(2) on fd, a procfs or sysfs file: one call, which may read
// less than len(b); io.EOF at the end.
func Pread(fd int, b []byte, off int64) (int, error) {
	if unsafe.Sizeof(uintptr(0)) < 8 {
		// 32-bit ABIs pass the offset in two registers, some with
		// padding: leave that to the syscall package.
		return PreadScheduled(fd, b, off)
	}
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_PREAD64, uintptr(fd), ptr(b), uintptr(len(b)), uintptr(off), 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return 0, os.NewSyscallError("pread", e)
		case r == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return int(r), nil
	}
}

// PreadScheduled is Pread as an ordinary system call, which the scheduler
// hears about: for a read that may take long.
func PreadScheduled(fd int, b []byte, off int64) (int, error) {
	n, err := syscall.Pread(fd, b, off)
	switch {
	case err != nil:
		return 0, os.NewSyscallError("pread", err)
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// Getdents is getdents64(2) on fd, a directory in procfs: the bytes of the
// records read into b, 0 at the end.
func Getdents(fd int, b []byte) (int, error) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_GETDENTS64, uintptr(fd), ptr(b), uintptr(len(b)))
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return 0, os.NewSyscallError("getdents64", e)
		}
		return int(r), nil
	}
}

// Rewind moves fd, a directory in procfs, back to its start.
func Rewind(fd int) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_LSEEK, uintptr(fd), 0, io.SeekStart); e != 0 {
		return os.NewSyscallError("lseek", e)
	}
	return nil
}

// Getrlimit is getrlimit(2) for this process, through prlimit64.
func Getrlimit(resource int, rl *syscall.Rlimit) error {
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, 0, uintptr(resource), 0, uintptr(unsafe.Pointer(rl)), 0, 0); e != 0 {
		return os.NewSyscallError("prlimit64", e)
	}
	return nil
}

// Getrusage is getrusage(2) for this process, its threads, live and ended.
func Getrusage(ru *syscall.Rusage) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_GETRUSAGE, syscall.RUSAGE_SELF, uintptr(unsafe.Pointer(ru)), 0); e != 0 {
		return os.NewSyscallError("getrusage", e)
	}
	return nil
}

// Conn is a TCP connection whose reads and writes are raw system calls on
// its non-blocking socket; when one would block it waits in the network
// poller through syscall.RawConn, deadlines and Close included, as net does.
type Conn struct {
	*net.TCPConn
	rc   syscall.RawConn
	held []byte // writes held for GatherWrites
	want int    // bytes to come before held goes out, 0 for none
}

// NewConn returns c with raw reads and writes if it is a TCP connection,
// and c itself otherwise.
func NewConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{TCPConn: tc, rc: rc}
}

// opError is err as net reports it for op; the raw connection's own
// "raw-read"/"raw-write" error is unwrapped.
func (c *Conn) opError(op string, err error) error {
	var raw *net.OpError
	if errors.As(err, &raw) {
		err = raw.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Read reads what has arrived, waiting for something if nothing has;
// io.EOF once the peer has closed its side.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, ptr(b), uintptr(len(b)))
			if e == syscall.EINTR {
				continue
			}
			n, errno = int(r), e
			return e != syscall.EAGAIN
		}
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// maxHeld bounds the buffer a connection keeps for held writes between
// responses: net/http's 4 KiB and a little.
const maxHeld = 8 << 10

// GatherWrites makes the writes that follow go out in one system call, the
// one that brings the bytes written since to n or more: until then they
// are held. net/http sends a response of more than its 4 KiB buffer in two
// writes, the buffer with the header and then the rest, and on loopback
// each write runs the receiver's TCP input and wakes the reader on the
// sender's CPU. n 0 sends what is held now.
func (c *Conn) GatherWrites(n int) error {
	c.want = max(n, 0)
	if n <= 0 && len(c.held) > 0 {
		_, err := c.Write(nil)
		return err
	}
	return nil
}

// Write writes all of b, waiting for room in the socket's buffer as needed.
func (c *Conn) Write(b []byte) (int, error) {
	held := len(c.held)
	if c.want > 0 && held+len(b) < c.want {
		c.held = append(c.held, b...)
		return len(b), nil
	}
	c.want = 0
	done := 0 // of held, then b
	var errno syscall.Errno
	var iov [2]syscall.Iovec
	err := c.rc.Write(func(fd uintptr) bool {
		for done < held+len(b) {
			var r uintptr
			var e syscall.Errno
			if done < held {
				h := c.held[done:]
				iov[0].Base, iov[1].Base = &h[0], unsafe.SliceData(b)
				iov[0].SetLen(len(h))
				iov[1].SetLen(len(b))
				r, _, e = syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), 2)
			} else {
				r, _, e = syscall.RawSyscall(syscall.SYS_WRITE, fd, ptr(b[done-held:]), uintptr(len(b)-(done-held)))
			}
			switch e {
			case 0:
				if r == 0 {
					errno = syscall.EIO // a write of nothing would loop forever
					return true
				}
				done += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if held > 0 {
		c.held = c.held[:0]
		if cap(c.held) > maxHeld {
			c.held = nil
		}
		done = max(0, done-held)
	}
	if err == nil && errno != 0 {
		err = os.NewSyscallError("write", errno)
	}
	if err != nil {
		return done, c.opError("write", err)
	}
	return done, nil
}
