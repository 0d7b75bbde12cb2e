package report

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"time"
)

// RenderOptions are the per-request choices of the page.
type RenderOptions struct {
	Order   int       // the allocation order the verdict is about
	Now     time.Time // when the snapshot was read
	Refresh int       // auto-refresh period in seconds; 0 for none
	Notice  string    // a note to show above the report (a bad query)
	// ShowRemediations shows the remediation section with Remediations,
	// newest first (an empty list says "none yet").
	ShowRemediations bool
	Remediations     []Remediation
	// DryRun shows a banner: remediation decides and records but writes
	// nothing (--remediate.dry-run).
	DryRun bool
	// Fleet, when set, shows the fleet budget and its slots' holders.
	Fleet *FleetBudget
}

// Colours are the Okabe-Ito palette, which stays distinguishable with every
// common colour-vision deficiency; every colour also comes with a text label.
const (
	colourUsable = "#0072B2" // blue
	colourSmall  = "#E69F00" // orange
	colourBad    = "#D55E00" // vermillion
	colourGood   = "#009E73" // bluish green
)

// pageCSS is added to exporter-toolkit's stylesheet.
const pageCSS = `
#fragmentation{max-width:1100px}
#fragmentation .summary{font-size:1.15rem;margin:.5rem 0}
#fragmentation .meta,#fragmentation .hint{color:#444;font-size:.9rem}
.badge{display:inline-block;border-radius:.3rem;padding:.05rem .45rem;font-weight:600;color:#000;font-size:.9rem}
.v-ok{background:` + colourGood + `}
.v-at_risk{background:` + colourSmall + `}
.v-failing_fragmentation,.v-failing_low_memory{background:` + colourBad + `}
.node{border-top:2px solid #888;margin-top:1rem}
.zone{margin:.75rem 0 1.25rem 0}
.zone h4{margin:.4rem 0}
.zone p{margin:.2rem 0}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
svg.chart{font-size:11px;background:#fff}
svg.chart .title{font-size:13px;font-weight:600}
svg.chart .axis-title{font-size:11px;fill:#222}
svg.chart .tick{fill:#333}
svg.chart .focus{font-weight:700;fill:#000}
svg.chart .grid{stroke:#ddd}
svg.chart .axis{stroke:#333}
svg.chart .threshold{stroke:#000;stroke-dasharray:5 3;stroke-width:1.5}
svg.chart .value{font-size:9px;fill:#111}
svg.chart .value-key{font-size:10px;fill:#111;font-style:italic}
table.remediations{border-collapse:collapse}
table.remediations td,table.remediations th{border:1px solid #bbb;padding:.2rem .5rem;text-align:left}
table.remediations th,table.remediations td:first-child{white-space:nowrap;vertical-align:bottom}
.dry-run{border:2px solid ` + colourSmall + `;background:#fff4dc;padding:.5rem;width:fit-content;font-weight:600}
.error,.notice{border:2px solid ` + colourBad + `;padding:.5rem;width:fit-content}
`

// Chart geometry, in SVG user units (pixels at 100% zoom).
const (
	chartW       = 520
	chartH       = 250
	marginLeft   = 64
	marginRight  = 12
	marginTop    = 44
	marginBottom = 50
	plotW        = chartW - marginLeft - marginRight
	plotH        = chartH - marginTop - marginBottom
	scoreW       = 520
	scoreH       = 92
)

// RenderHTML writes the live report: a verdict line for the machine, then
// per NUMA node its compaction score and per zone the verdicts and charts,
// then the latest remediations. Every string from the kernel is escaped.
func RenderHTML(w io.Writer, s *Snapshot, o RenderOptions) error {
	_, err := w.Write(AppendHTML(nil, s, o))
	return err
}

// AppendHTML is RenderHTML appending to dst, for callers that reuse a
// buffer.
func AppendHTML(dst []byte, s *Snapshot, o RenderOptions) []byte {
	r := &renderer{b: dst, s: s, o: o, judge: []int{o.Order}}
	if s.ScoreOrder != o.Order && s.ScoreOrder < s.Orders {
		r.judge = append(r.judge, s.ScoreOrder)
	}
	r.page()
	return r.b
}

// renderer appends the report to b. The per-bar loops use the append
// primitives below rather than fmt: a page has hundreds of elements, and
// fmt's boxing of every number made rendering several times slower.
type renderer struct {
	b     []byte
	s     *Snapshot
	o     RenderOptions
	zone  int   // running number for element ids
	judge []int // the orders judged: the chosen one, then the huge-page order
}

func (r *renderer) printf(format string, args ...any) { r.b = fmt.Appendf(r.b, format, args...) }
func (r *renderer) str(s string)                      { r.b = append(r.b, s...) }
func (r *renderer) int(v int)                         { r.b = strconv.AppendInt(r.b, int64(v), 10) }
func (r *renderer) uint(v uint64)                     { r.b = strconv.AppendUint(r.b, v, 10) }
func (r *renderer) fix1(v float64)                    { r.b = strconv.AppendFloat(r.b, v, 'f', 1, 64) }
func (r *renderer) index(v int64)                     { r.b = appendThousandths(r.b, v) }

func (r *renderer) page() {
	s := r.s
	r.printf(`<section id="fragmentation" data-order="%d">`, r.o.Order)
	if r.o.Notice != "" {
		r.printf(`<p class="notice" role="status">%s</p>`, html.EscapeString(r.o.Notice))
	}
	if r.o.DryRun {
		r.str(`<p class="dry-run" role="status">Remediation runs in dry-run mode (--remediate.dry-run): alerts are decided, logged and counted, but nothing is written to the kernel.</p>`)
	}
	r.str(`<h2 class="summary">`)
	for i, ord := range r.judge {
		if i > 0 {
			r.str("<br/>")
		}
		v, where := s.Worst(ord)
		r.printf(`<span class="machine-verdict" data-order="%d" data-verdict="%s">Worst zone for %s allocations: %s`,
			ord, v.Key(), html.EscapeString(s.OrderName(ord)), badge(v))
		if where != nil && v != OK {
			r.printf(` node %s zone %s`, html.EscapeString(where.Node), html.EscapeString(where.Name))
		} else {
			r.str(` in every zone`)
		}
		r.str(`</span>`)
	}
	r.str(`</h2>`)
	r.printf(`<p class="meta">Read at %s from buddyinfo and zoneinfo; page size %s. `,
		r.o.Now.UTC().Format(time.RFC3339), formatBytes(s.PageSize))
	if r.o.Refresh > 0 {
		r.printf(`Refreshing every %d s (<a href="?order=%d">stop</a>).`, r.o.Refresh, r.o.Order)
	} else {
		r.printf(`<a href="?order=%d&amp;refresh=30">Refresh every 30 s</a>.`, r.o.Order)
	}
	r.str(` Other order: `)
	for _, k := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10} {
		if k >= s.Orders {
			break
		}
		if k == r.o.Order {
			r.printf(`<b>%d</b> `, k)
			continue
		}
		r.printf(`<a href="?order=%d%s">%d</a> `, k, r.refreshQuery(), k)
	}
	r.str(`</p>`)
	r.printf(`<p class="hint">Verdict for an order: <b>failing</b> when no free block of that order or larger is left; <b>for fragmentation</b> when the kernel's fragmentation index is above 0.5 (its default vm.extfrag_threshold, from which it prefers compaction), else <b>for low memory</b>; <b>at risk</b> when the unusable free index is at least <span class="at-risk-threshold">%s</span> (the alerting and remediation criterion, --remediate.unusable-threshold); else <b>OK</b>. The DMA zone is shown but not counted.</p>`, s.ThresholdText())
	for _, w := range s.Warnings {
		r.printf(`<p class="notice" role="status">%s</p>`, html.EscapeString(w))
	}
	for i := range s.Nodes {
		r.node(&s.Nodes[i])
	}
	if r.o.ShowRemediations {
		r.remediations()
	}
	if r.o.Fleet != nil {
		r.fleet(r.o.Fleet)
	}
	r.str(`</section>`)
}

func (r *renderer) refreshQuery() string {
	if r.o.Refresh > 0 {
		return "&amp;refresh=" + strconv.Itoa(r.o.Refresh)
	}
	return ""
}

func badge(v Verdict) string {
	sym := "✓"
	switch v {
	case AtRisk:
		sym = "⚠"
	case FailingFragmentation, FailingLowMemory:
		sym = "✗"
	}
	return `<span class="badge v-` + v.Key() + `">` + sym + " " + v.String() + `</span>`
}

func (r *renderer) node(n *Node) {
	id := html.EscapeString(n.ID)
	r.printf(`<section class="node" id="node-%s" data-numa-node="%s"><h3>NUMA node %s</h3>`, id, id, id)
	r.scoreChart(n)
	for j := range n.Zones {
		r.zoneBlock(&n.Zones[j])
	}
	r.str(`</section>`)
}

func (r *renderer) zoneBlock(z *Zone) {
	s := r.s
	r.zone++
	node, name := html.EscapeString(z.Node), html.EscapeString(z.Name)
	r.printf(`<article class="zone" id="z%d" data-numa-node="%s" data-zone="%s" data-verdict="%s" data-largest-free-order="%d">`,
		r.zone, node, name, s.Verdict(z, r.o.Order).Key(), z.LargestFreeOrder())
	r.printf(`<h4>Node %s, zone %s`, node, name)
	if !Gating(z.Name) {
		r.str(` <small>(not counted in the machine's verdict)</small>`)
	}
	r.str(`</h4>`)
	for _, ord := range r.judge {
		v := s.Verdict(z, ord)
		r.printf(`<p class="verdict" data-order="%d" data-verdict="%s">%s allocations: %s — %s</p>`,
			ord, v.Key(), html.EscapeString(s.OrderName(ord)), badge(v), html.EscapeString(s.Explain(z, ord)))
	}
	r.printf(`<p class="largest">Largest free block: <b>%s</b>. Free: %s`, s.LargestSentence(z), formatBytes(z.FreePages()*s.PageSize))
	if z.ManagedPages > 0 {
		r.printf(` of %s managed`, formatBytes(z.ManagedPages*s.PageSize))
	}
	r.str(`.</p><div class="charts">`)
	r.freeChart(z)
	r.unusableChart(z)
	r.str(`</div></article>`)
}

// chartStart opens an SVG chart with its accessible name and description.
func (r *renderer) chartStart(class, kind, title, desc string, z *Zone) {
	r.printf(`<svg class="chart %s" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="z%d-%s-t z%d-%s-d" data-numa-node="%s" data-zone="%s">`,
		class, chartW, chartH, chartW, chartH, r.zone, kind, r.zone, kind, html.EscapeString(z.Node), html.EscapeString(z.Name))
	r.printf(`<title id="z%d-%s-t">%s</title><desc id="z%d-%s-d">%s</desc>`, r.zone, kind, title, r.zone, kind, desc)
	r.printf(`<text class="title" x="%d" y="16">%s</text>`, marginLeft, title)
}

// xAxis draws the order axis: order numbers, block sizes under them, and
// the axis title. The judged orders are in bold.
func (r *renderer) xAxis(z *Zone) {
	n := len(z.Free)
	slot := float64(plotW) / float64(n)
	base := marginTop + plotH
	r.printf(`<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, marginLeft, base, marginLeft+plotW, base)
	for k := range n {
		x := float64(marginLeft) + slot*(float64(k)+0.5)
		cls := "tick"
		for _, o := range r.judge {
			if o == k {
				cls = "tick focus"
			}
		}
		r.str(`<text class="`)
		r.str(cls)
		r.str(`" x="`)
		r.fix1(x)
		r.str(`" y="`)
		r.int(base + 14)
		r.str(`" text-anchor="middle">`)
		r.int(k)
		r.str(`</text><text class="tick" x="`)
		r.fix1(x)
		r.str(`" y="`)
		r.int(base + 25)
		r.str(`" text-anchor="middle" font-size="8">`)
		r.b = appendShortBytes(r.b, r.s.PageSize<<k)
		r.str(`</text>`)
	}
	r.printf(`<text class="axis-title" x="%d" y="%d" text-anchor="middle">block order (block size)</text>`, marginLeft+plotW/2, chartH-6)
}

func (r *renderer) yTitle(t string) {
	r.printf(`<text class="axis-title" transform="translate(14 %d) rotate(-90)" text-anchor="middle">%s</text>`, marginTop+plotH/2, t)
}

// legend draws colour swatches with their meaning below the title.
func (r *renderer) legend(items ...[2]string) {
	x := marginLeft
	for _, it := range items {
		r.printf(`<rect x="%d" y="24" width="10" height="10" fill="%s"/><text x="%d" y="33">%s</text>`, x, it[0], x+14, it[1])
		x += 24 + 6*len(it[1])
	}
}

// freeChart: free bytes by order on a log scale, coloured by whether the
// blocks can serve an allocation of the judged order.
func (r *renderer) freeChart(z *Zone) {
	s := r.s
	ord := r.o.Order
	r.chartStart("free-bytes", "fb", "Free memory by block order",
		fmt.Sprintf("Bytes free in blocks of each order, log scale; blocks of order %d and above can serve an order-%d allocation. The number above a bar is its count of free blocks, not bytes.", ord, ord), z)
	r.legend([2]string{colourUsable, fmt.Sprintf("usable for order %d", ord)}, [2]string{colourSmall, fmt.Sprintf("too small for order %d", ord)})
	r.printf(`<text class="value-key" x="%d" y="33" text-anchor="end">numbers: free blocks</text>`, chartW-marginRight)

	// Log2 scale from one page up to the largest bucket, with ticks on
	// powers of two spaced evenly (every 16x for a typical zone).
	lo := math.Log2(float64(s.PageSize))
	var maxBytes uint64
	for k, n := range z.Free {
		maxBytes = max(maxBytes, n<<k*s.PageSize)
	}
	hi := math.Ceil(math.Log2(float64(max(maxBytes, s.PageSize))))
	step := 1.0
	for _, st := range []float64{1, 2, 3, 4, 5, 10} {
		step = st
		if (hi-lo)/st <= 5 {
			break
		}
	}
	hi = lo + step*math.Max(1, math.Ceil((hi-lo)/step))
	yOf := func(e float64) float64 { return float64(marginTop+plotH) - (e-lo)/(hi-lo)*plotH }
	for e := lo; e <= hi+1e-9; e += step {
		r.gridLine(yOf(e))
		r.b = appendBytes(r.b, uint64(1)<<uint(e))
		r.str(`</text>`)
	}
	r.yTitle("free bytes (log scale)")

	slot := float64(plotW) / float64(len(z.Free))
	barW := slot * 0.7
	for k, n := range z.Free {
		b := n << k * s.PageSize
		x := float64(marginLeft) + slot*float64(k) + (slot-barW)/2
		cls, colour := "usable", colourUsable
		if k < ord {
			cls, colour = "small", colourSmall
		}
		top := float64(marginTop + plotH)
		if b > 0 {
			top = math.Min(yOf(math.Log2(float64(b))), float64(marginTop+plotH)-2) // one page still shows
		}
		r.str(`<rect class="bar `)
		r.str(cls)
		r.str(`" data-order="`)
		r.int(k)
		r.str(`" data-free-blocks="`)
		r.uint(n)
		r.str(`" data-free-bytes="`)
		r.uint(b)
		r.bar(x, top, barW, colour)
		r.str(`order `)
		r.int(k)
		r.str(` (`)
		r.b = appendBytes(r.b, s.PageSize<<k)
		r.str(` blocks): `)
		r.uint(n)
		r.str(` free, `)
		r.b = appendBytes(r.b, b)
		r.str(`</title></rect>`)
		r.value(x+barW/2, top)
		r.uint(n)
		r.str(`</text>`)
	}
	r.xAxis(z)
	r.str(`</svg>`)
}

// unusableChart: the unusable free index by order, linear 0..1, against the
// at-risk line (0.9 by default).
func (r *renderer) unusableChart(z *Zone) {
	th := r.s.ThresholdText()
	r.chartStart("unusable-index", "ui", "Unusable free index by order",
		"Share of free memory in blocks too small for an allocation of each order (0 to 1); at or above the dashed line "+th+" the order is at risk.", z)
	r.legend([2]string{colourUsable, "below " + th}, [2]string{colourBad, th + " or more: at risk"})
	yOf := func(v float64) float64 { return float64(marginTop+plotH) - v*plotH }
	for _, v := range []string{"0.00", "0.25", "0.50", "0.75", "1.00"} {
		f, _ := strconv.ParseFloat(v, 64)
		r.gridLine(yOf(f))
		r.str(v)
		r.str(`</text>`)
	}
	r.yTitle("unusable free index")
	slot := float64(plotW) / float64(len(z.Free))
	barW := slot * 0.7
	for k := range z.Free {
		u := z.Unusable(k)
		x := float64(marginLeft) + slot*float64(k) + (slot-barW)/2
		cls, colour := "ok", colourUsable
		if u >= r.s.AtRiskUnusable {
			cls, colour = "at-risk", colourBad
		}
		top := yOf(float64(u) / 1000)
		r.str(`<rect class="bar `)
		r.str(cls)
		r.str(`" data-order="`)
		r.int(k)
		r.str(`" data-unusable-index="`)
		r.index(u)
		r.bar(x, top, barW, colour)
		r.str(`order `)
		r.int(k)
		r.str(`: unusable free index `)
		r.index(u)
		r.str(` (`)
		r.b = strconv.AppendInt(r.b, u/10, 10)
		r.b = append(r.b, '.', byte('0'+u%10))
		r.str(`% of free memory is in smaller blocks)</title></rect>`)
		r.value(x+barW/2, top)
		r.index(u)
		r.str(`</text>`)
	}
	y := yOf(float64(r.s.AtRiskUnusable) / 1000)
	r.printf(`<line class="threshold" data-unusable-index="%s" x1="%d" y1="%.1f" x2="%d" y2="%.1f"><title>at risk from %s</title></line>`,
		thousandths(r.s.AtRiskUnusable), marginLeft, y, marginLeft+plotW, y, th)
	r.xAxis(z)
	r.str(`</svg>`)
}

// scoreChart: the node's proactive-compaction score on 0..100 with the
// kernel's low and high thresholds.
func (r *renderer) scoreChart(n *Node) {
	s := r.s
	id := html.EscapeString(n.ID)
	sentence := html.EscapeString(s.ScoreSentence(n))
	low, high, on := s.Thresholds()
	r.printf(`<svg class="chart compaction-score" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="score-%s-t score-%s-d" data-numa-node="%s"`,
		scoreW, scoreH, scoreW, scoreH, id, id, id)
	if n.HasScore {
		r.printf(` data-score="%d"`, n.Score)
	}
	if on {
		r.printf(` data-threshold-low="%d" data-threshold-high="%d"`, low, high)
	}
	r.printf(`><title id="score-%s-t">Compaction score of node %s</title><desc id="score-%s-d">%s</desc>`, id, id, id, sentence)
	r.printf(`<text class="title" x="%d" y="16">Compaction score (order %d), 0–100</text>`, marginLeft, s.ScoreOrder)
	const x0, barY, barH = marginLeft, 38, 18
	const w = scoreW - marginLeft - marginRight
	xOf := func(v uint64) float64 { return float64(x0) + float64(min(v, 100))/100*w }
	r.printf(`<rect x="%d" y="%d" width="%d" height="%d" fill="#eee" stroke="#999"/>`, x0, barY, w, barH)
	if n.HasScore {
		colour := colourUsable
		switch {
		case on && n.Score > high:
			colour = colourBad
		case on && n.Score > low:
			colour = colourSmall
		}
		r.printf(`<rect class="score-bar" x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`, x0, barY, xOf(n.Score)-x0, barH, colour, sentence)
		r.printf(`<text class="value" font-size="12" x="%d" y="%d" text-anchor="end">%d</text>`, x0-6, barY+14, n.Score)
	} else {
		r.printf(`<text x="%d" y="%d">unknown</text>`, x0+6, barY+14)
	}
	if on {
		for _, t := range []struct {
			name string
			v    uint64
		}{{"low", low}, {"high", high}} {
			x := xOf(t.v)
			r.printf(`<line class="threshold" x1="%.1f" y1="%d" x2="%.1f" y2="%d"><title>%s threshold %d</title></line>`, x, barY-8, x, barY+barH+4, t.name, t.v)
			anchor := "end"
			if t.name == "high" {
				anchor = "start"
			}
			r.printf(`<text class="tick" x="%.1f" y="%d" text-anchor="%s">%s %d</text>`, x, barY-10, anchor, t.name, t.v)
		}
	}
	for _, v := range []uint64{0, 25, 50, 75, 100} {
		r.printf(`<text class="tick" x="%.1f" y="%d" text-anchor="middle">%d</text>`, xOf(v), barY+barH+14, v)
	}
	r.printf(`<text class="axis-title" x="%d" y="%d">score: share of free memory unusable at order %d, weighted by zone size</text>`, x0, scoreH-4, s.ScoreOrder)
	r.str(`</svg>`)
	r.printf(`<p class="score" data-numa-node="%s">Node %s: %s.</p>`, id, id, sentence)
}

func (r *renderer) remediations() {
	r.str(`<section id="remediations"><h3>Last remediations</h3>`)
	if len(r.o.Remediations) == 0 {
		r.str(`<p>None since the exporter started.</p></section>`)
		return
	}
	r.str(`<table class="remediations"><thead><tr><th>time</th><th>alert</th><th>action</th><th>where</th><th>decision</th><th>result</th><th>reason</th><th title="change of the free bytes in blocks of the check order or larger">gain ≥ order</th><th title="change of the compaction score; negative is better">score Δ</th></tr></thead><tbody>`)
	for _, m := range r.o.Remediations {
		where := "node " + m.Node
		if m.Node == "" {
			where = "all nodes"
		}
		if m.Zone != "" {
			where += " zone " + m.Zone
		}
		gain, delta := "—", "—"
		if m.Measured {
			gain = signedBytes(m.GainBytes)
		}
		if m.HasScoreDelta {
			delta = fmt.Sprintf("%+d", m.ScoreDelta)
		}
		r.printf(`<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>`,
			m.Time.UTC().Format(time.RFC3339), html.EscapeString(m.Alert), html.EscapeString(m.Action), html.EscapeString(where),
			html.EscapeString(m.Decision), html.EscapeString(m.Result), html.EscapeString(m.Reason), gain, delta)
	}
	r.str(`</tbody></table></section>`)
}

// bar closes a bar's data attributes with its geometry and opens its
// tooltip title.
func (r *renderer) bar(x, top, width float64, colour string) {
	r.str(`" x="`)
	r.fix1(x)
	r.str(`" y="`)
	r.fix1(top)
	r.str(`" width="`)
	r.fix1(width)
	r.str(`" height="`)
	r.fix1(float64(marginTop+plotH) - top)
	r.str(`" fill="`)
	r.str(colour)
	r.str(`"><title>`)
}

// gridLine draws a horizontal grid line across the plot at y and opens its
// tick label on the left.
func (r *renderer) gridLine(y float64) {
	r.str(`<line class="grid" x1="`)
	r.int(marginLeft)
	r.str(`" y1="`)
	r.fix1(y)
	r.str(`" x2="`)
	r.int(marginLeft + plotW)
	r.str(`" y2="`)
	r.fix1(y)
	r.str(`"/><text class="tick" x="`)
	r.int(marginLeft - 4)
	r.str(`" y="`)
	r.fix1(y + 4)
	r.str(`" text-anchor="end">`)
}

// value opens a value label centred above a bar.
func (r *renderer) value(x, top float64) {
	r.str(`<text class="value" x="`)
	r.fix1(x)
	r.str(`" y="`)
	r.fix1(top - 3)
	r.str(`" text-anchor="middle">`)
}

func signedBytes(b int64) string {
	if b < 0 {
		return "−" + formatBytes(uint64(-b))
	}
	return "+" + formatBytes(uint64(b))
}

// appendShortBytes prints a block size compactly for an axis: 4K, 2M.
// Block sizes are powers of two, so the divisions are exact.
func appendShortBytes(dst []byte, b uint64) []byte {
	const units = "KMGTPE"
	u := -1
	for b >= 1024 && u < len(units)-1 {
		b /= 1024
		u++
	}
	dst = strconv.AppendUint(dst, b, 10)
	if u >= 0 {
		dst = append(dst, units[u])
	}
	return dst
}
