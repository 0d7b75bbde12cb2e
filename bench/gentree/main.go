// Command gentree writes a synthesized procfs and sysfs tree of a machine
// with many NUMA nodes and CPUs, for loading exporters at a size the
// development machine does not have: every node is a copy of the running
// machine's node 0 as the kernel prints it (buddyinfo, zoneinfo with a
// per-CPU pageset for every CPU, pagetypeinfo), so the files agree with
// each other as the live ones do. vmstat and the sysctl and THP files the
// exporters read are copied as they are.
//
// Usage: gentree -nodes 64 -cpus 256 -out DIR   (writes DIR/proc and DIR/sys)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

func main() {
	nodes := flag.Int("nodes", 8, "NUMA nodes")
	cpus := flag.Int("cpus", 32, "CPUs (a pageset each in every zone)")
	out := flag.String("out", "", "directory to write proc/ and sys/ under")
	proc := flag.String("proc", "/proc", "procfs to copy node 0 from")
	sys := flag.String("sys", "/sys", "sysfs to copy from")
	flag.Parse()
	if *out == "" || *nodes < 1 || *cpus < 1 {
		fmt.Fprintln(os.Stderr, "usage: gentree -nodes N -cpus C -out DIR")
		os.Exit(2)
	}
	if err := run(*proc, *sys, *out, *nodes, *cpus); err != nil {
		fmt.Fprintln(os.Stderr, "gentree:", err)
		os.Exit(1)
	}
}

func run(proc, sys, out string, nodes, cpus int) error {
	read := func(p string) ([]byte, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		return b, nil
	}
	write := func(rel string, b []byte) error {
		p := filepath.Join(out, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}
	buddy, err := read(filepath.Join(proc, "buddyinfo"))
	if err != nil {
		return err
	}
	zone, err := read(filepath.Join(proc, "zoneinfo"))
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"proc/buddyinfo": replicateLines(buddy, nodes, buddyNode),
		"proc/zoneinfo":  zoneinfo(zone, nodes, cpus),
	}
	if pti, err := read(filepath.Join(proc, "pagetypeinfo")); err == nil {
		files["proc/pagetypeinfo"] = replicateLines(pti, nodes, ptiNode)
	}
	for _, rel := range []string{"vmstat", "stat", "sys/vm/compaction_proactiveness", "sys/vm/extfrag_threshold",
		"sys/vm/min_free_kbytes", "sys/vm/watermark_scale_factor", "sys/vm/watermark_boost_factor", "sys/vm/defrag_mode"} {
		if b, err := os.ReadFile(filepath.Join(proc, rel)); err == nil {
			files["proc/"+rel] = b
		}
	}
	for _, rel := range []string{"kernel/mm/transparent_hugepage/enabled", "kernel/mm/transparent_hugepage/defrag",
		"kernel/mm/transparent_hugepage/hpage_pmd_size"} {
		if b, err := os.ReadFile(filepath.Join(sys, rel)); err == nil {
			files["sys/"+rel] = b
		}
	}
	for rel, b := range files {
		if err := write(rel, b); err != nil {
			return err
		}
	}
	fmt.Printf("%s: %d nodes x %d CPUs: buddyinfo %d B, zoneinfo %d B, pagetypeinfo %d B\n",
		out, nodes, cpus, len(files["proc/buddyinfo"]), len(files["proc/zoneinfo"]), len(files["proc/pagetypeinfo"]))
	return nil
}

var (
	buddyNode = regexp.MustCompile(`^Node (\d+),`)
	ptiNode   = regexp.MustCompile(`^Node +(\d+),`)
)

// replicateLines copies every run of node 0's lines once per node, with
// the node id rewritten in the width the kernel prints it, and drops the
// running machine's other nodes.
func replicateLines(b []byte, nodes int, re *regexp.Regexp) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	var out strings.Builder
	for i := 0; i < len(lines); {
		m := re.FindStringSubmatchIndex(lines[i])
		if m == nil {
			out.WriteString(lines[i])
			i++
			continue
		}
		var run []string // node 0's lines of this table
		j := i
		for ; j < len(lines); j++ {
			m := re.FindStringSubmatchIndex(lines[j])
			if m == nil {
				break
			}
			if lines[j][m[2]:m[3]] == "0" {
				run = append(run, lines[j])
			}
		}
		for n := 0; n < nodes; n++ {
			for _, l := range run {
				m := re.FindStringSubmatchIndex(l)
				id := strconv.Itoa(n)
				if w := m[3] - m[2]; l[m[2]-1] == ' ' && re == ptiNode {
					id = fmt.Sprintf("%*d", w+countSpaces(l[:m[2]])-1, n)
					out.WriteString("Node " + id + l[m[3]:])
					continue
				}
				out.WriteString(l[:m[2]] + id + l[m[3]:])
			}
		}
		i = j
	}
	return []byte(out.String())
}

// countSpaces counts the spaces after "Node" in the prefix p.
func countSpaces(p string) int { return len(p) - len(strings.TrimRight(p, " ")) }

// zoneinfo writes node 0's zones once per node, each zone with a pageset
// for every CPU (a copy of CPU 0's), and start_pfn moved past the nodes
// before it.
func zoneinfo(b []byte, nodes, cpus int) []byte {
	var zones [][]string // node 0's zones, lines each
	for _, blk := range splitZones(string(b)) {
		if strings.HasPrefix(blk[0], "Node 0,") {
			zones = append(zones, blk)
		}
	}
	var span uint64 = 1 << 30 >> 12 // pages between two nodes' first pfns: at least 1 GiB
	for _, z := range zones {
		for _, l := range z {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "spanned" {
				s, _ := strconv.ParseUint(f[1], 10, 64)
				span += s
			}
		}
	}
	var out bytes.Buffer
	for n := 0; n < nodes; n++ {
		for _, z := range zones {
			for i := 0; i < len(z); i++ {
				l := z[i]
				switch {
				case i == 0:
					out.WriteString(strings.Replace(l, "Node 0,", "Node "+strconv.Itoa(n)+",", 1))
				case strings.TrimSpace(l) == "cpu: 0":
					j := i + 1
					for j < len(z) && !strings.HasPrefix(strings.TrimSpace(z[j]), "cpu:") && strings.HasPrefix(z[j], "      ") {
						j++
					}
					for c := 0; c < cpus; c++ {
						fmt.Fprintf(&out, "    cpu: %d\n", c)
						for _, pl := range z[i+1 : j] {
							out.WriteString(pl)
						}
					}
					for j < len(z) && strings.HasPrefix(strings.TrimSpace(z[j]), "cpu:") { // the running machine's other CPUs
						j++
						for j < len(z) && !strings.HasPrefix(strings.TrimSpace(z[j]), "cpu:") && strings.HasPrefix(z[j], "      ") {
							j++
						}
					}
					i = j - 1
				case strings.HasPrefix(strings.TrimSpace(l), "start_pfn:"):
					f := strings.Fields(l)
					pfn, _ := strconv.ParseUint(f[1], 10, 64)
					fmt.Fprintf(&out, "  start_pfn:           %d\n", pfn+uint64(n)*span)
				default:
					out.WriteString(l)
				}
			}
		}
	}
	return out.Bytes()
}

// splitZones splits zoneinfo into zones, each from its "Node" line.
func splitZones(s string) [][]string {
	var zones [][]string
	for _, l := range strings.SplitAfter(s, "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "Node ") {
			zones = append(zones, nil)
		}
		if len(zones) > 0 {
			zones[len(zones)-1] = append(zones[len(zones)-1], l)
		}
	}
	return zones
}
