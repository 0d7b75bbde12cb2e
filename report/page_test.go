package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/memfrag/memfrag_exporter/fragmentation"
)

var fixedNow = time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)

func newTestPage(t testing.TB, cfg Config, recent func() []Remediation) *Page {
	t.Helper()
	r, err := NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	p, err := NewPage(PageConfig{
		Landing: web.LandingConfig{
			Name:      "Memory fragmentation exporter",
			Version:   "test",
			Links:     []web.LandingLinks{{Address: "/metrics", Text: "Metrics"}},
			Profiling: "false",
		},
		Reader: r,
		Order:  4,
		Recent: recent,
		Now:    func() time.Time { return fixedNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func get(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

// elem is a parsed XML element: the report is written as well-formed XML
// (inside an HTML page) so that tests can check its structure exactly.
type elem struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []elem     `xml:",any"`
	Text     string     `xml:",chardata"`
}

func (e *elem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (e *elem) hasClass(c string) bool {
	for _, f := range strings.Fields(e.attr("class")) {
		if f == c {
			return true
		}
	}
	return false
}

// all returns the descendants (and e itself) that match.
func (e *elem) all(match func(*elem) bool) []*elem {
	var out []*elem
	if match(e) {
		out = append(out, e)
	}
	for i := range e.Children {
		out = append(out, e.Children[i].all(match)...)
	}
	return out
}

func tagClass(tag, class string) func(*elem) bool {
	return func(e *elem) bool { return e.XMLName.Local == tag && (class == "" || e.hasClass(class)) }
}

func (e *elem) text() string {
	var b strings.Builder
	b.WriteString(e.Text)
	for i := range e.Children {
		b.WriteString(e.Children[i].text())
	}
	return b.String()
}

func parseReport(t testing.TB, live []byte) *elem {
	t.Helper()
	var root elem
	if err := xml.Unmarshal(live, &root); err != nil {
		t.Fatalf("the report is not well-formed: %v\n%s", err, live)
	}
	return &root
}

// liveOf cuts the live report out of a served page.
func liveOf(t *testing.T, p *Page, body []byte) []byte {
	t.Helper()
	if !bytes.HasPrefix(body, p.head) || !bytes.HasSuffix(body, p.tail) {
		t.Fatal("the page does not keep exporter-toolkit's head and tail")
	}
	return body[len(p.head) : len(body)-len(p.tail)]
}

func TestPageCharts(t *testing.T) {
	cfg := fixtureConfig("two-nodes-failing")
	p := newTestPage(t, cfg, nil)
	rec := get(t, p, http.MethodGet, "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	body := rec.Body.Bytes()
	for _, want := range []string{"<h1>Memory fragmentation exporter</h1>", `href="/metrics"`, "Version: test", "#e6522c"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("page lacks exporter-toolkit's %q", want)
		}
	}
	if bytes.Contains(body, []byte(liveMarker)) || bytes.Contains(body, []byte("debug/pprof")) {
		t.Error("page shows the marker or pprof links")
	}
	if h := rec.Header(); h.Get("Content-Type") != "text/html; charset=utf-8" || h.Get("Cache-Control") != "no-store" || h.Get("Refresh") != "" {
		t.Errorf("headers %v", h)
	}
	root := parseReport(t, liveOf(t, p, body))

	// The expected figures come from buddyinfo through package
	// fragmentation, not from the page's own code.
	data, err := os.ReadFile(filepath.Join(cfg.ProcPath, "buddyinfo"))
	if err != nil {
		t.Fatal(err)
	}
	zones, err := fragmentation.ParseBuddyinfo(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	articles := root.all(tagClass("article", "zone"))
	if len(articles) != len(zones) {
		t.Fatalf("%d zone blocks, want %d", len(articles), len(zones))
	}
	wantVerdict := []string{"ok", "at_risk", "failing_fragmentation", "failing_low_memory"}
	for i, a := range articles {
		z := zones[i]
		if a.attr("data-numa-node") != z.Node || a.attr("data-zone") != z.Name {
			t.Errorf("zone block %d is node %s zone %s, want %s %s", i, a.attr("data-numa-node"), a.attr("data-zone"), z.Node, z.Name)
		}
		if got := a.attr("data-verdict"); got != wantVerdict[i] {
			t.Errorf("node %s zone %s: verdict %s, want %s", z.Node, z.Name, got, wantVerdict[i])
		}
		if got := a.attr("data-largest-free-order"); got != strconv.Itoa(z.LargestFreeOrder()) {
			t.Errorf("node %s zone %s: largest free order %s, want %d", z.Node, z.Name, got, z.LargestFreeOrder())
		}
		if v := a.all(tagClass("p", "verdict")); len(v) != 2 || v[0].attr("data-order") != "4" || v[1].attr("data-order") != "9" {
			t.Errorf("node %s zone %s: want verdict lines for orders 4 and 9", z.Node, z.Name)
		}

		free := a.all(tagClass("svg", "free-bytes"))
		unusable := a.all(tagClass("svg", "unusable-index"))
		if len(free) != 1 || len(unusable) != 1 {
			t.Fatalf("node %s zone %s: %d free-bytes and %d unusable charts, want one each", z.Node, z.Name, len(free), len(unusable))
		}
		for _, svg := range []*elem{free[0], unusable[0]} {
			checkAccessibleChart(t, svg)
		}
		bars := free[0].all(tagClass("rect", "bar"))
		if len(bars) != len(z.Free) {
			t.Fatalf("node %s zone %s: %d free-bytes bars, want %d", z.Node, z.Name, len(bars), len(z.Free))
		}
		for k, b := range bars {
			if b.attr("data-order") != strconv.Itoa(k) || b.attr("data-free-blocks") != strconv.FormatUint(z.Free[k], 10) ||
				b.attr("data-free-bytes") != strconv.FormatUint(z.Free[k]<<k*4096, 10) {
				t.Errorf("node %s zone %s order %d: bar %v, want %d blocks", z.Node, z.Name, k, b.Attrs, z.Free[k])
			}
			if want := map[bool]string{true: "small", false: "usable"}[k < 4]; !b.hasClass(want) {
				t.Errorf("order %d bar is not %q", k, want)
			}
			if h, _ := strconv.ParseFloat(b.attr("height"), 64); (z.Free[k] > 0) != (h > 0) {
				t.Errorf("node %s zone %s order %d: height %v for %d blocks", z.Node, z.Name, k, h, z.Free[k])
			}
		}
		ubars := unusable[0].all(tagClass("rect", "bar"))
		if len(ubars) != len(z.Free) {
			t.Fatalf("%d unusable bars, want %d", len(ubars), len(z.Free))
		}
		for k, b := range ubars {
			u := fragmentation.UnusableFreeIndex(z.Free, k)
			if b.attr("data-unusable-index") != thousandths(u) || b.hasClass("at-risk") != (u >= DefaultUnusableThreshold*1000) {
				t.Errorf("node %s zone %s order %d: unusable bar %v, want index %s", z.Node, z.Name, k, b.Attrs, thousandths(u))
			}
		}
		if len(unusable[0].all(tagClass("line", "threshold"))) != 1 {
			t.Error("unusable chart lacks the 0.9 line")
		}
	}

	scores := root.all(tagClass("svg", "compaction-score"))
	if len(scores) != 2 {
		t.Fatalf("%d score charts, want 2 (one per node)", len(scores))
	}
	for _, svg := range scores {
		checkAccessibleChart(t, svg)
		// Proactive compaction is off in this fixture: no thresholds.
		if svg.attr("data-score") != "99" || svg.attr("data-threshold-low") != "" {
			t.Errorf("score chart %v, want score 99 and no thresholds", svg.Attrs)
		}
	}
	mv := root.all(tagClass("span", "machine-verdict"))
	if len(mv) != 2 || mv[0].attr("data-verdict") != "failing_fragmentation" {
		t.Errorf("machine verdict lines %v", mv)
	}
	if len(root.all(func(e *elem) bool { return e.attr("id") == "remediations" })) != 0 {
		t.Error("remediation section shown while remediation is off")
	}
}

// checkAccessibleChart: a chart has an accessible name and description,
// labelled axes (or ticks) and a tooltip title on every bar.
func checkAccessibleChart(t *testing.T, svg *elem) {
	t.Helper()
	if svg.attr("role") != "img" {
		t.Errorf("chart %s without role=img", svg.attr("class"))
	}
	ids := map[string]bool{}
	for _, e := range svg.all(func(e *elem) bool { return e.attr("id") != "" }) {
		ids[e.attr("id")] = true
	}
	for _, id := range strings.Fields(svg.attr("aria-labelledby")) {
		if !ids[id] {
			t.Errorf("chart %s: aria-labelledby names missing id %q", svg.attr("class"), id)
		}
	}
	for _, b := range svg.all(tagClass("rect", "bar")) {
		if ts := b.all(tagClass("title", "")); len(ts) != 1 || ts[0].text() == "" {
			t.Errorf("chart %s: bar %v without a title", svg.attr("class"), b.Attrs)
		}
	}
	if len(svg.all(tagClass("text", "tick"))) == 0 {
		t.Errorf("chart %s without tick labels", svg.attr("class"))
	}
	if !svg.hasClass("compaction-score") && len(svg.all(tagClass("text", "axis-title"))) != 2 {
		t.Errorf("chart %s without two axis titles", svg.attr("class"))
	}
}

func TestPageScoreThresholds(t *testing.T) {
	p := newTestPage(t, fixtureConfig("seed-before"), nil)
	rec := get(t, p, http.MethodGet, "/")
	root := parseReport(t, liveOf(t, p, rec.Body.Bytes()))
	s := root.all(tagClass("svg", "compaction-score"))
	if len(s) != 1 || s[0].attr("data-score") != "98" || s[0].attr("data-threshold-low") != "80" || s[0].attr("data-threshold-high") != "90" {
		t.Fatalf("score chart %v, want score 98 against 80/90", s)
	}
	if n := len(s[0].all(tagClass("line", "threshold"))); n != 2 {
		t.Errorf("%d threshold lines, want 2", n)
	}
	if bar := s[0].all(tagClass("rect", "score-bar")); len(bar) != 1 || bar[0].attr("fill") != colourBad {
		t.Errorf("score above high should be drawn in %s: %v", colourBad, bar)
	}
}

func TestPageQuery(t *testing.T) {
	p := newTestPage(t, fixtureConfig("seed-before"), nil)
	tests := []struct {
		target    string
		refresh   string
		order     string
		hasNotice bool
	}{
		{"/?refresh=30", "30", "4", false},
		{"/?refresh=1", "", "4", false}, // too fast: ignored
		{"/?refresh=x", "", "4", false},
		{"/?order=9&refresh=60", "60", "9", false},
		{"/?order=0", "", "0", false},
		{"/?order=11", "", "4", true},
		{"/?order=-1", "", "4", true},
		{"/?order=%3Cb%3E", "", "4", true},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			rec := get(t, p, http.MethodGet, tt.target)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			if got := rec.Header().Get("Refresh"); got != tt.refresh {
				t.Errorf("Refresh header %q, want %q", got, tt.refresh)
			}
			root := parseReport(t, liveOf(t, p, rec.Body.Bytes()))
			if got := root.attr("data-order"); got != tt.order {
				t.Errorf("judged order %s, want %s", got, tt.order)
			}
			if got := len(root.all(tagClass("p", "notice"))) > 0; got != tt.hasNotice {
				t.Errorf("notice shown %v, want %v", got, tt.hasNotice)
			}
		})
	}
}

func TestPageRoutes(t *testing.T) {
	p := newTestPage(t, fixtureConfig("seed-before"), nil)
	if rec := get(t, p, http.MethodGet, "/other"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /other: %d, want 404 (as exporter-toolkit's page)", rec.Code)
	}
	if rec := get(t, p, http.MethodPost, "/"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", rec.Code)
	}
	rec := get(t, p, http.MethodHead, "/")
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD /: %d, %d body bytes, Content-Length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
}

func TestPageUnreadable(t *testing.T) {
	p := newTestPage(t, Config{ProcPath: t.TempDir(), SysPath: t.TempDir()}, nil)
	rec := get(t, p, http.MethodGet, "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: the links must still work", rec.Code)
	}
	root := parseReport(t, liveOf(t, p, rec.Body.Bytes()))
	if e := root.all(tagClass("p", "error")); len(e) != 1 || !strings.Contains(e[0].text(), "buddyinfo") {
		t.Errorf("no error naming buddyinfo: %v", e)
	}
}

func TestPageRemediations(t *testing.T) {
	var list []Remediation
	p := newTestPage(t, fixtureConfig("seed-before"), func() []Remediation { return list })
	root := parseReport(t, liveOf(t, p, get(t, p, http.MethodGet, "/").Body.Bytes()))
	sec := root.all(func(e *elem) bool { return e.attr("id") == "remediations" })
	if len(sec) != 1 || !strings.Contains(sec[0].text(), "None") {
		t.Fatalf("empty remediation section: %v", sec)
	}
	list = []Remediation{
		{Time: fixedNow, Alert: "MemoryFragmented", Action: "drop_caches_then_compact", Decision: "accepted", Result: "success",
			Measured: true, GainBytes: 512 << 20, HasScoreDelta: true, ScoreDelta: -40},
		{Time: fixedNow.Add(-time.Hour), Alert: "MemoryFragmented", Action: "compact", Node: "1", Zone: "Normal", Decision: "skipped", Reason: "cooldown <30m>"},
	}
	root = parseReport(t, liveOf(t, p, get(t, p, http.MethodGet, "/").Body.Bytes()))
	rows := root.all(tagClass("tr", ""))
	if len(rows) != 3 {
		t.Fatalf("%d table rows, want header + 2", len(rows))
	}
	for i, want := range [][]string{
		{"2026-11-28T08:00:00Z", "MemoryFragmented", "drop_caches_then_compact", "all nodes", "accepted", "success", "", "+512 MiB", "-40"},
		{"2026-11-28T07:00:00Z", "MemoryFragmented", "compact", "node 1 zone Normal", "skipped", "", "cooldown <30m>", "—", "—"},
	} {
		cells := rows[i+1].all(tagClass("td", ""))
		if len(cells) != len(want) {
			t.Fatalf("row %d has %d cells, want %d", i, len(cells), len(want))
		}
		for j, c := range cells {
			if c.text() != want[j] {
				t.Errorf("row %d cell %d: %q, want %q", i, j, c.text(), want[j])
			}
		}
	}
}

// TestRenderEscapes: zone names come from a kernel file (the parser checks
// them, but the page does not rely on it) and remediation fields from
// alerts; whatever they hold must stay text.
func TestRenderEscapes(t *testing.T) {
	zones := []fragmentation.Zone{{Node: "0", Name: `<script>alert("x&y")</script>`, Free: []uint64{1, 2, 3}}}
	s := &Snapshot{PageSize: 4096, ScoreOrder: 9, Proactiveness: -1}
	s.fill(zones, nil, errors.New("no zoneinfo"), nil)
	var buf bytes.Buffer
	RenderHTML(&buf, s, RenderOptions{Order: 2, Now: fixedNow, Notice: "<i>", ShowRemediations: true,
		Remediations: []Remediation{{Action: "<b>", Decision: "&", Reason: `"'`}}})
	if strings.Contains(buf.String(), "<script>") || strings.Contains(buf.String(), "<i>") || strings.Contains(buf.String(), "<b>&lt;") {
		t.Errorf("unescaped input in:\n%s", buf.String())
	}
	root := parseReport(t, buf.Bytes())
	if a := root.all(tagClass("article", "zone")); len(a) != 1 || a[0].attr("data-zone") != `<script>alert("x&y")</script>` {
		t.Errorf("zone name did not survive escaping: %v", a)
	}
}

// FuzzRenderHTML: any buddyinfo the parser accepts renders to a well-formed
// report with one zone block per line.
func FuzzRenderHTML(f *testing.F) {
	for _, name := range []string{"seed-before", "two-nodes-failing"} {
		b, err := os.ReadFile(filepath.Join("testdata", name, "proc", "buddyinfo"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 4)
	}
	f.Add([]byte("Node 0, zone Normal 0\nNode 1, zone Movable 0\n"), 0)
	f.Fuzz(func(t *testing.T, data []byte, order int) {
		zones, err := fragmentation.ParseBuddyinfo(data, nil)
		if err != nil {
			return
		}
		s := &Snapshot{PageSize: 4096, ScoreOrder: 9, Proactiveness: 20}
		s.fill(zones, nil, errors.New("no zoneinfo"), nil)
		if s.CheckOrder(order) != nil {
			order = 0
		}
		var buf bytes.Buffer
		RenderHTML(&buf, s, RenderOptions{Order: order, Now: fixedNow})
		root := parseReport(t, buf.Bytes())
		if n := len(root.all(tagClass("article", "zone"))); n != len(zones) {
			t.Errorf("%d zone blocks for %d zones", n, len(zones))
		}
		if err := WriteTable(io.Discard, s, order); err != nil {
			t.Error(err)
		}
	})
}

func benchSnapshot(b *testing.B, fixture string) *Snapshot {
	r, err := NewReader(fixtureConfig(fixture))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	s, err := r.Read()
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkRenderHTML: rendering the report of a one-node, three-zone
// machine (the seed's), without reading.
func BenchmarkRenderHTML(b *testing.B) {
	s := benchSnapshot(b, "seed-before")
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendHTML(buf[:0], s, RenderOptions{Order: 4, Now: fixedNow})
	}
	b.ReportMetric(float64(len(buf)), "bytes/page")
}

// BenchmarkPage: a whole request: read the fixture files, render, write.
func BenchmarkPage(b *testing.B) {
	p := newTestPage(b, fixtureConfig("two-nodes-failing"), nil)
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// TestPageThreshold: the page judges and draws at the reader's threshold
// (--remediate.unusable-threshold) and at its configured default order
// (--remediate.order), not at fixed 0.9 and 4.
func TestPageThreshold(t *testing.T) {
	cfg := fixtureConfig("seed-before")
	cfg.UnusableThreshold = 0.999 // the Normal zone reads 0.996 at order 4
	r, err := NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	newPage := func(order int) (*Page, error) {
		return NewPage(PageConfig{Landing: web.LandingConfig{Name: "t", Profiling: "false"}, Reader: r, Order: order, Now: func() time.Time { return fixedNow }})
	}
	p, err := newPage(4)
	if err != nil {
		t.Fatal(err)
	}
	root := parseReport(t, liveOf(t, p, get(t, p, http.MethodGet, "/").Body.Bytes()))
	verdicts := map[string]string{}
	for _, z := range root.all(tagClass("article", "zone")) {
		verdicts[z.attr("data-zone")] = z.attr("data-verdict")
	}
	if verdicts["Normal"] != "ok" {
		t.Errorf("Normal zone %q at threshold 0.999, want ok (verdicts %v)", verdicts["Normal"], verdicts)
	}
	lines := 0
	for _, c := range root.all(tagClass("svg", "unusable-index")) {
		for _, l := range c.all(tagClass("line", "threshold")) {
			lines++
			if v := l.attr("data-unusable-index"); v != "0.999" {
				t.Errorf("threshold line at %q, want 0.999", v)
			}
		}
	}
	if lines != len(verdicts) {
		t.Errorf("%d threshold lines for %d zones", lines, len(verdicts))
	}
	if h := root.all(tagClass("span", "at-risk-threshold")); len(h) != 1 || h[0].text() != "0.999" {
		t.Errorf("hint threshold %v, want 0.999", h)
	}
	for _, b := range root.all(tagClass("rect", "at-risk")) {
		if v := b.attr("data-unusable-index"); v < "0.999" {
			t.Errorf("bar %s drawn at risk below 0.999", v)
		}
	}

	p, err = newPage(2)
	if err != nil {
		t.Fatal(err)
	}
	if got := parseReport(t, liveOf(t, p, get(t, p, http.MethodGet, "/").Body.Bytes())).attr("data-order"); got != "2" {
		t.Errorf("default order %s, want the configured 2", got)
	}
	if _, err := newPage(fragmentation.MaxOrders); err == nil {
		t.Errorf("order %d accepted", fragmentation.MaxOrders)
	}
	// An order the package accepts but this kernel (11 orders) lacks:
	// judge its largest and say so.
	p, err = newPage(12)
	if err != nil {
		t.Fatal(err)
	}
	root = parseReport(t, liveOf(t, p, get(t, p, http.MethodGet, "/").Body.Bytes()))
	if got := root.attr("data-order"); got != "10" || len(root.all(tagClass("p", "notice"))) != 1 {
		t.Errorf("default order 12 on an 11-order kernel: judged %s, want 10 with a notice", got)
	}
}

func TestNewReaderThreshold(t *testing.T) {
	for _, th := range []float64{-0.5, 1.01, math.NaN()} {
		cfg := fixtureConfig("seed-before")
		cfg.UnusableThreshold = th
		if r, err := NewReader(cfg); err == nil {
			r.Close()
			t.Errorf("threshold %v accepted", th)
		}
	}
}

// TestPageDryRunBanner: the banner shows exactly when remediation is on in
// dry-run mode; with remediation off the page says nothing about it.
func TestPageDryRunBanner(t *testing.T) {
	none := func() []Remediation { return nil }
	for _, tc := range []struct {
		name   string
		recent func() []Remediation
		dryRun bool
		want   int
	}{
		{"dry run", none, true, 1},
		{"acting", none, false, 0},
		{"remediation off", nil, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(fixtureConfig("seed-before"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			p, err := NewPage(PageConfig{Landing: web.LandingConfig{Name: "t", Profiling: "false"}, Reader: r, Order: 4,
				Recent: tc.recent, DryRun: tc.dryRun, Now: func() time.Time { return fixedNow }})
			if err != nil {
				t.Fatal(err)
			}
			root := parseReport(t, liveOf(t, p, get(t, p, http.MethodGet, "/").Body.Bytes()))
			banners := root.all(func(e *elem) bool { return e.attr("class") == "dry-run" })
			if len(banners) != tc.want {
				t.Fatalf("%d dry-run banners, want %d", len(banners), tc.want)
			}
			if tc.want == 1 && !strings.Contains(banners[0].text(), "nothing is written") {
				t.Errorf("banner: %q", banners[0].text())
			}
		})
	}
}

// TestPageFreeChartSaysCounts: the numbers above the free-memory bars are
// block counts on a bytes axis, and each chart says so.
func TestPageFreeChartSaysCounts(t *testing.T) {
	p := newTestPage(t, fixtureConfig("seed-before"), nil)
	root := parseReport(t, liveOf(t, p, get(t, p, http.MethodGet, "/").Body.Bytes()))
	charts := root.all(func(e *elem) bool { return e.XMLName.Local == "svg" && strings.Contains(e.attr("class"), "free-bytes") })
	if len(charts) == 0 {
		t.Fatal("no free-bytes charts")
	}
	for _, c := range charts {
		keys := c.all(func(e *elem) bool { return e.attr("class") == "value-key" })
		if len(keys) != 1 || keys[0].text() != "numbers: free blocks" {
			t.Errorf("free-bytes chart without its value key: %v", keys)
		}
	}
}
