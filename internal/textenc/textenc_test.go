package textenc

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// expfmtText is what promhttp serves for mf in the text format.
func expfmtText(t testing.TB, mf *dto.MetricFamily) string {
	t.Helper()
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain)+"; escaping=underscores")
	if err := enc.Encode(mf); err != nil {
		t.Fatalf("expfmt: %v", err)
	}
	return buf.String()
}

// encode is mf through a new Encoder and, after a Next, through the same
// one with every series' labels cached: both must be the same.
func encode(t testing.TB, mf *dto.MetricFamily) (string, bool) {
	t.Helper()
	var e Encoder
	cold, ok := e.Append([]byte("before\n"), mf)
	if !strings.HasPrefix(string(cold), "before\n") {
		t.Fatalf("Append changed what b held: %q", cold)
	}
	e.Next()
	warm, ok2 := e.Append(nil, mf)
	if ok != ok2 || string(cold[len("before\n"):]) != string(warm) {
		t.Fatalf("%s: a second Append gave %v %q, the first %v %q", mf.GetName(), ok2, warm, ok, cold)
	}
	if !ok && len(cold) != len("before\n") {
		t.Fatalf("%s not handled, yet appended %q", mf.GetName(), cold)
	}
	return string(warm), ok
}

func check(t *testing.T, mf *dto.MetricFamily) {
	t.Helper()
	got, ok := encode(t, mf)
	if !ok {
		t.Fatalf("%s not handled", mf.GetName())
	}
	if want := expfmtText(t, mf); got != want {
		t.Errorf("%s:\nours\n%s\nexpfmt\n%s", mf.GetName(), got, want)
	}
	// expfmt's parser reads the same family back.
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(got))
	if err != nil {
		t.Fatalf("expfmt cannot parse ours: %v\n%s", err, got)
	}
	if len(fams) != 1 || len(fams[mf.GetName()].Metric) != len(mf.Metric) {
		t.Errorf("parsed %v", fams)
	}
}

func family(name string, typ dto.MetricType, help *string, metrics ...*dto.Metric) *dto.MetricFamily {
	return &dto.MetricFamily{Name: &name, Help: help, Type: &typ, Metric: metrics}
}

func gauge(v float64, labels ...string) *dto.Metric {
	m := &dto.Metric{Gauge: &dto.Gauge{Value: &v}}
	for i := 0; i+1 < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	return m
}

func TestMatchesExpfmt(t *testing.T) {
	help := proto.String("Help with a \\ backslash,\na newline and \"quotes\".")
	counter := func(v float64) *dto.Metric { return &dto.Metric{Counter: &dto.Counter{Value: &v}} }
	untyped := &dto.Metric{Untyped: &dto.Untyped{Value: proto.Float64(-2.5)}, TimestampMs: proto.Int64(1700000000123)}
	summary := &dto.Metric{
		Label: []*dto.LabelPair{{Name: proto.String("a"), Value: proto.String("x")}},
		Summary: &dto.Summary{SampleCount: proto.Uint64(7), SampleSum: proto.Float64(0.125), Quantile: []*dto.Quantile{
			{Quantile: proto.Float64(0), Value: proto.Float64(1e-06)}, {Quantile: proto.Float64(0.5), Value: proto.Float64(math.NaN())},
			{Quantile: proto.Float64(1), Value: proto.Float64(3.5e-05)}}},
	}
	for _, mf := range []*dto.MetricFamily{
		family("g", dto.MetricType_GAUGE, nil, gauge(0), gauge(1), gauge(-1), gauge(math.Inf(1)), gauge(math.Inf(-1)), gauge(math.NaN())),
		family("memfrag_zone_free_bytes", dto.MetricType_GAUGE, proto.String("Free."),
			gauge(4096, "numa_node", "0", "zone", "DMA32"), gauge(1e6, "numa_node", "10", "zone", "Normal"),
			gauge(123456789012345678, "numa_node", "1", "zone", "Normal"), gauge(0.1+0.2, "v", "quote \" back \\ nl \n end")),
		family("c_total", dto.MetricType_COUNTER, help, counter(3), counter(1.5e-300), counter(math.MaxFloat64)),
		family("ns:u", dto.MetricType_UNTYPED, proto.String(""), untyped),
		family("s_seconds", dto.MetricType_SUMMARY, help, summary),
	} {
		check(t, mf)
	}
}

// The families a real registry gathers: the Go and process collectors and a
// labelled gauge vector.
func TestMatchesExpfmtOnRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	gv := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "x_bytes", Help: "X."}, []string{"numa_node", "zone"})
	gv.WithLabelValues("0", "Normal").Set(12345678)
	gv.WithLabelValues("1", "DMA").Set(0.5)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), gv)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if _, ok := encode(t, mf); ok {
			check(t, mf)
			n++
		}
	}
	if n < 20 {
		t.Errorf("only %d of %d families handled", n, len(mfs))
	}
}

func TestNotHandled(t *testing.T) {
	h := &dto.Metric{Histogram: &dto.Histogram{SampleCount: proto.Uint64(1)}}
	for _, mf := range []*dto.MetricFamily{
		family("h", dto.MetricType_HISTOGRAM, nil, h),
		family("empty", dto.MetricType_GAUGE, nil),
		family("dotted.name", dto.MetricType_GAUGE, nil, gauge(1)),
		family("g", dto.MetricType_GAUGE, nil, gauge(1, "la:bel", "v")),
		family("g", dto.MetricType_GAUGE, nil, &dto.Metric{Counter: &dto.Counter{Value: proto.Float64(1)}}),
		family("s", dto.MetricType_SUMMARY, nil, &dto.Metric{Label: gauge(0, "quantile", "x").Label, Summary: &dto.Summary{}}),
	} {
		if _, ok := encode(t, mf); ok {
			t.Errorf("%s (%v) handled", mf.GetName(), mf.GetType())
		}
	}
}

// Any name, label value and value: ours is expfmt's text, or not handled.
func FuzzMatchesExpfmt(f *testing.F) {
	f.Add("memfrag_x", "zone", "Normal", 1.5, "help")
	f.Add("a:b", "l", "\"\\\n", math.Inf(-1), "\\n")
	f.Add("9x", "é", "\xff", 0.0, "")
	f.Fuzz(func(t *testing.T, name, label, value string, v float64, help string) {
		mf := family(name, dto.MetricType_GAUGE, &help, gauge(v, label, value), gauge(-v))
		got, ok := encode(t, mf)
		if !ok {
			if legacyName(name, true) && legacyName(label, false) {
				t.Fatalf("legacy names %q %q not handled", name, label)
			}
			return
		}
		if !model.LegacyValidation.IsValidMetricName(name) {
			t.Fatalf("%q handled but not a legacy name", name)
		}
		if want := expfmtText(t, mf); got != want {
			t.Fatalf("ours\n%q\nexpfmt\n%q", got, want)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	var metrics []*dto.Metric
	for i := range 200 {
		metrics = append(metrics, gauge(float64(i)*4096+0.5, "numa_node", "0", "zone", "Normal", "order", "3"))
	}
	mf := family("memfrag_buddy_free_blocks", dto.MetricType_GAUGE, proto.String("Free blocks."), metrics...)
	b.Run("textenc", func(b *testing.B) {
		var buf []byte
		var e Encoder
		for b.Loop() {
			buf, _ = e.Append(buf[:0], mf)
			e.Next()
		}
	})
	b.Run("expfmt", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			expfmt.MetricFamilyToText(&buf, mf)
		}
	})
}

// A series whose labels change comes in new pairs and is written with its
// new labels; the series no scrape uses any more are forgotten, so the
// cache does not grow with churn.
func TestEncoderFollowsSeries(t *testing.T) {
	var e Encoder
	mf := family("g", dto.MetricType_GAUGE, nil, gauge(1, "zone", "Normal"))
	for i := range 1000 {
		zone := fmt.Sprintf("zone%d", i)
		mf.Metric = []*dto.Metric{gauge(float64(i), "zone", zone), gauge(2, "zone", "Normal")}
		got, ok := e.Append(nil, mf)
		want := expfmtText(t, mf)
		if !ok || string(got) != want {
			t.Fatalf("scrape %d: %q, want %q", i, got, want)
		}
		e.Next()
	}
	if n := len(e.labels); n > 2*2+64+1 {
		t.Errorf("%d series cached after 1000 scrapes of 2", n)
	}
	// A family's header follows its name, help and type, whatever the
	// Help pointer.
	help := proto.String("Help.")
	for _, f := range []*dto.MetricFamily{
		family("a", dto.MetricType_GAUGE, help, gauge(1)),
		family("b", dto.MetricType_GAUGE, help, gauge(1)),
		family("b", dto.MetricType_COUNTER, help, &dto.Metric{Counter: &dto.Counter{Value: proto.Float64(2)}}),
	} {
		*help += " More."
		got, ok := e.Append(nil, f)
		if want := expfmtText(t, f); !ok || string(got) != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
	// A vector's series share its constant label pairs: each is written
	// with its own labels.
	reg := prometheus.NewRegistry()
	gv := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "c", Help: "C.", ConstLabels: prometheus.Labels{"a": "x"}}, []string{"zone"})
	gv.WithLabelValues("DMA").Set(1)
	gv.WithLabelValues("Normal").Set(2)
	reg.MustRegister(gv)
	for range 2 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := e.Append(nil, mfs[0])
		if want := expfmtText(t, mfs[0]); !ok || string(got) != want {
			t.Errorf("constant labels: %q, want %q", got, want)
		}
		e.Next()
	}
	// A family first seen without series, then with, under the same help.
	f := family("e", dto.MetricType_GAUGE, help)
	if _, ok := e.Append(nil, f); ok {
		t.Error("a family without series was handled")
	}
	f.Metric = []*dto.Metric{gauge(3)}
	if got, ok := e.Append(nil, f); !ok || string(got) != expfmtText(t, f) {
		t.Errorf("after its empty scrape: %q, %v", got, ok)
	}
	// A family refused midway leaves nothing behind.
	bad := family("g", dto.MetricType_GAUGE, nil, gauge(1, "zone", "Normal"), gauge(1, "bad:name", "x"))
	if got, ok := e.Append([]byte("x"), bad); ok || string(got) != "x" {
		t.Errorf("refused family appended %q (%v)", got, ok)
	}
}

// AppendFloat writes what strconv writes, integers through appendInteger
// included: at the e-notation boundary, around 2^53, negative, with and
// without trailing zeros.
func TestAppendFloatIntegers(t *testing.T) {
	vals := []float64{999999, 1e6, -999999, -1e6, 1000001, 4194304, 4.194304e+06 * 1024, 1 << 52, 1<<53 - 1, -(1<<53 - 1),
		1 << 53, 1e15, 1e20, 1e21, 123456789012, 2, -2, 10, 100, 0.5, 1e-7, -0.0}
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 100000; i++ {
		v := float64(r.Int64N(1 << 53))
		if i%3 == 0 {
			v = float64(r.Int64N(1<<20)) * math.Pow(10, float64(r.IntN(10)))
		}
		if i%2 == 1 {
			v = -v
		}
		vals = append(vals, v)
	}
	for _, v := range vals {
		want := strconv.FormatFloat(v, 'g', -1, 64)
		switch v {
		case 0:
			want = "0" // expfmt writes 0 for -0 too
		case 1, -1:
			want = strconv.FormatFloat(v, 'f', -1, 64)
		}
		if got := string(AppendFloat(nil, v)); got != want {
			t.Fatalf("AppendFloat(%v) = %q, strconv %q", v, got, want)
		}
	}
}

// AppendFloat writes what strconv writes for thousandths (the fragmentation
// indices) and for values near them that are not thousandths, which
// strconv formats.
func TestAppendFloatThousandths(t *testing.T) {
	vals := []float64{0.001, -0.001, 0.5, 0.05, 0.953, 0.1 + 0.2, 999999.999, -999999.999, 1e6 - 0.5, 1e6 + 0.5,
		123.456, 0.0001, 0.0005, 1.0005, 1e-3 + 1e-12, 0.3333333333333333, 2.675, 1 - 1e-16}
	r := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 200000; i++ {
		k := r.Int64N(2e9) - 1e9
		v := float64(k) / 1000
		switch i % 4 {
		case 1:
			v = float64(r.Int64N(2001)-1000) / 1000 // the indices' range
		case 2:
			v = math.Nextafter(v, math.Inf(1)) // a neighbour: not thousandths
		case 3:
			v = r.Float64() * math.Pow(10, float64(r.IntN(12)-5))
		}
		vals = append(vals, v)
	}
	for _, v := range vals {
		want := strconv.FormatFloat(v, 'g', -1, 64)
		if v == 0 || v == 1 || v == -1 {
			continue // written by their own cases, tested above
		}
		if got := string(AppendFloat(nil, v)); got != want {
			t.Fatalf("AppendFloat(%v) = %q, strconv %q", v, got, want)
		}
	}
}

func BenchmarkAppendFloat(b *testing.B) {
	var buf []byte
	for b.Loop() {
		buf = AppendFloat(buf[:0], 4.194304e+06)
		buf = AppendFloat(buf, 12345)
		buf = AppendFloat(buf, 0.953)
	}
}

func BenchmarkAppendFloatThousandths(b *testing.B) {
	var buf []byte
	for b.Loop() {
		buf = AppendFloat(buf[:0], 0.953)
		buf = AppendFloat(buf, -0.25)
		buf = AppendFloat(buf, 0.002)
	}
}
