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
// It reads the zone headers and the per-zone page counts it knows and skips
// everything else, so new kernel fields do not break it.
//
// A scrape parses the file every time, and most of it is of no interest:
// the node counters after "per-node stats", and the zone counters and
// per-CPU pagesets after "protection:". Those runs are jumped over, to the
// zone's "pages free" line and to the next zone header, except for the one
// zone counter read (nr_free_pages_blocks). Every other line's key is
// checked; the first two bytes of the key rule most of them out.
func ParseZoneinfo(data []byte, dst []ZoneInfo) ([]ZoneInfo, error) {
	p := zoneinfoParser{zones: dst[:0]}
	if err := p.parse(data); err != nil {
		return p.zones, err
	}
	return p.finish()
}

// zoneinfoParser parses zoneinfo in pieces that each end where a zone ends
// (see Source.Zoneinfo), so the file need not be held whole.
type zoneinfoParser struct {
	zones []ZoneInfo
	dups  dupCheck
	lines int // lines of the pieces parsed before, for error messages
}

func (p *zoneinfoParser) finish() ([]ZoneInfo, error) {
	if len(p.zones) == 0 {
		return p.zones, fmt.Errorf("malformed zoneinfo: no zones")
	}
	return p.zones, nil
}

// zoneinfoCut is how much of data, a piece of zoneinfo that goes on, holds
// whole zones: up to the last zone header's line, or 0 if there is none.
func zoneinfoCut(data []byte) int {
	// Forward, with bytes.Index for "Node " (whose rare 'N' it looks for
	// first): a piece holds a few zone headers, and a backward byte
	// search is several times slower.
	cut := 0
	for off := 1; off < len(data); {
		i := bytes.Index(data[off:], []byte("Node "))
		if i < 0 {
			break
		}
		if data[off+i-1] == '\n' {
			cut = off + i
		}
		off += i + 1
	}
	return cut
}

// parse parses a piece of zoneinfo that ends where a zone ends, appending
// to p.zones.
func (p *zoneinfoParser) parse(data []byte) error {
	zones := p.zones
	defer func() { p.zones = zones }()
	var z *ZoneInfo
	if len(zones) > 0 {
		z = &zones[len(zones)-1]
	}
	dups := &p.dups
	malformed := func(rest []byte, format string, args ...any) error {
		line := p.lines + bytes.Count(data[:len(data)-len(rest)], []byte("\n")) + 1
		return fmt.Errorf("malformed zoneinfo: line %d: "+format, append([]any{line}, args...)...)
	}
	defer func() { p.lines += bytes.Count(data, []byte("\n")) }()
	rest := data
	var zoneRest []byte // the zone's end, once a jump has found it
	for len(rest) > 0 {
		i := 0
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		if i == len(rest) || !zoneinfoKeyStart(rest[i:]) {
			nl := bytes.IndexByte(rest[i:], '\n')
			if nl < 0 {
				break
			}
			rest = rest[i+nl+1:]
			continue
		}
		line, next := procfile.CutLine(rest[i:])
		f := procfile.Fields{Rest: line}
		key := f.Next()
		if string(key) == "Node" {
			var err error
			if zones, err = zoneHeader(line, zones); err != nil {
				return malformed(rest, "%w", err)
			}
			z = &zones[len(zones)-1]
			zoneRest = nil
			if dups.listedTwice(len(zones)-1, func(j int) (string, string) { return zones[j].Node, zones[j].Name }) {
				return malformed(rest, "zone %s of node %s listed twice", z.Name, z.Node)
			}
			rest = next
			continue
		}
		if z == nil {
			return malformed(rest, "%q before the first zone header", key)
		}
		var dstField *uint64
		switch string(key) {
		case "per-node":
			// "per-node stats": node counters up to the zone's "pages
			// free", if no zone header comes first.
			if j := bytes.Index(next, []byte("pages free")); j >= 0 && zoneEnd(next[:j]) == j {
				next = next[bytes.LastIndexByte(next[:j], '\n')+1:]
			}
		case "protection:":
			// Zone counters and pagesets up to the next zone header, but
			// for the nr_free_pages_blocks counter among them; after it,
			// the rest is jumped over from where this search ended.
			end := zoneEnd(next)
			zoneRest = next[end:]
			if j := bytes.Index(next[:end], []byte("nr_free_pages_blocks ")); j >= 0 {
				end = bytes.LastIndexByte(next[:j], '\n') + 1
			}
			next = next[end:]
		case "pages":
			if string(f.Next()) == "free" {
				dstField = &z.Free
			}
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
			if zoneRest != nil {
				next, zoneRest = zoneRest, nil
			} else {
				next = next[zoneEnd(next):]
			}
		}
		if dstField != nil {
			v := f.Next()
			n, ok := procfile.ParseUint(v)
			if !ok {
				return malformed(rest, "%s: %q is not a page count", key, v)
			}
			*dstField = n
		}
		rest = next
	}
	return nil
}

// zoneEnd is where the next zone header starts in b, a zone's remaining
// lines, or len(b).
func zoneEnd(b []byte) int {
	// "Node " rather than "\nNode ": a search starts with the rare 'N'.
	for off := 0; ; {
		j := bytes.Index(b[off:], []byte("Node "))
		if j < 0 {
			return len(b)
		}
		if off+j == 0 || b[off+j-1] == '\n' {
			return off + j
		}
		off += j + 1
	}
}

// zoneHeader parses a "Node 0, zone   Normal" line into a new
// last zone of zones, keeping the strings an earlier parse left there.
func zoneHeader(line []byte, zones []ZoneInfo) ([]ZoneInfo, error) {
	node, name, err := procfile.NodeZone(&procfile.Fields{Rest: line})
	if err != nil {
		return zones, err
	}
	if !procfile.IsName(name) {
		return zones, fmt.Errorf("zone name %q is not a kernel zone name", name)
	}
	zones = procfile.Grow(zones)
	z := &zones[len(zones)-1]
	keepNode, keepName := z.Node, z.Name
	*z = ZoneInfo{Node: keepNode, Name: keepName}
	if string(node) != z.Node {
		z.Node = string(node)
	}
	if string(name) != z.Name {
		z.Name = string(name)
	}
	return zones, nil
}

// zoneinfoKeyStart reports whether a line whose key starts at b may be a
// zone header, a field ParseZoneinfo reads or a line it jumps from, by the
// key's first two bytes: that rules out most counters and the pagesets'
// "high:", "count:" and "batch:".
func zoneinfoKeyStart(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	switch string(b[:2]) {
	case "No", "pa", "bo", "mi", "lo", "hi", "pr", "pe", "sp", "ma", "cm":
		return true
	case "nr":
		return bytes.HasPrefix(b, []byte("nr_free_pages_blocks"))
	}
	return false
}
