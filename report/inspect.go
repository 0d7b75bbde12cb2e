package report

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// Exit statuses of the inspect command. They follow the node-problem-detector
// custom-plugin protocol (0 OK, 1 problem, 2 unknown), which a deploy script
// reads just as well as "non-zero means stop". Usage errors exit 2 too.
const (
	ExitOK      = 0 // no zone but DMA trips the --fail-on gate for the order
	ExitFailing = 1 // a zone other than DMA trips it (see FailOnFailing, FailOnAtRisk)
	ExitError   = 2 // could not tell: unreadable kernel files, a bad flag
)

// The --fail-on gates: which verdicts make inspect exit ExitFailing.
const (
	// FailOnFailing, the default, is the contract: non-zero only
	// when the order is failing for fragmentation, the failure compaction
	// cures. Failing for low memory is another problem (reclaim's) and
	// passes, as does at risk.
	FailOnFailing = "failing"
	// FailOnAtRisk stops earlier, for a deploy gate that wants headroom:
	// non-zero when the order is anything but OK in some zone, that is at
	// risk (unusable free index at or above the threshold, as on the seed's
	// fragmented node, where one order-10 block was left) or failing for
	// either cause.
	FailOnAtRisk = "at-risk"
)

// InspectOptions are the inspect command's flags.
type InspectOptions struct {
	Order  int    // the allocation order to judge
	Output string // "table", "json" or "summary" (the table's first line only: a node-problem-detector condition message)
	FailOn string // FailOnFailing (also when empty) or FailOnAtRisk
}

// gateFrom is the best verdict that makes inspect exit ExitFailing under a
// --fail-on gate: verdicts are ordered from good to bad, so the gate trips
// when the worst zone's verdict is at least this.
func gateFrom(failOn string) (Verdict, error) {
	switch failOn {
	case FailOnFailing, "":
		return FailingFragmentation, nil
	case FailOnAtRisk:
		return AtRisk, nil
	}
	return OK, fmt.Errorf("unknown --fail-on %q (want %s or %s)", failOn, FailOnFailing, FailOnAtRisk)
}

// Inspect reads the machine once, prints the report to stdout, and returns
// the exit status: ExitFailing when the worst zone but DMA trips the
// opts.FailOn gate for the order (by default: failing for fragmentation).
// Errors go to stderr.
func Inspect(cfg Config, opts InspectOptions, stdout, stderr io.Writer) int {
	gate, err := gateFrom(opts.FailOn)
	if err != nil {
		fmt.Fprintf(stderr, "inspect: %v\n", err)
		return ExitError
	}
	r, err := NewReader(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "inspect: %v\n", err)
		return ExitError
	}
	defer r.Close()
	s, err := r.Read()
	if err != nil {
		fmt.Fprintf(stderr, "inspect: %v\n", err)
		return ExitError
	}
	if err := s.CheckOrder(opts.Order); err != nil {
		fmt.Fprintf(stderr, "inspect: --order: %v\n", err)
		return ExitError
	}
	for _, w := range s.Warnings {
		fmt.Fprintf(stderr, "inspect: warning: %s\n", w)
	}
	switch opts.Output {
	case "json":
		err = WriteJSON(stdout, s, opts.Order)
	case "table", "":
		err = WriteTable(stdout, s, opts.Order)
	case "summary":
		ew := &errWriter{w: stdout}
		writeSummary(ew, s, opts.Order)
		err = ew.err
	default:
		err = fmt.Errorf("unknown output %q (want table, json or summary)", opts.Output)
	}
	if err != nil {
		fmt.Fprintf(stderr, "inspect: %v\n", err)
		return ExitError
	}
	if v, _ := s.Worst(opts.Order); v >= gate {
		return ExitFailing
	}
	return ExitOK
}

// WriteTable prints the snapshot for a person: a summary line, then per
// zone its verdicts, a table of free blocks and indices by order, and per
// node its compaction score.
func WriteTable(w io.Writer, s *Snapshot, order int) error {
	ew := &errWriter{w: w}
	writeSummary(ew, s, order)
	ew.printf("page size %s; the kernel prints orders 0..%d\n", formatBytes(s.PageSize), s.Orders-1)
	orders := []int{order}
	if s.ScoreOrder != order && s.ScoreOrder < s.Orders {
		orders = append(orders, s.ScoreOrder)
	}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		for j := range n.Zones {
			z := &n.Zones[j]
			ew.printf("\nNode %s, zone %s", z.Node, z.Name)
			if !Gating(z.Name) {
				ew.printf(" (not counted in the verdict)")
			}
			ew.printf("\n")
			for _, o := range orders {
				ew.printf("  %s allocations: %s: %s\n", s.OrderName(o), s.Verdict(z, o), s.Explain(z, o))
			}
			ew.printf("  free %s; largest free block %s", formatBytes(z.FreePages()*s.PageSize), s.LargestSentence(z))
			if z.ManagedPages > 0 {
				ew.printf("; managed %s", formatBytes(z.ManagedPages*s.PageSize))
			}
			ew.printf("\n")
			tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(tw, "  order\tblock\tfree blocks\tfree bytes\tunusable index\tfragmentation index\t\n")
			for k, cnt := range z.Free {
				fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\t%s\t%s\t\n", k, formatBytes(s.PageSize<<k), cnt,
					formatBytes(cnt<<k*s.PageSize), thousandths(z.Unusable(k)), thousandths(z.FragIndex(k)))
			}
			tw.Flush()
		}
		ew.printf("\nNode %s: %s\n", n.ID, s.ScoreSentence(n))
	}
	return ew.err
}

// errWriter keeps the first write error so the table code stays readable.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

// The JSON document of inspect --output=json. Indices are the kernel's
// values (thousandths / 1000); sizes are in bytes.
type jsonReport struct {
	Order                   int         `json:"order"`
	Verdict                 Verdict     `json:"verdict"`
	UnusableThreshold       json.Number `json:"unusable_threshold"`
	PageSizeBytes           uint64      `json:"page_size_bytes"`
	ScoreOrder              int         `json:"compaction_score_order"`
	CompactionProactiveness *int64      `json:"compaction_proactiveness"`
	Thresholds              *jsonThres  `json:"compaction_score_thresholds"`
	Nodes                   []jsonNode  `json:"nodes"`
	Warnings                []string    `json:"warnings"`
}

type jsonThres struct {
	Low  uint64 `json:"low"`
	High uint64 `json:"high"`
}

type jsonNode struct {
	NUMANode        string     `json:"numa_node"`
	CompactionScore *uint64    `json:"compaction_score"`
	Zones           []jsonZone `json:"zones"`
}

type jsonZone struct {
	Zone               string      `json:"zone"`
	Counted            bool        `json:"counted_in_verdict"`
	Verdict            Verdict     `json:"verdict"`
	Explanation        string      `json:"explanation"`
	ScoreOrderVerdict  Verdict     `json:"compaction_score_order_verdict"`
	LargestFreeOrder   int         `json:"largest_free_order"`
	FreeBytes          uint64      `json:"free_bytes"`
	SuitableFreeBytes  uint64      `json:"suitable_free_bytes"`
	PresentBytes       uint64      `json:"present_bytes"`
	ManagedBytes       uint64      `json:"managed_bytes"`
	FragmentationIndex json.Number `json:"fragmentation_index"`
	UnusableFreeIndex  json.Number `json:"unusable_free_index"`
	Orders             []jsonOrder `json:"orders"`
}

type jsonOrder struct {
	Order              int         `json:"order"`
	BlockBytes         uint64      `json:"block_bytes"`
	FreeBlocks         uint64      `json:"free_blocks"`
	FreeBytes          uint64      `json:"free_bytes"`
	UnusableFreeIndex  json.Number `json:"unusable_free_index"`
	FragmentationIndex json.Number `json:"fragmentation_index"`
}

// WriteJSON prints the snapshot as one JSON document judged at the order.
func WriteJSON(w io.Writer, s *Snapshot, order int) error {
	v, _ := s.Worst(order)
	out := jsonReport{
		Order:             order,
		Verdict:           v,
		UnusableThreshold: json.Number(s.ThresholdText()),
		PageSizeBytes:     s.PageSize,
		ScoreOrder:        s.ScoreOrder,
		Nodes:             make([]jsonNode, 0, len(s.Nodes)),
		Warnings:          append([]string{}, s.Warnings...),
	}
	if s.Proactiveness >= 0 {
		p := s.Proactiveness
		out.CompactionProactiveness = &p
	}
	if low, high, on := s.Thresholds(); on {
		out.Thresholds = &jsonThres{Low: low, High: high}
	}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		jn := jsonNode{NUMANode: n.ID, Zones: make([]jsonZone, 0, len(n.Zones))}
		if n.HasScore {
			sc := n.Score
			jn.CompactionScore = &sc
		}
		for j := range n.Zones {
			z := &n.Zones[j]
			jz := jsonZone{
				Zone:               z.Name,
				Counted:            Gating(z.Name),
				Verdict:            s.Verdict(z, order),
				Explanation:        s.Explain(z, order),
				ScoreOrderVerdict:  s.Verdict(z, s.ScoreOrder),
				LargestFreeOrder:   z.LargestFreeOrder(),
				FreeBytes:          z.FreePages() * s.PageSize,
				SuitableFreeBytes:  z.SuitablePages(order) * s.PageSize,
				PresentBytes:       z.PresentPages * s.PageSize,
				ManagedBytes:       z.ManagedPages * s.PageSize,
				FragmentationIndex: indexNumber(z.FragIndex(order)),
				UnusableFreeIndex:  indexNumber(z.Unusable(order)),
				Orders:             make([]jsonOrder, len(z.Free)),
			}
			for k, cnt := range z.Free {
				jz.Orders[k] = jsonOrder{
					Order:              k,
					BlockBytes:         s.PageSize << k,
					FreeBlocks:         cnt,
					FreeBytes:          cnt << k * s.PageSize,
					UnusableFreeIndex:  indexNumber(z.Unusable(k)),
					FragmentationIndex: indexNumber(z.FragIndex(k)),
				}
			}
			jn.Zones = append(jn.Zones, jz)
		}
		out.Nodes = append(out.Nodes, jn)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // the explanations say "<" and ">="
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

// indexNumber writes an index in thousandths with the kernel's three
// decimals, exactly, rather than through a float.
func indexNumber(v int64) json.Number {
	return json.Number(thousandths(v))
}

// writeSummary prints the one-line verdict that heads the table.
func writeSummary(ew *errWriter, s *Snapshot, order int) {
	v, where := s.Worst(order)
	switch {
	case where == nil:
		ew.printf("%s allocations: no zone to judge (only DMA)\n", s.OrderName(order))
	case v == OK:
		ew.printf("%s allocations: OK in every zone (DMA not counted)\n", s.OrderName(order))
	default:
		ew.printf("worst zone for %s allocations: %s: node %s zone %s (DMA not counted)\n", s.OrderName(order), v, where.Node, where.Name)
	}
}
