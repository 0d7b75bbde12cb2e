package remediate

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestHandlerStatusCodes(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	tokenFile := filepath.Join(t.TempDir(), "token")
	mustWrite(t, tokenFile, "s3cret\n")
	cfg := testConfig(tr, newFakeClock())
	cfg.AllowUnauthenticated = false
	cfg.TokenFile = tokenFile
	cfg.MaxBodyBytes = 4096
	cfg.DryRun = true
	r := newReceiver(t, cfg)
	good := payload(alertFor("compact", "a"))
	auth := "Bearer s3cret"
	for _, tc := range []struct {
		name   string
		method string
		header []string // pairs; Content-Type application/json unless set
		body   string
		code   int
	}{
		{"GET", http.MethodGet, []string{"Authorization", auth}, "", 405},
		{"PUT", http.MethodPut, []string{"Authorization", auth}, good, 405},
		{"no token", http.MethodPost, nil, good, 401},
		{"wrong token", http.MethodPost, []string{"Authorization", "Bearer s3cret2"}, good, 401},
		{"token prefix", http.MethodPost, []string{"Authorization", "Bearer s3cre"}, good, 401},
		{"basic scheme", http.MethodPost, []string{"Authorization", "Basic czNjcmV0"}, good, 401},
		{"bare token", http.MethodPost, []string{"Authorization", "s3cret"}, good, 401},
		{"no content type", http.MethodPost, []string{"Authorization", auth, "Content-Type", ""}, good, 415},
		{"form", http.MethodPost, []string{"Authorization", auth, "Content-Type", "application/x-www-form-urlencoded"}, good, 415},
		{"too large", http.MethodPost, []string{"Authorization", auth}, `{"version":"4","alerts":[],"x":"` + strings.Repeat("a", 5000) + `"}`, 413},
		{"malformed", http.MethodPost, []string{"Authorization", auth}, `{"version":"4","alerts":[`, 400},
		{"wrong version", http.MethodPost, []string{"Authorization", auth}, `{"version":"5","alerts":[]}`, 400},
		{"missing fields", http.MethodPost, []string{"Authorization", auth}, `{"version":"4","alerts":[{"labels":{}}]}`, 400},
		{"ok", http.MethodPost, []string{"Authorization", auth}, good, 200},
		{"ok, scheme in lower case, charset", http.MethodPost, []string{"Authorization", "bearer s3cret", "Content-Type", "application/json; charset=utf-8"}, good, 200},
		{"policy skip is still 200", http.MethodPost, []string{"Authorization", auth}, payload(alertFor("compact", "b", "node", "x")), 200},
	} {
		req := httptest.NewRequest(tc.method, "/remediate", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(tc.header); i += 2 {
			req.Header.Set(tc.header[i], tc.header[i+1])
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != tc.code {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, w.Code, tc.code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", tc.name, ct)
		}
		switch tc.code {
		case 401:
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
			}
		case 405:
			if w.Header().Get("Allow") != "POST" {
				t.Errorf("%s: 405 without Allow: POST", tc.name)
			}
		}
	}
	for code, want := range map[string]float64{"200": 3, "400": 3, "401": 5, "405": 2, "413": 1, "415": 2, "408": 0} {
		if got := testutil.ToFloat64(r.metrics.requests.WithLabelValues(code)); got != want {
			t.Errorf("webhook_requests_total{code=%q} = %v, want %v", code, got, want)
		}
	}
}

func TestReply(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	r := newReceiver(t, testConfig(tr, newFakeClock()))
	ds := decisions(t, post(t, r, payload(
		alertFor("compact", "a"),
		alertFor("compact", "b"),
		alertFor("compact", "c", "status", "resolved"),
		alertFor("nope", "d"),
	)))
	want := []replyDecision{
		{Alertname: "MemoryFragmented", Fingerprint: "a", Action: "compact", Decision: "accepted"},
		{Alertname: "MemoryFragmented", Fingerprint: "b", Action: "compact", Decision: "skipped", Reason: "busy"},
		{Alertname: "MemoryFragmented", Fingerprint: "c", Action: "compact", Decision: "skipped", Reason: "resolved"},
		{Alertname: "MemoryFragmented", Fingerprint: "d", Action: "unknown", Decision: "skipped", Reason: "invalid"},
	}
	if len(ds) != len(want) {
		t.Fatalf("%d decisions, want %d", len(ds), len(want))
	}
	for i := range want {
		if ds[i] != want[i] {
			t.Errorf("decision %d = %+v, want %+v", i, ds[i], want[i])
		}
	}
}

func TestTokenReload(t *testing.T) {
	tr := newTree(t, "buddyinfo-healthy")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	mustWrite(t, tokenFile, "one")
	cfg := testConfig(tr, newFakeClock())
	cfg.AllowUnauthenticated = false
	cfg.TokenFile = tokenFile
	cfg.TokenCheckInterval = time.Hour // only explicit reloads in the first half
	r := newReceiver(t, cfg)
	code := func(tok string) int {
		return post(t, r, payload(), "Authorization", "Bearer "+tok).Code
	}
	if code("one") != 200 || code("two") != 401 {
		t.Fatal("initial token not in force")
	}
	mustWrite(t, tokenFile, "two\n")
	if err := r.ReloadToken(); err != nil {
		t.Fatal(err)
	}
	if code("one") != 401 || code("two") != 200 {
		t.Fatal("reloaded token not in force")
	}
	mustWrite(t, tokenFile, "  \n")
	if err := r.ReloadToken(); err == nil {
		t.Fatal("empty token file accepted")
	}
	if code("two") != 200 || code("") != 401 {
		t.Fatal("an empty token file must leave the previous token in force")
	}

	// The watcher picks up a change without SIGHUP: Kubernetes swaps the
	// symlink of a mounted secret.
	tr2 := newTree(t, "buddyinfo-healthy")
	link := filepath.Join(dir, "link")
	mustWrite(t, filepath.Join(dir, "v1"), "alpha")
	mustWrite(t, filepath.Join(dir, "v2"), "beta")
	if err := os.Symlink("v1", link); err != nil {
		t.Fatal(err)
	}
	cfg2 := testConfig(tr2, newFakeClock())
	cfg2.AllowUnauthenticated = false
	cfg2.TokenFile = link
	cfg2.TokenCheckInterval = 10 * time.Millisecond
	r2 := newReceiver(t, cfg2)
	if post(t, r2, payload(), "Authorization", "Bearer alpha").Code != 200 {
		t.Fatal("alpha not accepted")
	}
	os.Remove(filepath.Join(dir, "link.tmp"))
	os.Symlink("v2", filepath.Join(dir, "link.tmp"))
	if err := os.Rename(filepath.Join(dir, "link.tmp"), link); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return post(t, r2, payload(), "Authorization", "Bearer beta").Code == 200 })
	if post(t, r2, payload(), "Authorization", "Bearer alpha").Code != 401 {
		t.Fatal("old token still accepted after rotation")
	}
}

func TestMetrics(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	clock := newFakeClock()
	r := newReceiver(t, testConfig(tr, clock))
	decideOne(t, r, alertFor("compact", "a"))
	r.wg.Wait()
	decideOne(t, r, alertFor("compact", "b"))
	decideOne(t, r, alertFor("drop_caches", "c", "node", "elsewhere"))
	problems, err := testutil.CollectAndLint(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	const want = `
# HELP memfrag_remediation_last_gain_bytes Last run of the action: free bytes in blocks of at least the check order (--remediate.order) after minus before. Zero or less means it did not help and the action backs off.
# TYPE memfrag_remediation_last_gain_bytes gauge
memfrag_remediation_last_gain_bytes{action="compact"} 0
# HELP memfrag_remediation_last_run_timestamp_seconds When the action last finished (Unix time), whatever its result.
# TYPE memfrag_remediation_last_run_timestamp_seconds gauge
memfrag_remediation_last_run_timestamp_seconds{action="compact"} %d
# HELP memfrag_remediation_in_progress 1 while a remediation action (or a kernel write it timed out on) is running.
# TYPE memfrag_remediation_in_progress gauge
memfrag_remediation_in_progress 0
`
	if err := testutil.CollectAndCompare(r, strings.NewReader(fmt.Sprintf(want, clock.Now().Unix())),
		"memfrag_remediation_last_gain_bytes", "memfrag_remediation_last_run_timestamp_seconds", "memfrag_remediation_in_progress"); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		vec    string
		labels []string
		want   float64
	}{
		{"runs", []string{"compact", "success"}, 1},
		{"runs", []string{"compact", "error"}, 0},
		{"skipped", []string{"compact", "cooldown"}, 1},
		{"skipped", []string{"drop_caches", "other_host"}, 1},
	} {
		v := r.metrics.runs
		if c.vec == "skipped" {
			v = r.metrics.skipped
		}
		if got := testutil.ToFloat64(v.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.vec, c.labels, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(r, "memfrag_remediation_duration_seconds"); n != 1 {
		t.Errorf("%d duration histograms, want 1", n)
	}
}

func TestRecentKeepsActionsThroughFloods(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	clock := newFakeClock()
	r := newReceiver(t, testConfig(tr, clock))
	decideOne(t, r, alertFor("compact", "first"))
	r.wg.Wait()
	for i := range 200 {
		clock.Advance(time.Second)
		decideOne(t, r, alertFor("compact", "flood"+string(rune('a'+i%26))))
	}
	rec := r.Recent()
	if len(rec) != recentMax {
		t.Fatalf("%d recent decisions, want %d", len(rec), recentMax)
	}
	var found bool
	for i, d := range rec {
		if i > 0 && d.Time.After(rec[i-1].Time) {
			t.Fatal("recent decisions not newest first")
		}
		if d.Fingerprint == "first" && d.Decision == decisionAccepted && d.Result == resultSuccess {
			found = true
		}
	}
	if !found {
		t.Error("the accepted action was pushed out by skips")
	}
	if len(r.seen) > dedupeSize || len(r.skipped.buf) > recentSkipped {
		t.Error("histories are not bounded")
	}
}

// TestServerTimeouts runs the handler behind a real server with a short
// ReadHeaderTimeout (as main's) and body timeout: slow-loris clients are cut
// off, in headers and in the body.
func TestServerTimeouts(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.BodyTimeout = 200 * time.Millisecond
	r := newReceiver(t, cfg)
	srv := httptest.NewUnstartedServer(r)
	srv.Config.ReadHeaderTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	for _, tc := range []struct {
		name, send string
		want       string // start of the answer, "" for a closed connection
	}{
		{"slow headers", "POST /remediate HTTP/1.1\r\nHost: x\r\n", ""},
		{"slow body", "POST /remediate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"vers", "HTTP/1.1 408"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second)) // guards the test only
			if _, err := io.WriteString(conn, tc.send); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(conn) // returns when the server closes
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server never cut the client off (the test's own deadline did); got %q", got)
			}
			if tc.want == "" && len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408") ||
				tc.want != "" && !strings.HasPrefix(string(got), tc.want) {
				t.Fatalf("answer %q, want %q", got, tc.want)
			}
		})
	}
	if got := testutil.ToFloat64(r.metrics.requests.WithLabelValues("408")); got != 1 {
		t.Errorf("408 counted %v times, want 1", got)
	}
	// A well-behaved client still gets through afterwards.
	resp, err := http.Post(srv.URL+"/remediate", "application/json", strings.NewReader(payload()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestAlertmanagerPayload decides a payload shaped as Alertmanager 0.31 sends
// it, newer fields included.
func TestAlertmanagerPayload(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	r := newReceiver(t, testConfig(tr, newFakeClock()))
	body, err := os.ReadFile("testdata/alertmanager-0.31-payload.json")
	if err != nil {
		t.Fatal(err)
	}
	ds := decisions(t, post(t, r, string(body)))
	if len(ds) != 1 || ds[0].Decision != decisionAccepted || ds[0].Action != "drop_caches_then_compact" {
		t.Fatalf("decisions %+v, want drop_caches_then_compact accepted", ds)
	}
	r.wg.Wait()
	want := map[string]string{"proc/sys/vm/drop_caches": "3\n", "sys/devices/system/node/node0/compact": "1\n"}
	if got := tr.written(t); len(got) != 2 || got["proc/sys/vm/drop_caches"] != want["proc/sys/vm/drop_caches"] ||
		got["sys/devices/system/node/node0/compact"] != want["sys/devices/system/node/node0/compact"] {
		t.Errorf("written %q, want %q", got, want)
	}
}

// Serving without a token is allowed on purpose only, and said loudly at
// start: an operator reading the log must not mistake it for a protected
// endpoint.
func TestUnauthenticatedWarnsAtStart(t *testing.T) {
	for _, tc := range []struct {
		token bool
		warn  bool
	}{{false, true}, {true, false}} {
		tr := newTree(t, "buddyinfo-healthy")
		cfg := testConfig(tr, newFakeClock())
		if tc.token {
			cfg.AllowUnauthenticated = false
			cfg.TokenFile = filepath.Join(t.TempDir(), "token")
			mustWrite(t, cfg.TokenFile, "s3cret\n")
		}
		var buf strings.Builder
		r, err := New(cfg, log.NewLogfmtLogger(log.NewSyncWriter(&buf)))
		if err != nil {
			t.Fatal(err)
		}
		r.Shutdown(t.Context())
		got := strings.Contains(buf.String(), "level=warn") && strings.Contains(buf.String(), "without authentication")
		if got != tc.warn {
			t.Errorf("token %v: warning logged %v, want %v; log:\n%s", tc.token, got, tc.warn, buf.String())
		}
	}
}

// Every payload the receiver cannot decide (too large, wrong content type,
// malformed) is logged with its status, not only counted: the alerts in it
// are lost to this receiver.
func TestRejectionsAreLogged(t *testing.T) {
	tr := newTree(t, "buddyinfo-healthy")
	cfg := testConfig(tr, newFakeClock())
	cfg.MaxBodyBytes = 64
	var buf strings.Builder
	r, err := New(cfg, log.NewLogfmtLogger(log.NewSyncWriter(&buf)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(t.Context())
	for _, tc := range []struct {
		ctype, body string
		code        int
	}{
		{"application/json", `{"version":"4","alerts":[],"x":"` + strings.Repeat("a", 100) + `"}`, 413},
		{"text/plain", `{"version":"4","alerts":[]}`, 415},
		{"application/json", `{"version":"4"`, 400},
	} {
		w := post(t, r, tc.body, "Content-Type", tc.ctype)
		if w.Code != tc.code {
			t.Fatalf("status %d, want %d", w.Code, tc.code)
		}
		want := fmt.Sprintf("level=warn msg=\"remediation webhook payload rejected\" code=%d", tc.code)
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no log line %q; log:\n%s", want, buf.String())
		}
	}
}
