package fragmentation

import (
	"bytes"
	"fmt"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// ZoneInfo is what /proc/zoneinfo says about one zone, in pages. Fields the
// running kernel does not print are zero, with the matching Has* false.
type ZoneInfo struct {
	Node, Name string

	Free, Boost, Min, Low, High, Promo uint64
	Spanned, Present, Managed, CMA     uint64
	FreePagesBlocks                    uint64 // nr_free_pages_blocks, kernels >= 6.15
	// managed: kernels >= 3.8; boost: >= 5.0; promo: >= 6.1

	HasBoost, HasPromo, HasManaged, HasFreePagesBlocks bool // printed by this kernel
}

// ParseZoneinfo parses the content of /proc/zoneinfo, reusing dst's storage.
// It reads only the zone headers and the per-zone page counts it knows and
// skips everything else, so new kernel fields do not break it.
func ParseZoneinfo(data []byte, dst []ZoneInfo) ([]ZoneInfo, error) {
	zones := dst[:0]
	var z *ZoneInfo
	lineNo := 0
	err := procfile.Lines(data, func(line []byte) error {
		lineNo++
		if !mayBeZoneinfoKey(line) {
			return nil
		}
		f := procfile.Fields{Rest: line}
		key := f.Next()
		if key == nil {
			return nil
		}
		if string(key) == "Node" {
			node := f.Next()
			if len(node) < 2 || node[len(node)-1] != ',' || !procfile.IsDigits(node[:len(node)-1]) {
				return fmt.Errorf("line %d: want node id and comma, got %q", lineNo, node)
			}
			if w := f.Next(); string(w) != "zone" {
				return fmt.Errorf("line %d: want %q, got %q", lineNo, "zone", w)
			}
			name := f.Next()
			if !procfile.IsName(name) {
				return fmt.Errorf("line %d: zone name %q is not a kernel zone name", lineNo, name)
			}
			zones = procfile.Grow(zones)
			z = &zones[len(zones)-1]
			node = node[:len(node)-1]
			keepNode, keepName := z.Node, z.Name
			*z = ZoneInfo{Node: keepNode, Name: keepName}
			if string(node) != z.Node {
				z.Node = string(node)
			}
			if string(name) != z.Name {
				z.Name = string(name)
			}
			for i := range zones[:len(zones)-1] {
				if zones[i].Node == z.Node && zones[i].Name == z.Name {
					return fmt.Errorf("line %d: zone %s of node %s listed twice", lineNo, z.Name, z.Node)
				}
			}
			return nil
		}
		if z == nil {
			return fmt.Errorf("line %d: %q before the first zone header", lineNo, key)
		}
		var dstField *uint64
		switch string(key) {
		case "pages":
			if string(f.Next()) != "free" {
				return nil
			}
			dstField = &z.Free
		case "boost":
			dstField, z.HasBoost = &z.Boost, true
		case "min":
			dstField = &z.Min
		case "low":
			dstField = &z.Low
		case "high":
			dstField = &z.High
		case "promo":
			dstField, z.HasPromo = &z.Promo, true
		case "spanned":
			dstField = &z.Spanned
		case "present":
			dstField = &z.Present
		case "managed":
			dstField, z.HasManaged = &z.Managed, true
		case "cma":
			dstField = &z.CMA
		case "nr_free_pages_blocks":
			dstField, z.HasFreePagesBlocks = &z.FreePagesBlocks, true
		default:
			return nil
		}
		v := f.Next()
		n, ok := procfile.ParseUint(v)
		if !ok {
			return fmt.Errorf("line %d: %s: %q is not a page count", lineNo, key, v)
		}
		*dstField = n
		return nil
	})
	if err != nil {
		return zones, fmt.Errorf("malformed zoneinfo: %w", err)
	}
	if len(zones) == 0 {
		return zones, fmt.Errorf("malformed zoneinfo: no zones")
	}
	return zones, nil
}

// mayBeZoneinfoKey cheaply rules out most of zoneinfo's lines (per-node and
// per-zone counters, pagesets) by the first byte of their key, before they
// are split into fields: a scrape parses the file every time.
func mayBeZoneinfoKey(line []byte) bool {
	i := 0
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if i == len(line) {
		return false
	}
	switch line[i] {
	case 'N', 'p', 'b', 'm', 'l', 'h', 's', 'c':
		return true
	case 'n':
		return bytes.HasPrefix(line[i:], []byte("nr_free_pages_blocks"))
	}
	return false
}
