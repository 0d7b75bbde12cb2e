package main

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/memfrag/memfrag_exporter/internal/fastgzip"
)

// fixedRegistry holds families of every type with fixed values, so two
// handlers serving it must give the same bytes.
func fixedRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "memfrag_test_bytes", Help: "Test \"gauge\"\nwith \\ escapes."}, []string{"numa_node", "zone"})
	g.WithLabelValues("0", "Normal").Set(1e6)
	g.WithLabelValues("1", "DMA32").Set(0.1)
	g.WithLabelValues("1", "we\"ird\\\n").Set(-3)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "memfrag_test_total", Help: "Test counter."})
	c.Add(42)
	s := prometheus.MustNewConstSummary(prometheus.NewDesc("memfrag_test_seconds", "Test summary.", nil, nil), 9, 1.5, map[float64]float64{0.5: 0.1, 0.99: 0.9})
	h := prometheus.MustNewConstHistogram(prometheus.NewDesc("memfrag_test_hist_seconds", "Test histogram.", []string{"a"}, nil), 5, 2.5, map[float64]uint64{0.1: 1, 1: 4}, "x")
	u := prometheus.MustNewConstMetric(prometheus.NewDesc("memfrag_test_untyped", "Test untyped.", nil, nil), prometheus.UntypedValue, 7)
	reg.MustRegister(g, c, constCollector{s, h, u})
	return reg
}

type constCollector []prometheus.Metric

func (c constCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c {
		ch <- m.Desc()
	}
}

func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c {
		ch <- m
	}
}

func serve(t *testing.T, h http.Handler, url, accept string) (int, http.Header, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Result().Header, string(body)
}

// serveGzip is serve through fastgzip, as the exporter serves /metrics,
// with the body decompressed: the text handler then builds its body in
// fastgzip's buffer.
func serveGzip(t *testing.T, h http.Handler, url, accept string) (int, http.Header, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	fastgzip.Handler(h).ServeHTTP(rec, req)
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("%s %q: not gzipped", url, accept)
	}
	zr, err := gzip.NewReader(rec.Result().Body)
	if err != nil {
		t.Fatalf("%s %q: %v", url, accept, err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s %q: %v", url, accept, err)
	}
	return rec.Code, rec.Result().Header, string(body)
}

// Every format a client may negotiate gets the body and headers promhttp
// gives it: text 0.0.4 through textenc (the histogram through expfmt),
// OpenMetrics (not enabled, so text), protobuf, and a name[] filter.
func TestTextHandlerMatchesPromhttp(t *testing.T) {
	reg := fixedRegistry(t)
	ours := newTextHandler(prometheus.ToTransactionalGatherer(reg), newErrCounter(), stdlog.New(io.Discard, "", 0))
	ref := promhttp.HandlerFor(reg, promhttp.HandlerOpts{DisableCompression: true, ErrorHandling: promhttp.ContinueOnError})
	for _, tc := range []struct{ url, accept string }{
		{"/metrics", ""},
		{"/metrics", "text/plain;version=0.0.4"},
		{"/metrics", "*/*"},
		{"/metrics", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}, // Prometheus 2.42's
		{"/metrics", strings.Repeat("x/y;q=0.1,", 60) + "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"},         // too long to be kept
		{"/metrics", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"},
		{"/metrics", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"},
		{"/metrics?name[]=memfrag_test_total", ""},
	} {
		wantCode, wantHdr, want := serve(t, ref, tc.url, tc.accept)
		for i := 0; i < 3; i++ { // plain, then gzipped twice (reused buffers)
			get := serve
			if i > 0 {
				get = serveGzip
			}
			code, hdr, body := get(t, ours, tc.url, tc.accept)
			if code != wantCode || body != want {
				t.Errorf("%s %q (gzip %v): %d\n%q\npromhttp %d\n%q", tc.url, tc.accept, i > 0, code, body, wantCode, want)
			}
			for _, k := range []string{"Content-Type", "Vary"} {
				if !strings.Contains(strings.Join(hdr.Values(k), ", "), wantHdr.Get(k)) {
					t.Errorf("%s %q (gzip %v): %s %q, promhttp %q", tc.url, tc.accept, i > 0, k, hdr.Get(k), wantHdr.Get(k))
				}
			}
		}
		if len(want) < 40 {
			t.Errorf("%s %q: body %q is too short to compare", tc.url, tc.accept, want)
		}
	}
}

// Gathering errors are counted in the one promhttp_metric_handler_errors_total
// the exporter serves, whichever path served the request.
func TestTextHandlerCountsErrorsOnce(t *testing.T) {
	reg := fixedRegistry(t)
	failing := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, _ := reg.Gather()
		return mfs, errors.New("a collector failed")
	})
	errCnt := newErrCounter()
	h := newTextHandler(prometheus.ToTransactionalGatherer(failing), errCnt, stdlog.New(io.Discard, "", 0))
	serve(t, h, "/metrics", "")
	serve(t, h, "/metrics", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	if got := testutil.ToFloat64(errCnt.WithLabelValues("gathering")); got != 2 {
		t.Errorf("gathering errors counted: %v, want 2 (text and protobuf)", got)
	}
}

// A gathering error with nothing gathered is a 500, as promhttp gives,
// counted once.
func TestTextHandlerEmptyGatherIs500(t *testing.T) {
	failing := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New("nothing readable") })
	errCnt := newErrCounter()
	h := newTextHandler(prometheus.ToTransactionalGatherer(failing), errCnt, stdlog.New(io.Discard, "", 0))
	ref := promhttp.HandlerFor(failing, promhttp.HandlerOpts{DisableCompression: true, ErrorHandling: promhttp.ContinueOnError})
	wantCode, _, want := serve(t, ref, "/metrics", "")
	for i, get := range []func(*testing.T, http.Handler, string, string) (int, http.Header, string){serve, serveGzip} {
		code, _, body := get(t, h, "/metrics", "")
		if code != wantCode || body != want {
			t.Errorf("gzip %v: %d %q, promhttp %d %q", i > 0, code, body, wantCode, want)
		}
		if got := testutil.ToFloat64(errCnt.WithLabelValues("gathering")); got != float64(i+1) {
			t.Errorf("gzip %v: gathering errors counted: %v, want %d", i > 0, got, i+1)
		}
	}
}

// reusingGatherer builds each scrape's one family in the same storage, with
// another label value each time, as the exporter's slab may.
type reusingGatherer struct {
	n     int
	value string
	pair  dto.LabelPair
	pairs [1]*dto.LabelPair
	v     float64
}

func (g *reusingGatherer) Gather() ([]*dto.MetricFamily, func(), error) {
	g.n++
	name, help, label := "memfrag_test_bytes", "Test.", "zone"
	g.value = fmt.Sprint("Zone", g.n)
	g.pair = dto.LabelPair{Name: &label, Value: &g.value}
	g.pairs[0] = &g.pair
	g.v = float64(g.n)
	mf := &dto.MetricFamily{Name: &name, Help: &help, Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Label: g.pairs[:], Gauge: &dto.Gauge{Value: &g.v}}}}
	return []*dto.MetricFamily{mf}, func() {}, nil
}

// Families from Gather are written with their labels of this scrape, not
// the text cached for the same label storage in the scrape before.
func TestTextHandlerGatherStorageReused(t *testing.T) {
	h := newTextHandler(&reusingGatherer{}, newErrCounter(), stdlog.New(io.Discard, "", 0))
	for scrape := 1; scrape <= 4; scrape++ {
		get := serve
		if scrape%2 == 0 {
			get = serveGzip
		}
		_, _, body := get(t, h, "/metrics", "")
		if want := fmt.Sprintf("memfrag_test_bytes{zone=\"Zone%d\"} %d\n", scrape, scrape); !strings.Contains(body, want) {
			t.Fatalf("scrape %d: %q, want the line %q", scrape, body, want)
		}
	}
}

// BenchmarkNegotiate compares expfmt's negotiation of Prometheus's Accept
// header with the handler's, which keeps the last header's result.
func BenchmarkNegotiate(b *testing.B) {
	hdr := http.Header{"Accept": {"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}}
	b.Run("expfmt", func(b *testing.B) {
		for b.Loop() {
			_ = expfmt.Negotiate(hdr).FormatType()
		}
	})
	b.Run("handler", func(b *testing.B) {
		h := newTextHandler(prometheus.ToTransactionalGatherer(prometheus.NewRegistry()), newErrCounter(), stdlog.New(io.Discard, "", 0))
		for b.Loop() {
			_, _ = h.negotiate(hdr)
		}
	})
}
