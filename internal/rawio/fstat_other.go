//go:build !(amd64 || arm64 || ppc64 || ppc64le || riscv64 || s390x)

package rawio

import (
	"os"
	"syscall"
)

// FstatSize is the size fstat(2) gives fd, as an ordinary system call: the
// architectures left have another fstat call, or another struct stat.
func FstatSize(fd int) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, os.NewSyscallError("fstat", err)
	}
	return st.Size, nil
}
