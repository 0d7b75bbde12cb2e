// Package textenc appends metric families to a byte slice in the Prometheus
// text exposition format 0.0.4, byte for byte as expfmt.MetricFamilyToText
// writes them, for the families it handles: counters, gauges, untyped
// metrics and summaries with legacy-valid names. Anything else (histograms,
// names that need quoting, families without metrics) is reported as not
// handled, for the caller to encode with expfmt.
//
// expfmt writes through an io.Writer one piece at a time and formats every
// label pair anew; appending to one reused buffer does the same work in
// about a third of the time.
package textenc

import (
	"math"
	"strconv"

	dto "github.com/prometheus/client_model/go"
)

// Handles reports whether Append encodes mf exactly as expfmt would.
func Handles(mf *dto.MetricFamily) bool {
	if len(mf.Metric) == 0 || !legacyName(mf.GetName(), true) {
		return false
	}
	switch mf.GetType() {
	case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_UNTYPED, dto.MetricType_SUMMARY:
	default:
		return false
	}
	for _, m := range mf.Metric {
		for _, lp := range m.Label {
			if !legacyName(lp.GetName(), false) || lp.GetName() == "quantile" && mf.GetType() == dto.MetricType_SUMMARY {
				return false
			}
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			if m.Counter == nil {
				return false
			}
		case dto.MetricType_GAUGE:
			if m.Gauge == nil {
				return false
			}
		case dto.MetricType_UNTYPED:
			if m.Untyped == nil {
				return false
			}
		case dto.MetricType_SUMMARY:
			if m.Summary == nil {
				return false
			}
		}
	}
	return true
}

// Append appends mf, which Handles must accept, to b.
func Append(b []byte, mf *dto.MetricFamily) []byte {
	name := mf.GetName()
	if mf.Help != nil {
		b = append(b, "# HELP "...)
		b = append(b, name...)
		b = append(b, ' ')
		b = appendEscaped(b, *mf.Help, false)
		b = append(b, '\n')
	}
	b = append(b, "# TYPE "...)
	b = append(b, name...)
	switch mf.GetType() {
	case dto.MetricType_COUNTER:
		b = append(b, " counter\n"...)
	case dto.MetricType_GAUGE:
		b = append(b, " gauge\n"...)
	case dto.MetricType_SUMMARY:
		b = append(b, " summary\n"...)
	default:
		b = append(b, " untyped\n"...)
	}
	for _, m := range mf.Metric {
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			b = appendSample(b, name, "", m, "", 0, m.Counter.GetValue())
		case dto.MetricType_GAUGE:
			b = appendSample(b, name, "", m, "", 0, m.Gauge.GetValue())
		case dto.MetricType_UNTYPED:
			b = appendSample(b, name, "", m, "", 0, m.Untyped.GetValue())
		case dto.MetricType_SUMMARY:
			s := m.Summary
			for _, q := range s.Quantile {
				b = appendSample(b, name, "", m, "quantile", q.GetQuantile(), q.GetValue())
			}
			b = appendSample(b, name, "_sum", m, "", 0, s.GetSampleSum())
			b = appendSample(b, name, "_count", m, "", 0, float64(s.GetSampleCount()))
		}
	}
	return b
}

// appendSample appends one line: name and suffix, m's labels and an
// optional extra label (the quantile) whose value is a float, the value
// and m's timestamp if it has one.
func appendSample(b []byte, name, suffix string, m *dto.Metric, extra string, extraV, v float64) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	if len(m.Label) > 0 || extra != "" {
		sep := byte('{')
		for _, lp := range m.Label {
			b = append(b, sep)
			b = append(b, lp.GetName()...)
			b = append(b, '=', '"')
			b = appendEscaped(b, lp.GetValue(), true)
			b = append(b, '"')
			sep = ','
		}
		if extra != "" {
			b = append(b, sep)
			b = append(b, extra...)
			b = append(b, '=', '"')
			b = AppendFloat(b, extraV)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = AppendFloat(b, v)
	if m.TimestampMs != nil {
		b = append(b, ' ')
		b = strconv.AppendInt(b, *m.TimestampMs, 10)
	}
	return append(b, '\n')
}

// AppendFloat formats f as expfmt's text format does.
func AppendFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, '1')
	case f == 0:
		return append(b, '0')
	case f == -1:
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendEscaped escapes a backslash and a newline, and in a label value
// also a double quote.
func appendEscaped(b []byte, s string, quote bool) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '"':
			if !quote {
				continue
			}
			esc = `\"`
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		start = i + 1
	}
	return append(b, s[start:]...)
}

// legacyName reports whether s is a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)
// or, without colon, a label name ([a-zA-Z_][a-zA-Z0-9_]*) that the text
// format writes as it is.
func legacyName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || colon && c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
