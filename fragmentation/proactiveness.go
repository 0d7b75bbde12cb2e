package fragmentation

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// ProactivenessFile is vm.compaction_proactiveness relative to the procfs
// root; open it with procfile.NewOne and keep the File for ReadProactiveness.
const ProactivenessFile = "sys/vm/compaction_proactiveness"

// ReadProactiveness reads vm.compaction_proactiveness (0..100) through f, a
// kept descriptor on ProactivenessFile. ok is false, with a nil error, when
// the kernel has no such sysctl (before 5.9, or without CONFIG_COMPACTION):
// no proactive compaction and no thresholds, which is not a fault. Other
// read errors and a value that is not a number are errors.
func ReadProactiveness(f *procfile.File) (v uint64, ok bool, err error) {
	err = f.Do(func(data []byte) error {
		fields := procfile.Fields{Rest: data}
		n, valid := procfile.ParseUint(fields.Next())
		if !valid {
			return fmt.Errorf("%s: %q is not a number", f.Path(), data)
		}
		v = n
		return nil
	})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	}
	return v, true, nil
}
