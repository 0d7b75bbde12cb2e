package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/memfrag/memfrag_exporter/internal/textenc"
)

// physFloor is the least a scrape of the subject's exposition can cost on
// this machine, part by part: a keep-alive HTTP round trip on loopback with
// a tiny body, the kernel files at scrape cadence (measured elsewhere),
// encoding the series (textenc, the cheapest encoder at hand) and a
// stateless gzip of the body.
type physFloor struct {
	rtt, encode, gzip time.Duration
}

// measurePhysFloor times the parts over body, the subject's last plain
// exposition, iter times each, median.
func measurePhysFloor(body []byte, iter int) (physFloor, error) {
	var pf physFloor
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return pf, fmt.Errorf("floor server: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })}
	go srv.Serve(ln)
	defer srv.Close()
	tr := &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := "http://" + ln.Addr().String() + "/"
	d := make([]time.Duration, 0, iter)
	for i := 0; i < iter+20; i++ {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return pf, fmt.Errorf("floor round trip: %w", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i >= 20 {
			d = append(d, time.Since(start))
		}
	}
	pf.rtt = medianDur(d)

	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return pf, fmt.Errorf("parsing the exposition: %w", err)
	}
	var mfs []*dto.MetricFamily
	var enc textenc.Encoder
	for _, mf := range fams {
		if _, ok := enc.Append(nil, mf); ok {
			mfs = append(mfs, mf)
		}
	}
	var buf []byte
	d = d[:0]
	for i := 0; i < iter; i++ {
		enc.Next()
		start := time.Now()
		buf = buf[:0]
		for _, mf := range mfs {
			buf, _ = enc.Append(buf, mf)
		}
		d = append(d, time.Since(start))
	}
	pf.encode = medianDur(d)

	var out bytes.Buffer
	d = d[:0]
	for i := 0; i < iter; i++ {
		out.Reset()
		start := time.Now()
		zw, _ := kgzip.NewWriterLevel(&out, kgzip.StatelessCompression)
		zw.Write(body)
		zw.Close()
		d = append(d, time.Since(start))
	}
	pf.gzip = medianDur(d)
	return pf, nil
}

// print prints the parts, their sum with the files, and subject's p50
// against it.
func (pf physFloor) print(w io.Writer, subject string, p50, files time.Duration) {
	total := pf.rtt + files + pf.encode + pf.gzip
	fmt.Fprintf(w, "physical floor of a scrape (same run, median): %.0f µs = HTTP round trip %.0f + kernel files at cadence %.0f + encoding %.0f + stateless gzip %.0f\n",
		us(total), us(pf.rtt), us(files), us(pf.encode), us(pf.gzip))
	fmt.Fprintf(w, "  %s p50 / physical floor      %.2fx (aim 1.5x; the rest: %s)\n", subject, us(p50)/us(total),
		strings.Join([]string{"/proc/self/net/netstat and /proc/self/statm for process_*", "kernel files and gzip colder than in the floor's loops", "collectors above their read floor", "net/http and the Go scheduler"}, ", "))
}
