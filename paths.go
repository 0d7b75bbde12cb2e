package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// checkPaths tells a misconfigured --path.procfs or --path.sysfs (missing,
// not a directory, or a procfs without buddyinfo, which every kernel with
// the buddy allocator prints) from a kernel that lacks one feature: the
// collectors report the second as "not available on this system", which for
// the first would send the reader looking at the kernel instead of the flag.
func checkPaths(procPath, sysPath string) []error {
	var errs []error
	for _, p := range []struct{ flag, path string }{{"--path.procfs", procPath}, {"--path.sysfs", sysPath}} {
		fi, err := os.Stat(p.path)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s=%s: %w", p.flag, p.path, err))
		case !fi.IsDir():
			errs = append(errs, fmt.Errorf("%s=%s is not a directory", p.flag, p.path))
		}
	}
	if len(errs) == 0 {
		if _, err := os.Stat(filepath.Join(procPath, "buddyinfo")); err != nil {
			errs = append(errs, fmt.Errorf("--path.procfs=%s has no buddyinfo, so it is not a procfs mount (every Linux kernel prints /proc/buddyinfo): %w", procPath, err))
		}
	}
	return errs
}
