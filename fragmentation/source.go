package fragmentation

import (
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

// Source reads a machine's buddyinfo and zoneinfo through kept descriptors
// and keeps the parsed result between reads, so repeated reads allocate
// nothing. A Source is not safe for concurrent use: give each user its own.
type Source struct {
	buddyinfo, zoneinfo *procfile.File

	zones []Zone
	infos []ZoneInfo
	chunk int // zoneinfo's piece size
}

// NewSource returns a Source for the procfs mounted at procPath.
func NewSource(procPath string) *Source {
	return &Source{
		buddyinfo: procfile.New(filepath.Join(procPath, "buddyinfo")),
		zoneinfo:  procfile.New(filepath.Join(procPath, "zoneinfo")),
		chunk:     zoneinfoChunk,
	}
}

// Buddyinfo reads and parses /proc/buddyinfo. The result is valid until the
// next call.
func (s *Source) Buddyinfo() ([]Zone, error) {
	err := s.buddyinfo.Do(func(data []byte) error {
		var err error
		s.zones, err = ParseBuddyinfo(data, s.zones)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.buddyinfo.Path(), err)
	}
	return s.zones, nil
}

// zoneinfoChunk is how much of /proc/zoneinfo is held at a time: the file
// grows with nodes and CPUs (7.6 MB at 64 nodes x 256 CPUs, a per-CPU
// pageset in every zone), so it is parsed as it is read, whole zones at a
// time; a piece grows only for a zone larger than this.
const zoneinfoChunk = 64 << 10

// Zoneinfo reads and parses /proc/zoneinfo. The result is valid until the
// next call.
func (s *Source) Zoneinfo() ([]ZoneInfo, error) {
	p := zoneinfoParser{zones: s.infos[:0]}
	err := s.zoneinfo.Stream(s.chunk, func(data []byte, final bool) (int, error) {
		n := len(data)
		if !final {
			n = zoneinfoCut(data)
		}
		return n, p.parse(data[:n])
	})
	s.infos = p.zones
	if err == nil {
		s.infos, err = p.finish()
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.zoneinfo.Path(), err)
	}
	return s.infos, nil
}

// Close releases the descriptors.
func (s *Source) Close() error {
	s.buddyinfo.Close()
	return s.zoneinfo.Close()
}

// NodeScoreOf is the proactive-compaction score of one NUMA node.
type NodeScoreOf struct {
	Node  string
	Score uint64
}

// NodeScores computes the kernel's proactive-compaction score
// (fragmentation_score_node, 0..100) of every node that has zones in
// buddyinfo, at the given order, appending to dst. The node's present pages
// are pgdat->node_present_pages, the sum over all its zones in zoneinfo. Zones missing from
// zoneinfo make it an error, since their weight is unknown.
//
// Kernel files list a node's zones together and the nodes in increasing
// order; for such input the scores take one merge walk over both lists,
// and other input is scored zone by zone against every other.
func NodeScores(zones []Zone, infos []ZoneInfo, order int, dst []NodeScoreOf) ([]NodeScoreOf, error) {
	if !nodesIncrease(len(zones), func(i int) string { return zones[i].Node }) ||
		!nodesIncrease(len(infos), func(i int) string { return infos[i].Node }) {
		return nodeScoresAnyOrder(zones, infos, order, dst)
	}
	out := dst[:0]
	j := 0
	for i := 0; i < len(zones); {
		node := zones[i].Node
		e := i + 1
		for e < len(zones) && zones[e].Node == node {
			e++
		}
		for j < len(infos) && nodeLess(infos[j].Node, node) {
			j++
		}
		a := j
		var nodePresent, score uint64
		for ; j < len(infos) && infos[j].Node == node; j++ {
			nodePresent += infos[j].Present
		}
		for _, z := range zones[i:e] {
			present, ok := presentPages(infos[a:j], node, z.Name)
			if !ok {
				return out, fmt.Errorf("zone %s of node %s is in buddyinfo but not in zoneinfo", z.Name, node)
			}
			if present == 0 {
				continue
			}
			score += weightedZoneScore(z.Free, present, nodePresent, order)
		}
		out = append(out, NodeScoreOf{Node: node, Score: score})
		i = e
	}
	return out, nil
}

// nodeLess orders node ids as numbers (they are digits without leading
// zeros as the kernel prints them; any two distinct strings stay distinct).
func nodeLess(a, b string) bool {
	return len(a) < len(b) || len(a) == len(b) && a < b
}

// nodesIncrease reports whether the n zones whose node ids node gives list
// each node's zones together and the nodes in increasing order.
func nodesIncrease(n int, node func(int) string) bool {
	for i := 1; i < n; i++ {
		if a, b := node(i-1), node(i); a != b && !nodeLess(a, b) {
			return false
		}
	}
	return true
}

// nodeScoresAnyOrder is NodeScores for zones in any order.
func nodeScoresAnyOrder(zones []Zone, infos []ZoneInfo, order int, dst []NodeScoreOf) ([]NodeScoreOf, error) {
	out := dst[:0]
	for i := range zones {
		node := zones[i].Node
		if seen(out, node) {
			continue
		}
		var nodePresent, score uint64
		for j := range infos {
			if infos[j].Node == node {
				nodePresent += infos[j].Present
			}
		}
		for j := range zones {
			if zones[j].Node != node {
				continue
			}
			present, ok := presentPages(infos, node, zones[j].Name)
			if !ok {
				return out, fmt.Errorf("zone %s of node %s is in buddyinfo but not in zoneinfo", zones[j].Name, node)
			}
			if present == 0 {
				continue
			}
			score += weightedZoneScore(zones[j].Free, present, nodePresent, order)
		}
		out = append(out, NodeScoreOf{Node: node, Score: score})
	}
	return out, nil
}

func seen(out []NodeScoreOf, node string) bool {
	for _, s := range out {
		if s.Node == node {
			return true
		}
	}
	return false
}

func presentPages(infos []ZoneInfo, node, zone string) (uint64, bool) {
	for i := range infos {
		if infos[i].Node == node && infos[i].Name == zone {
			return infos[i].Present, true
		}
	}
	return 0, false
}

// HugePageOrder is the order the kernel's proactive compaction scores
// (COMPACTION_HPAGE_ORDER, the PMD order): log2 of
// transparent_hugepage/hpage_pmd_size over the page size. Without THP it
// falls back to PAGE_SHIFT-3, the PMD order of every 64-bit architecture with
// 8-byte page-table entries (9 for 4 KiB pages, 13 for 64 KiB), and says so.
func HugePageOrder(sysPath string, pageSize int) (order int, fromSysfs bool) {
	fallback := bits.TrailingZeros(uint(pageSize)) - 3
	b, err := os.ReadFile(filepath.Join(sysPath, "kernel/mm/transparent_hugepage/hpage_pmd_size"))
	if err != nil {
		return fallback, false
	}
	size, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || size < uint64(pageSize) || size&(size-1) != 0 || pageSize&(pageSize-1) != 0 {
		return fallback, false
	}
	return bits.TrailingZeros64(size) - bits.TrailingZeros(uint(pageSize)), true
}

// dupCheck finds a zone listed twice as a file's zones are parsed, in
// linear time for files as the kernel prints them (a node's zones together,
// nodes in increasing order): a new zone is compared with its own node's
// zones only, which the order guarantees are the only ones that can share
// its node. Once the node ids fail to increase, every earlier zone is.
type dupCheck struct {
	runStart  int // the first zone of the current node
	unordered bool
}

// listedTwice reports whether zone i, just parsed, has the node and name of
// an earlier zone; key gives zone j's node id and name.
func (d *dupCheck) listedTwice(i int, key func(j int) (node, name string)) bool {
	if i == 0 {
		*d = dupCheck{}
		return false
	}
	node, name := key(i)
	if prev, _ := key(i - 1); prev != node {
		if !nodeLess(prev, node) {
			d.unordered = true
		}
		d.runStart = i
	}
	from := d.runStart
	if d.unordered {
		from = 0
	}
	for j := from; j < i; j++ {
		if n, m := key(j); n == node && m == name {
			return true
		}
	}
	return false
}
