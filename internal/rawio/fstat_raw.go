//go:build amd64 || arm64 || ppc64 || ppc64le || riscv64 || s390x

package rawio

import (
	"os"
	"syscall"
	"unsafe"
)

// FstatSize is the size fstat(2) gives fd, a procfs file or directory.
func FstatSize(fd int) (int64, error) {
	var st syscall.Stat_t
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_FSTAT, uintptr(fd), uintptr(unsafe.Pointer(&st)), 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return 0, os.NewSyscallError("fstat", e)
		}
		return st.Size, nil
	}
}
