package fragmentation

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// MaxOrders bounds the number of orders accepted on a line. Kernels print
// NR_PAGE_ORDERS columns: 11 on x86_64, 14 on arm64 with 64 KiB pages; 32
// leaves room for any configuration while keeping 2^order exact in uint64.
const MaxOrders = 32

// maxFreePages bounds a zone's free pages so that the kernel's
// "free_pages * 1000" cannot overflow and every figure stays exact in a
// float64. 2^50 pages is 4 EiB with 4 KiB pages.
const maxFreePages = 1 << 50

// ErrMalformed is wrapped by every parse error, so callers can tell bad input
// from I/O failures.
var ErrMalformed = errors.New("malformed buddyinfo")

// Zone is one line of /proc/buddyinfo: the free blocks of each order in one
// zone of one NUMA node.
type Zone struct {
	Node string   // NUMA node id as the kernel prints it
	Name string   // zone name: DMA, DMA32, Normal, Movable, ...
	Free []uint64 // Free[k] is the number of free blocks of 2^k pages
}

// FreePages is the zone's free memory in pages (the kernel's free_pages).
func (z *Zone) FreePages() uint64 {
	var f uint64
	for k, n := range z.Free {
		f += n << k
	}
	return f
}

// LargestFreeOrder is the highest order with a free block, or -1 when the
// zone has nothing free.
func (z *Zone) LargestFreeOrder() int {
	for k := len(z.Free) - 1; k >= 0; k-- {
		if z.Free[k] > 0 {
			return k
		}
	}
	return -1
}

// ParseBuddyinfo parses the content of /proc/buddyinfo. It reuses the
// storage of dst (its zones, strings and slices) so that parsing the same
// machine's file again allocates nothing; pass nil the first time.
//
// Every line must read "Node <id>, zone <name> <count>...", with the same
// number of counts on every line. Anything else is an error wrapping
// ErrMalformed; dst's zones are then not to be used.
func ParseBuddyinfo(data []byte, dst []Zone) ([]Zone, error) {
	zones := dst[:0]
	orders := -1
	var dups dupCheck
	key := func(j int) (string, string) { return zones[j].Node, zones[j].Name }
	for lineNo := 1; len(data) > 0; lineNo++ {
		var line []byte
		line, data = procfile.CutLine(data)
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		zones = procfile.Grow(zones)
		z := &zones[len(zones)-1]
		if err := parseLine(line, z); err != nil {
			return zones, fmt.Errorf("%w: line %d: %w", ErrMalformed, lineNo, err)
		}
		if dups.listedTwice(len(zones)-1, key) {
			return zones, fmt.Errorf("%w: line %d: zone %s of node %s listed twice", ErrMalformed, lineNo, z.Name, z.Node)
		}
		if orders < 0 {
			orders = len(z.Free)
		} else if len(z.Free) != orders {
			return zones, fmt.Errorf("%w: line %d has %d orders, earlier lines %d", ErrMalformed, lineNo, len(z.Free), orders)
		}
	}
	if len(zones) == 0 {
		return zones, fmt.Errorf("%w: no zones", ErrMalformed)
	}
	return zones, nil
}

func parseLine(line []byte, z *Zone) error {
	f := procfile.Fields{Rest: line}
	node, name, err := procfile.NodeZone(&f)
	if err != nil {
		return err
	}
	if !procfile.IsName(name) {
		return fmt.Errorf("zone name %q is not a kernel zone name", name)
	}
	if string(node) != z.Node { // the comparison does not allocate
		z.Node = string(node)
	}
	if string(name) != z.Name {
		z.Name = string(name)
	}
	z.Free = z.Free[:0]
	var pages uint64
	for w := f.Next(); w != nil; w = f.Next() {
		k := len(z.Free)
		if k == MaxOrders {
			return fmt.Errorf("more than %d orders", MaxOrders)
		}
		n, ok := procfile.ParseUint(w)
		if !ok {
			return fmt.Errorf("order %d: %q is not a count", k, w)
		}
		if n > maxFreePages>>k || pages+n<<k > maxFreePages {
			return fmt.Errorf("order %d: %d free blocks is implausibly large", k, n)
		}
		pages += n << k
		z.Free = append(z.Free, n)
	}
	if len(z.Free) == 0 {
		return fmt.Errorf("zone %s has no free counts", name)
	}
	return nil
}
