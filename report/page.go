package report

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/memfrag/memfrag_exporter/fragmentation"
)

// Remediation is one decision of the remediation receiver as the page shows
// it. The receiver's own type stays in its package; main adapts it.
type Remediation struct {
	Time     time.Time
	Alert    string // alert name
	Action   string // drop_caches, compact, drop_caches_then_compact
	Node     string // NUMA node the alert named; empty for all
	Zone     string // zone the alert named; empty for any
	Decision string // accepted or skipped
	Result   string // for accepted: running, success, error or dry_run
	Reason   string // why it was skipped, or the error
	// Measured says GainBytes holds a before/after measure: the change of
	// free bytes in blocks of the check order or larger.
	Measured  bool
	GainBytes int64
	// HasScoreDelta says ScoreDelta holds the change of the compaction
	// score (negative is better).
	HasScoreDelta bool
	ScoreDelta    int64
}

// PageConfig configures the landing page.
type PageConfig struct {
	// Landing is exporter-toolkit's landing page: its name, description,
	// version and links frame the live report, so the page keeps the look
	// and links of every other Prometheus exporter. ExtraHTML and ExtraCSS
	// are added to, not replaced.
	Landing web.LandingConfig
	// Reader reads the machine; its Config.UnusableThreshold is the
	// page's at-risk threshold.
	Reader *Reader
	// Order is the allocation order judged unless the request says
	// ?order=N. main passes --remediate.order (default 4), the order of the
	// alert rules and the remediation receiver's re-check.
	Order int
	// Recent returns the latest remediation decisions, newest first; nil
	// when remediation is off, which hides the section.
	Recent func() []Remediation
	// DryRun says remediation runs with --remediate.dry-run; the page
	// shows a banner while the remediation section shows.
	DryRun bool
	// Fleet returns the fleet budget's slots; nil when the budget is off.
	Fleet func() *FleetBudget
	// Now stamps the page; nil means time.Now.
	Now func() time.Time
}

// Page is the live landing page: exporter-toolkit's page with the
// fragmentation report rendered into it on every request.
type Page struct {
	cfg         PageConfig
	routePrefix string
	head, tail  []byte
	bufs        sync.Pool
}

// liveMarker is where the report goes in the toolkit's page.
const liveMarker = "<!--memfrag:live-report-->"

// NewPage renders exporter-toolkit's landing page once with a marker where
// the live report goes, and keeps the parts around it.
func NewPage(cfg PageConfig) (*Page, error) {
	if cfg.Reader == nil {
		return nil, errors.New("landing page: no reader")
	}
	if cfg.Order < 0 || cfg.Order >= fragmentation.MaxOrders {
		return nil, fmt.Errorf("landing page: order %d is not in 0..%d", cfg.Order, fragmentation.MaxOrders-1)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	lc := cfg.Landing
	lc.ExtraHTML += liveMarker
	lc.ExtraCSS += pageCSS
	lc.Links = append([]web.LandingLinks(nil), lc.Links...) // NewLandingPage edits them
	landing, err := web.NewLandingPage(lc)
	if err != nil {
		return nil, fmt.Errorf("landing page: %w", err)
	}
	prefix := lc.RoutePrefix
	if prefix == "" {
		prefix = "/"
	} else if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	// The toolkit keeps its bytes to itself; ask it for them as a client would.
	rec := httptest.NewRecorder()
	landing.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, prefix, nil))
	body := rec.Body.Bytes()
	head, tail, ok := bytes.Cut(body, []byte(liveMarker))
	if !ok || bytes.Contains(tail, []byte(liveMarker)) {
		return nil, errors.New("landing page: exporter-toolkit's page does not hold the report marker exactly once")
	}
	return &Page{cfg: cfg, routePrefix: prefix, head: head, tail: tail}, nil
}

// Refresh bounds for ?refresh=N, in seconds: faster than every 5 s is load
// without information (the kernel's picture changes slowly), slower than a
// day is not a refresh.
const (
	minRefresh = 5
	maxRefresh = 86400
)

func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != p.routePrefix {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	opts := RenderOptions{Order: p.cfg.Order, Now: p.cfg.Now()}
	if v := q.Get("refresh"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= minRefresh && n <= maxRefresh {
			opts.Refresh = n
		}
	}
	orderParam, hasOrder := q.Get("order"), q.Has("order")

	bp, _ := p.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := append((*bp)[:0], p.head...)
	s, err := p.cfg.Reader.Read()
	if err == nil && !hasOrder {
		if cerr := s.CheckOrder(opts.Order); cerr != nil {
			// A default order past this kernel's (a --remediate.order meant
			// for other machines): judge the largest the kernel has.
			opts.Notice = fmt.Sprintf("default order %d ignored: %v; showing order %d", opts.Order, cerr, s.Orders-1)
			opts.Order = s.Orders - 1
		}
	}
	if err == nil && hasOrder {
		n, perr := strconv.Atoi(orderParam)
		if perr == nil {
			perr = s.CheckOrder(n)
		}
		if perr != nil {
			opts.Notice = fmt.Sprintf("?order=%s ignored: want a number in 0..%d", orderParam, s.Orders-1)
		} else {
			opts.Order = n
		}
	}
	if err != nil {
		// The rest of the page (links to /metrics) still works; say what
		// is missing instead of failing the whole page.
		b = fmt.Appendf(b, `<section id="fragmentation"><p class="error" role="alert">Cannot read the machine's free memory: %s</p></section>`, html.EscapeString(err.Error()))
	} else {
		if p.cfg.Recent != nil {
			opts.Remediations, opts.ShowRemediations = p.cfg.Recent(), true
			opts.DryRun = p.cfg.DryRun
		}
		if p.cfg.Fleet != nil {
			opts.Fleet = p.cfg.Fleet()
		}
		b = AppendHTML(b, s, opts)
	}
	b = append(b, p.tail...)
	defer func() {
		if cap(b) <= 1<<20 { // don't keep a freak page's buffer forever
			*bp = b
			p.bufs.Put(bp)
		}
	}()

	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store") // live figures; never show a stale copy
	if opts.Refresh > 0 {
		// The toolkit's template has no slot in <head> for a meta refresh;
		// the header is its equivalent in every browser (WHATWG HTML
		// "Refresh" header).
		h.Set("Refresh", strconv.Itoa(opts.Refresh))
	}
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}
