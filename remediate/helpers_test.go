package remediate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tree is a temp --path.procfs/--path.sysfs with the files the receiver
// reads and writes; the kernel files it writes start empty, so their content
// afterwards is exactly what was written.
type tree struct {
	proc, sys string
}

// The kernel files an action may write, relative to the tree root.
var kernelFiles = []string{
	"proc/sys/vm/drop_caches",
	"proc/sys/vm/compact_memory",
	"sys/devices/system/node/node0/compact",
	"sys/devices/system/node/node1/compact",
}

func newTree(t testing.TB, buddyinfo string) *tree {
	t.Helper()
	root := t.TempDir()
	tr := &tree{proc: filepath.Join(root, "proc"), sys: filepath.Join(root, "sys")}
	for _, f := range kernelFiles {
		mustWrite(t, filepath.Join(root, f), "")
	}
	mustWrite(t, filepath.Join(tr.sys, "kernel/mm/transparent_hugepage/hpage_pmd_size"), "2097152\n")
	tr.setBuddyinfo(t, buddyinfo)
	copyFile(t, "testdata/zoneinfo", filepath.Join(tr.proc, "zoneinfo"))
	return tr
}

// setBuddyinfo rewrites buddyinfo in place (same inode), as the kernel's
// file changes under a kept descriptor.
func (tr *tree) setBuddyinfo(t testing.TB, fixture string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(tr.proc, "buddyinfo"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// written returns the content of every kernel file that is not empty.
func (tr *tree) written(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := filepath.Dir(tr.proc)
	for _, f := range kernelFiles {
		fi, err := os.Lstat(filepath.Join(root, f))
		if err != nil || !fi.Mode().IsRegular() {
			continue // removed or replaced by a FIFO in this test
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 {
			out[f] = string(b)
		}
	}
	return out
}

func mustWrite(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, to, string(b))
}

// fakeClock is the injected clock of the policy tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const testNode = "node-a"

// testConfig is a receiver config for tree: unauthenticated, all actions,
// node name node-a, no sync, 30m cooldown.
func testConfig(tr *tree, clock *fakeClock) Config {
	return Config{
		ProcPath:             tr.proc,
		SysPath:              tr.sys,
		PageSize:             4096,
		AllowUnauthenticated: true,
		Actions:              Actions,
		NodeName:             testNode,
		Cooldown:             30 * time.Minute,
		Timeout:              5 * time.Second,
		DropCachesLevel:      3,
		Order:                4,
		UnusableThreshold:    0.9,
		Clock:                clock.Now,
	}
}

func newReceiver(t testing.TB, cfg Config) *Receiver {
	t.Helper()
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.syncFn = func() { t.Error("sync(2) called in a test that did not expect it") }
	t.Cleanup(func() {
		r.wg.Wait()
		r.Shutdown(t.Context())
	})
	return r
}

// payload builds an Alertmanager v4 body from alerts given as label maps;
// the labels status, fingerprint and startsAt (if present) go to the alert's
// fields instead.
func payload(alerts ...map[string]string) string {
	type al struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    string            `json:"startsAt"`
		EndsAt      string            `json:"endsAt"`
		Fingerprint string            `json:"fingerprint"`
	}
	msg := struct {
		Version         string            `json:"version"`
		GroupKey        string            `json:"groupKey"`
		TruncatedAlerts int               `json:"truncatedAlerts"`
		Status          string            `json:"status"`
		Receiver        string            `json:"receiver"`
		GroupLabels     map[string]string `json:"groupLabels"`
		Alerts          []al              `json:"alerts"`
	}{Version: "4", GroupKey: "{}:{}", Status: "firing", Receiver: "memfrag", GroupLabels: map[string]string{}, Alerts: []al{}}
	for _, l := range alerts {
		a := al{Status: "firing", Labels: map[string]string{}, StartsAt: "2026-03-01T11:00:00Z", EndsAt: "0001-01-01T00:00:00Z"}
		for k, v := range l {
			switch k {
			case "status":
				a.Status = v
			case "fingerprint":
				a.Fingerprint = v
			case "startsAt":
				a.StartsAt = v
			default:
				a.Labels[k] = v
			}
		}
		msg.Alerts = append(msg.Alerts, a)
	}
	b, err := json.Marshal(msg)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// compactAlert is an alert for this host asking for action.
func alertFor(action, fingerprint string, extra ...string) map[string]string {
	l := map[string]string{"alertname": "MemoryFragmented", "node": testNode, "remediate": action, "fingerprint": fingerprint}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

func post(t testing.TB, h http.Handler, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/remediate", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// decisions decodes a 200 reply.
func decisions(t testing.TB, w *httptest.ResponseRecorder) []replyDecision {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", w.Code, w.Body)
	}
	var rep reply
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatalf("reply is not JSON: %v: %s", err, w.Body)
	}
	return rep.Decisions
}

// decideOne posts one alert and returns its decision as "accepted" or
// "skipped:<reason>".
func decideOne(t testing.TB, r *Receiver, labels map[string]string) string {
	t.Helper()
	ds := decisions(t, post(t, r, payload(labels)))
	if len(ds) != 1 {
		t.Fatalf("%d decisions, want 1", len(ds))
	}
	if ds[0].Decision == decisionSkipped {
		return "skipped:" + ds[0].Reason
	}
	return ds[0].Decision
}
