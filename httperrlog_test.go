package main

import (
	"bytes"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
)

// A stranger who opens plain connections to the TLS port makes the HTTP
// server log one "TLS handshake error" per connection (115 bytes each; 2,000
// in 0.84 s on loopback before). Through serverErrorLog a burst costs one
// line per interval.
func TestServerErrorLogBoundsHandshakeFlood(t *testing.T) {
	var buf bytes.Buffer // written under el.mu
	el := &serverErrorLog{logger: log.NewLogfmtLogger(&buf), component: "http", every: serverErrorLogEvery, now: time.Now}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.Config.ErrorLog = stdlog.New(el, "", 0)
	srv.StartTLS()
	defer srv.Close()
	const n = 300
	dialEach(t, strings.TrimPrefix(srv.URL, "https://"), n, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(c)
	})
	time.Sleep(100 * time.Millisecond) // the last handshake errors are logged
	el.mu.Lock()
	out := buf.String()
	el.mu.Unlock()
	lines := strings.Count(out, "\n")
	t.Logf("%d plain connections to a TLS port: %d log lines, %d bytes", n, lines, len(out))
	if lines != 1 || !strings.Contains(out, "TLS handshake error") {
		t.Errorf("want the first handshake error logged and the others suppressed, got %d lines:\n%s", lines, out)
	}
}

func TestServerErrorLogInterval(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := &serverErrorLog{logger: log.NewLogfmtLogger(&buf), every: 10 * time.Second, now: func() time.Time { return now }}
	for _, step := range []struct {
		after time.Duration
		want  string // the line logged, "" for suppressed
	}{
		{0, "suppressed=0"},
		{time.Second, ""},
		{8 * time.Second, ""},
		{time.Second, "suppressed=2"},
		{9 * time.Second, ""},
		{20 * time.Second, "suppressed=1"},
	} {
		now = now.Add(step.after)
		buf.Reset()
		l.Write([]byte("http: TLS handshake error from 192.0.2.9:1: EOF\n"))
		got := buf.String()
		if step.want == "" && got != "" || step.want != "" && !strings.Contains(got, step.want) {
			t.Errorf("after %v: logged %q, want %q", step.after, got, step.want)
		}
	}
}

// A scraper that resets the connection before reading made promhttp log one
// line per metric family (about 2.6 KB of log per request against the built
// binary, 400 such requests wrote 1 MB before). Now a burst is one line.
func TestMetricsErrorLogBoundsResetFlood(t *testing.T) {
	var buf bytes.Buffer // read once the server closed: no handler writes then
	logger := log.NewLogfmtLogger(log.NewSyncWriter(&buf))
	registry := prometheus.NewRegistry()
	for i := range 200 {
		registry.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{
			Name: fmt.Sprintf("test_family_%d", i), Help: strings.Repeat("padding ", 60)}))
	}
	srv := httptest.NewServer(metricsHandler(prometheus.ToTransactionalGatherer(registry), newErrCounter(), 0, logger))
	const n = 100
	dialEach(t, strings.TrimPrefix(srv.URL, "http://"), n, func(c net.Conn) {
		c.(*net.TCPConn).SetLinger(0) // close with a reset
	})
	time.Sleep(300 * time.Millisecond) // the handlers see the resets
	srv.Close()
	out := buf.String()
	lines := strings.Count(out, "\n")
	t.Logf("%d reset scrapes: %d log lines, %d bytes", n, lines, len(out))
	if lines != 1 || !strings.Contains(out, "error encoding and sending metric family") {
		t.Errorf("want the first encoding error logged and the others suppressed, got %d lines:\n%s", lines, out)
	}
}

// dialEach opens n connections to addr one after the other, sends a GET on
// each, hands it to then and closes it.
func dialEach(t *testing.T, addr string, n int, then func(net.Conn)) {
	t.Helper()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		then(c)
		c.Close()
	}
}
