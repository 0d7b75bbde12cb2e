package rawio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("hello world\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	b := make([]byte, 5)
	if n, err := Pread(fd, b, 6); n != 5 || err != nil || string(b) != "world" {
		t.Errorf("Pread at 6 = %d, %v, %q", n, err, b[:n])
	}
	if n, err := Pread(fd, make([]byte, 64), 0); n != 12 || err != nil {
		t.Errorf("Pread of all = %d, %v", n, err)
	}
	if n, err := Pread(fd, b, 12); n != 0 || err != io.EOF {
		t.Errorf("Pread at the end = %d, %v, want 0, EOF", n, err)
	}
	if n, err := Pread(fd, nil, 0); n != 0 || err != nil {
		t.Errorf("Pread of nothing = %d, %v", n, err)
	}
	if _, err := Pread(-1, b, 0); !errors.Is(err, syscall.EBADF) {
		t.Errorf("Pread on a bad descriptor: %v, want EBADF", err)
	}
	if data, err := os.ReadFile("/proc/self/stat"); err == nil {
		p, _ := os.Open("/proc/self/stat")
		defer p.Close()
		buf := make([]byte, 4096)
		n, err := Pread(int(p.Fd()), buf, 0)
		if err != nil || n < len(data)/2 || !bytes.HasPrefix(buf, data[:bytes.IndexByte(data, ' ')]) {
			t.Errorf("Pread of /proc/self/stat = %d, %v: %q", n, err, buf[:n])
		}
	}
}

func TestGetdentsRewind(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	count := func() int {
		buf := make([]byte, 4096)
		names := 0
		for {
			n, err := Getdents(fd, buf)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return names
			}
			_, c, _ := syscall.ParseDirent(buf[:n], -1, nil)
			names += c
		}
	}
	if n := count(); n != 3 {
		t.Errorf("%d names, want 3", n)
	}
	if n := count(); n != 0 {
		t.Errorf("without rewinding: %d names, want 0", n)
	}
	if err := Rewind(fd); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("after rewinding: %d names, want 3", n)
	}
	if _, err := Getdents(-1, make([]byte, 64)); !errors.Is(err, syscall.EBADF) {
		t.Errorf("Getdents on a bad descriptor: %v", err)
	}
	if err := Rewind(-1); !errors.Is(err, syscall.EBADF) {
		t.Errorf("Rewind of a bad descriptor: %v", err)
	}
}

func TestFstatSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 12345), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := FstatSize(int(f.Fd())); err != nil || n != 12345 {
		t.Errorf("FstatSize = %d, %v; want 12345", n, err)
	}
	if _, err := FstatSize(-1); !errors.Is(err, syscall.EBADF) {
		t.Errorf("FstatSize(-1): %v; want EBADF", err)
	}
}

func TestGetrlimit(t *testing.T) {
	for _, res := range []int{syscall.RLIMIT_NOFILE, syscall.RLIMIT_AS} {
		var got, want syscall.Rlimit
		if err := Getrlimit(res, &got); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Getrlimit(res, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("resource %d: %+v, syscall.Getrlimit %+v", res, got, want)
		}
	}
	var rl syscall.Rlimit
	if err := Getrlimit(1<<20, &rl); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("an unknown resource: %v, want EINVAL", err)
	}
}

// pair is a loopback TCP connection: ours wrapped, theirs plain.
func pair(t *testing.T) (ours net.Conn, theirs net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	theirs, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	ours = NewConn(c)
	if _, ok := ours.(*Conn); !ok {
		t.Fatalf("NewConn of a TCP connection gave %T", ours)
	}
	t.Cleanup(func() { ours.Close(); theirs.Close() })
	return ours, theirs
}

// Writes larger than the socket buffers wait in the poller for a slow
// reader and arrive whole; reads wait for data and see EOF at the close.
func TestConnReadWrite(t *testing.T) {
	ours, theirs := pair(t)
	data := make([]byte, 8<<20)
	rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 7000)
		for {
			time.Sleep(50 * time.Microsecond) // slower than the writer
			n, err := theirs.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				got <- b.Bytes()
				return
			}
		}
	}()
	n, err := ours.Write(data)
	if n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	ours.(*Conn).CloseWrite()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("the reader got %d bytes, not the %d written", len(b), len(data))
	}

	go func() {
		time.Sleep(20 * time.Millisecond)
		theirs.Write([]byte("ping"))
		theirs.Close()
	}()
	buf := make([]byte, 16)
	if n, err := ours.Read(buf); n != 4 || err != nil || string(buf[:n]) != "ping" {
		t.Errorf("Read = %d, %v, %q", n, err, buf[:n])
	}
	if n, err := ours.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read after the peer closed = %d, %v, want EOF", n, err)
	}
	if n, err := ours.Read(nil); n != 0 || err != nil {
		t.Errorf("Read of nothing = %d, %v", n, err)
	}
}

// Deadlines and Close end a waiting read as they do on a net.TCPConn, with
// the errors net/http looks for.
func TestConnDeadlineAndClose(t *testing.T) {
	ours, _ := pair(t)
	ours.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	_, err := ours.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v, want a timeout", err)
	}
	if strings.Count(err.Error(), "tcp") != 1 {
		t.Errorf("error wrapped twice: %v", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Errorf("the deadline ended the read after %v", d)
	}
	ours.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := ours.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ours.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read ended by Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting Read")
	}
	if _, err := ours.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// A write to a peer that reset the connection fails with its errno.
func TestConnWriteReset(t *testing.T) {
	ours, theirs := pair(t)
	theirs.(*net.TCPConn).SetLinger(0)
	theirs.Close() // RST
	time.Sleep(20 * time.Millisecond)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = ours.Write(make([]byte, 64<<10))
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write to a reset peer: %v, want ECONNRESET or EPIPE", err)
	}
}

func TestNewConnOther(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c := NewConn(a); c != a {
		t.Errorf("NewConn of a pipe gave %T", c)
	}
}

// GatherWrites holds writes until the bytes asked for have come, then
// sends them in order with the write that completes them, partial writes
// to a slow reader included; 0 sends what is held.
func TestConnGatherWrites(t *testing.T) {
	ours, theirs := pair(t)
	c := ours.(*Conn)
	first := []byte(strings.Repeat("h", 100))
	rest := make([]byte, 8<<20)
	rand.Read(rest)
	c.GatherWrites(len(rest))
	if n, err := c.Write(first); n != len(first) || err != nil {
		t.Fatalf("held Write = %d, %v", n, err)
	}
	theirs.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 7000)
	if n, err := theirs.Read(buf); n != 0 || err == nil {
		t.Fatalf("%d bytes arrived before the writes were complete (%v)", n, err)
	}
	theirs.SetReadDeadline(time.Time{})
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		for b.Len() < len(first)+len(rest) {
			time.Sleep(50 * time.Microsecond) // slower than the writer
			n, err := theirs.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.Bytes()
	}()
	if n, err := c.Write(rest); n != len(rest) || err != nil {
		t.Fatalf("completing Write = %d, %v", n, err)
	}
	if b := <-got; !bytes.Equal(b, append(first, rest...)) {
		t.Fatalf("the reader got %d bytes, not the %d written in order", len(b), len(first)+len(rest))
	}

	c.GatherWrites(1000)
	c.Write([]byte("held"))
	if err := c.GatherWrites(0); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(" then sent"))
	want := "held then sent"
	var b []byte
	theirs.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(b) < len(want) {
		n, err := theirs.Read(buf)
		if err != nil {
			t.Fatalf("after GatherWrites(0): %q, %v", b, err)
		}
		b = append(b, buf[:n]...)
	}
	if string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
}
