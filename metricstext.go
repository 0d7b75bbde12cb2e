package main

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/memfrag/memfrag_exporter/internal/fastgzip"
	"github.com/memfrag/memfrag_exporter/internal/textenc"
)

// textHandler serves the metrics in the text format 0.0.4, which is what
// Prometheus and most clients negotiate, through textenc; every other
// request (protobuf, a name[] filter) goes to promhttp's handler. The
// response is the same as promhttp's: same bytes, headers and error
// counter. The in-flight limit is metricsHandler's, around the gzipping.
type textHandler struct {
	gatherer prometheus.TransactionalGatherer
	promhttp http.Handler
	errCnt   *prometheus.CounterVec
	errLog   promhttp.Logger
	bufs     sync.Pool
	last     atomic.Pointer[negotiated]
}

// negotiated is the format negotiated for an Accept header. A scraper sends
// the same header every scrape, and expfmt's negotiation of Prometheus's
// parses a list of five media types and splits the winner's parameters:
// 2.6-3.3 us a scrape (BenchmarkNegotiate), kept here for the last header
// seen.
type negotiated struct {
	accept string
	format expfmt.Format
	typ    expfmt.FormatType
}

// negotiate is expfmt.Negotiate(h) and its FormatType.
func (h *textHandler) negotiate(hdr http.Header) (expfmt.Format, expfmt.FormatType) {
	values := hdr.Values("Accept")
	if len(values) > 1 || len(values) == 1 && len(values[0]) > 512 { // not a scraper's: not kept
		f := expfmt.Negotiate(hdr)
		return f, f.FormatType()
	}
	accept := ""
	if len(values) == 1 {
		accept = values[0]
	}
	if n := h.last.Load(); n != nil && n.accept == accept {
		return n.format, n.typ
	}
	f := expfmt.Negotiate(hdr)
	h.last.Store(&negotiated{accept, f, f.FormatType()})
	return f, f.FormatType()
}

func newTextHandler(gatherer prometheus.TransactionalGatherer, errCnt *prometheus.CounterVec, errLog promhttp.Logger) *textHandler {
	// promhttp counts into the counter registered in its registry: this
	// one, served with the exporter's own families (see newGatherers).
	errReg := prometheus.NewRegistry()
	errReg.MustRegister(errCnt)
	return &textHandler{
		gatherer: gatherer,
		promhttp: promhttp.HandlerForTransactional(gatherer, promhttp.HandlerOpts{
			DisableCompression: true,
			ErrorHandling:      promhttp.ContinueOnError,
			ErrorLog:           errLog,
			Registry:           errReg,
		}),
		errCnt: errCnt,
		errLog: errLog,
	}
}

// newErrCounter is promhttp's error counter, its two causes created.
func newErrCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "promhttp_metric_handler_errors_total",
		Help: "Total number of internal errors encountered by the promhttp metric handler.",
	}, []string{"cause"})
	c.WithLabelValues("gathering")
	c.WithLabelValues("encoding")
	return c
}

func (h *textHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format, typ := h.negotiate(r.Header)
	if typ != expfmt.TypeTextPlain || r.URL != nil && r.URL.RawQuery != "" && r.URL.Query().Has("name[]") {
		h.promhttp.ServeHTTP(w, r)
		return
	}
	tb, _ := h.bufs.Get().(*textBuf)
	if tb == nil {
		tb = new(textBuf)
	}
	// Straight into the buffer fastgzip compresses, when it is there.
	direct, isDirect := w.(fastgzip.BodyBuffer)
	out := appender{tb.b[:0]}
	if isDirect {
		out.b = direct.Body()
	}
	var enc expfmt.Encoder // for the families textenc leaves to expfmt
	cache := &tb.enc
	other := func(b []byte, mf *dto.MetricFamily) []byte {
		var ok bool
		if out.b, ok = cache.Append(b, mf); ok {
			return out.b
		}
		if enc == nil {
			enc = expfmt.NewEncoder(&out, format)
		}
		if err := enc.Encode(mf); err != nil {
			h.errLog.Println("error encoding and sending metric family:", err)
			h.errCnt.WithLabelValues("encoding").Inc()
		}
		return out.b
	}
	var err error
	written := false
	if ta, ok := h.gatherer.(textAppender); ok {
		out.b, written, err = ta.AppendText(out.b, other)
	}
	empty := false
	if !written {
		var mfs []*dto.MetricFamily
		var done func()
		mfs, done, err = h.gatherer.Gather()
		defer done()
		empty = len(mfs) == 0
		// Gather's families may be built in storage the next scrape
		// reuses for other series (the exporter's slab): label pairs at
		// an address seen before are not the ones encoded then.
		cache = new(textenc.Encoder)
		for _, mf := range mfs {
			out.b = other(out.b, mf)
		}
	}
	if err != nil {
		h.errLog.Println("error gathering metrics:", err)
		h.errCnt.WithLabelValues("gathering").Inc()
		if empty {
			http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Add("Vary", "Accept")
	w.Header().Set("Content-Type", string(format))
	tb.enc.Next()
	if isDirect {
		direct.SetBody(out.b)
	} else {
		if _, err := w.Write(out.b); err != nil {
			h.errLog.Println("error encoding and sending metric family:", err)
			h.errCnt.WithLabelValues("encoding").Inc()
		}
		tb.b = out.b
	}
	if cap(tb.b) <= 4<<20 { // a rare huge response is not kept
		h.bufs.Put(tb)
	}
}

// textAppender is a gatherer that appends its families in the text format
// itself (collector's merged gatherer); ok false means it did not, and
// Gather is to be encoded instead.
type textAppender interface {
	AppendText(b []byte, other func([]byte, *dto.MetricFamily) []byte) (_ []byte, ok bool, err error)
}

// textBuf is a response's buffer and the encoder that fills it, kept for
// the next response: the encoder's cache of label text is what makes it
// cheap.
type textBuf struct {
	b   []byte
	enc textenc.Encoder
}

// appender is an io.Writer appending to b.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}
