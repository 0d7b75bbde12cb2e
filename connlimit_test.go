package main

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/memfrag/memfrag_exporter/internal/fastgzip"
)

// The bound in isolation, with a real http.Server on loopback: quiet
// connections (headers unfinished, or idle after a request) are evicted
// oldest first to let a new one in; when every one is inside a handler,
// the one longest in its request is.
func TestConnLimiter(t *testing.T) {
	lim := newConnLimiter(3)
	release := make(chan struct{})
	inHandler := make(chan struct{}, 10)
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, _ *http.Request) {
		inHandler <- struct{}{}
		<-release
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{Handler: mux, ConnState: lim.connState, ReadHeaderTimeout: 10 * time.Second}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lim.listener(raw))
	defer srv.Close()
	addr := raw.Addr().String()

	dial := func(req string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		return c
	}
	closedByServer := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout()) // EOF or reset

	}
	waitOpen := func(n int) {
		t.Helper()
		for i := 0; testutil.ToFloat64(lim.openGauge) != float64(n); i++ {
			if i > 200 {
				t.Fatalf("open connections %v, want %d", testutil.ToFloat64(lim.openGauge), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	slow := "GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: "

	a := dial(slow)
	waitOpen(1)
	b := dial(slow)
	waitOpen(2)
	c := dial(slow)
	waitOpen(3)
	// A fourth evicts the oldest quiet one (a) and is served.
	d := dial("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(d), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("new connection at the bound: %v", err)
	}
	resp.Body.Close()
	if !closedByServer(a) {
		t.Error("the oldest slow connection was not evicted")
	}
	if got := testutil.ToFloat64(lim.shed.WithLabelValues("evicted")); got != 1 {
		t.Errorf("evicted %v, want 1", got)
	}
	for _, x := range []net.Conn{a, b, c, d} {
		x.Close()
	}
	waitOpen(0)

	// When all three are inside a handler, a fourth closes the one longest
	// in its request and is served: a stranger holding handlers (a trickled
	// body, a reply never read) must not keep new clients out.
	var busy []net.Conn
	for range 3 {
		busy = append(busy, dial("GET /block HTTP/1.1\r\nHost: x\r\n\r\n"))
		<-inHandler
	}
	e := dial("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(e), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("new connection while every open one is in a handler: %v", err)
	}
	resp.Body.Close()
	if got := testutil.ToFloat64(lim.shed.WithLabelValues("evicted")); got != 2 {
		t.Errorf("evicted %v, want 2", got)
	}
	if got := testutil.ToFloat64(lim.shed.WithLabelValues("refused")); got != 0 {
		t.Errorf("refused %v, want 0", got)
	}
	close(release)
	if !closedByServer(busy[0]) {
		t.Error("the connection longest in a handler was not evicted")
	}
	for _, x := range busy[1:] {
		resp, err := http.ReadResponse(bufio.NewReader(x), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("younger request in a handler at the bound: %v", err)
		}
		x.Close()
	}
	busy[0].Close()
	e.Close()
}

// --web.systemd-socket still works with the listeners opened by the
// exporter: it serves on the socket it is handed (fd 3, LISTEN_FDS=1).
func TestSystemdSocketActivation(t *testing.T) {
	bin := buildBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// LISTEN_PID must be the exporter's pid: the shell's, which exec keeps.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --web.systemd-socket --path.procfs=collector/testdata/seed-before/proc`, bin)
	cmd.ExtraFiles = []*os.File{f}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), "memfrag_http_open_connections") {
				t.Fatalf("/metrics over the activated socket: %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer on the activated socket: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "systemd activated") {
		t.Errorf("log does not say it uses the activated socket:\n%s", logs.String())
	}
}

// Through the limiter's connections, whose writes fastgzip.Handler
// gathers (fastgzip.ConnContext), keep-alive gzipped responses smaller
// and larger than net/http's 4 KiB buffer arrive whole and in order.
func TestGatheredResponses(t *testing.T) {
	lim := newConnLimiter(3)
	bodies := map[string]string{}
	mux := http.NewServeMux()
	for _, n := range []int{10, 3000, 4000, 4096, 5000, 200_000} {
		var b strings.Builder
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "%x", sha256.Sum256([]byte(strconv.Itoa(n*i)))) // incompressible
		}
		path := "/" + strconv.Itoa(n)
		bodies[path] = b.String()[:n]
		mux.Handle(path, fastgzip.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, bodies[path])
		})))
	}
	srv := &http.Server{Handler: mux, ConnState: lim.connState, ConnContext: fastgzip.ConnContext}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lim.listener(raw))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
	for round := range 3 {
		for path, want := range bodies {
			resp, err := client.Get("http://" + raw.Addr().String() + path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != want || !resp.Uncompressed {
				t.Fatalf("round %d %s: %d bytes (want %d), %v, gzipped %v", round, path, len(got), len(want), err, resp.Uncompressed)
			}
		}
	}
	if n := testutil.ToFloat64(lim.openGauge); n != 1 {
		t.Errorf("%v connections open, want the one kept alive", n)
	}
}
