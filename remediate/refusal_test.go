package remediate

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func tokenConfig(t *testing.T, tr *tree, token string) Config {
	t.Helper()
	cfg := testConfig(tr, newFakeClock())
	cfg.AllowUnauthenticated = false
	cfg.TokenFile = filepath.Join(t.TempDir(), "token")
	cfg.DryRun = true
	mustWrite(t, cfg.TokenFile, token+"\n")
	return cfg
}

// A flood of wrong-token requests over loopback writes a bounded number of
// log lines (one per interval, each with the count suppressed since the
// last), while the 401 counter keeps the exact count.
func TestRefusalLogIsRateLimited(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	r, logs := newLoggedReceiver(t, tokenConfig(t, tr, "s3cret"))
	r.refusals.every = 200 * time.Millisecond
	srv := httptest.NewServer(r)
	defer srv.Close()
	before := len(logs.String())

	const n = 2000
	client := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	for i := range n {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{}`))
		req.Header.Set("Authorization", fmt.Sprintf("Bearer wrong-%d", i))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("request %d: %d, want 401", i, resp.StatusCode)
		}
	}
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond) // the last summary
	r.refusals.stop()
	logged := time.Since(start) // the span the lines were written in
	out := logs.String()[before:]
	lines := strings.Count(out, "\n")
	if got := testutil.ToFloat64(r.metrics.requests.WithLabelValues("401")); got != n {
		t.Errorf("401 counter %v, want %d", got, n)
	}
	// Every refusal has a line of its own or is in a line's suppressed count.
	direct := lines - strings.Count(out, "(summary)")
	total := 0
	for _, m := range regexp.MustCompile(`suppressed=(\d+)`).FindAllStringSubmatch(out, -1) {
		k, _ := strconv.Atoi(m[1])
		total += k
	}
	if total+direct != n {
		t.Errorf("%d own lines + %d suppressed = %d, want %d; log:\n%s", direct, total, total+direct, n, out)
	}
	// One line at the first refusal, then at most one per interval.
	maxLines := int(logged/r.refusals.every) + 2
	if lines > maxLines {
		t.Errorf("%d log lines in %v, want at most %d", lines, logged, maxLines)
	}
	if got := testutil.ToFloat64(r.metrics.refusalLogged); got != float64(lines) {
		t.Errorf("refusal_log_lines_total %v, log has %d lines", got, lines)
	}
	t.Logf("%d refused requests in %v: %d log lines, %d bytes, %.2f bytes per refused request (interval %v)",
		n, elapsed.Round(time.Millisecond), lines, len(out), float64(len(out))/n, r.refusals.every)
}

// An unauthenticated request whose body trickles in gets its 401 at once,
// and its connection is closed without waiting for the body.
func TestUnauthenticatedSlowBodyAnsweredAtOnce(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	r, _ := newLoggedReceiver(t, tokenConfig(t, tr, "s3cret"))
	srv := httptest.NewUnstartedServer(r)
	srv.Config.ReadTimeout = 30 * time.Second // as the exporter's server
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, head := range []string{
		"POST /remediate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer wrong\r\nContent-Length: 100000\r\n\r\n",
		"POST /remediate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
		"POST /remediate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second)) // guards the test only
		start := time.Now()
		io.WriteString(conn, head)
		stop := make(chan struct{})
		go func() { // one byte every 100 ms
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("1")); err != nil {
						return
					}
				}
			}
		}()
		br := bufio.NewReader(conn)
		status, err := br.ReadString('\n')
		answered := time.Since(start)
		if err != nil || !strings.Contains(status, " 401 ") {
			t.Fatalf("status %q, %v; want 401", status, err)
		}
		_, err = io.Copy(io.Discard, br) // until the server closes
		closed := time.Since(start)
		close(stop)
		conn.Close()
		if err != nil {
			t.Errorf("connection not closed by the server: %v", err)
		}
		if answered > 2*time.Second || closed > 2*time.Second {
			t.Errorf("401 after %v, closed after %v; want both within 2s", answered, closed)
		}
		t.Logf("slow body, wrong token: 401 after %v, connection closed after %v", answered.Round(time.Microsecond), closed.Round(time.Microsecond))
	}
}

// Deleting or emptying the token file is logged once per change and
// counted; the previous token stays in force until the content is replaced.
func TestTokenFileDeletedOrEmptied(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := tokenConfig(t, tr, "old-token")
	cfg.TokenCheckInterval = 10 * time.Millisecond
	r, logs := newLoggedReceiver(t, cfg)
	srv := httptest.NewServer(r)
	defer srv.Close()
	status := func(token string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(payload()))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	errLines := func() int { return strings.Count(logs.String(), "cannot reload remediation token") }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s; log:\n%s", what, logs)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, step := range []struct {
		name   string
		change func()
		errs   int
	}{
		{"deleted", func() { os.Remove(cfg.TokenFile) }, 1},
		{"emptied", func() { mustWrite(t, cfg.TokenFile, "") }, 2},
		{"whitespace only", func() { mustWrite(t, cfg.TokenFile, " \n\t\n") }, 3},
	} {
		step.change()
		waitFor(step.name+" logged", func() bool { return errLines() >= step.errs })
		time.Sleep(100 * time.Millisecond) // ten more checks of the same file
		if got := errLines(); got != step.errs {
			t.Errorf("%s: %d error lines, want %d (once per change)", step.name, got, step.errs)
		}
		if got := testutil.ToFloat64(r.metrics.tokenErrors); got != float64(step.errs) {
			t.Errorf("%s: token_reload_errors_total %v, want %d", step.name, got, step.errs)
		}
		if got := testutil.ToFloat64(r.metrics.tokenOK); got != 0 {
			t.Errorf("%s: token_last_reload_success %v, want 0", step.name, got)
		}
		if got := status("old-token"); got != http.StatusOK {
			t.Errorf("%s: the previous token answered %d, want 200", step.name, got)
		}
	}
	// Revocation is replacing the content.
	mustWrite(t, cfg.TokenFile, "new-token\n")
	waitFor("new token in force", func() bool { return testutil.ToFloat64(r.metrics.tokenOK) == 1 })
	if got := status("old-token"); got != http.StatusUnauthorized {
		t.Errorf("revoked token answered %d, want 401", got)
	}
	if got := status("new-token"); got != http.StatusOK {
		t.Errorf("new token answered %d, want 200", got)
	}
}
