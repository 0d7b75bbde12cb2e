package remediate

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// lockedBuf is a log sink tests can read while the receiver writes.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLoggedReceiver(t *testing.T, cfg Config) (*Receiver, *lockedBuf) {
	t.Helper()
	buf := &lockedBuf{}
	r, err := New(cfg, log.NewLogfmtLogger(buf))
	if err != nil {
		t.Fatal(err)
	}
	r.syncFn = func() {}
	t.Cleanup(func() { r.wg.Wait(); r.Shutdown(t.Context()) })
	return r, buf
}

// One cooldown per piece of memory: compaction of node 0, a global
// compaction, drop_caches and drop_caches_then_compact, one after the
// other under a 30-minute cooldown, make one action, not four; and the
// other way round a global action holds back a node's.
func TestOneCooldownPerMemory(t *testing.T) {
	for _, tc := range []struct {
		name  string
		order []map[string]string
		want  []string
		wrote map[string]string
	}{
		{"node first",
			[]map[string]string{alertFor("compact", "a", "numa_node", "0"), alertFor("compact", "b"), alertFor("drop_caches", "c"), alertFor("drop_caches_then_compact", "d")},
			[]string{"accepted", "skipped:cooldown", "skipped:cooldown", "skipped:cooldown"},
			map[string]string{"sys/devices/system/node/node0/compact": "1\n"}},
		{"global first",
			[]map[string]string{alertFor("drop_caches", "c"), alertFor("compact", "a", "numa_node", "0"), alertFor("compact", "a1", "numa_node", "1"), alertFor("compact", "b"), alertFor("drop_caches_then_compact", "d")},
			[]string{"accepted", "skipped:cooldown", "skipped:cooldown", "skipped:cooldown", "skipped:cooldown"},
			map[string]string{"proc/sys/vm/drop_caches": "3\n"}},
		{"other node is other memory",
			[]map[string]string{alertFor("compact", "a", "numa_node", "0"), alertFor("compact", "b", "numa_node", "1"), alertFor("drop_caches", "c")},
			[]string{"accepted", "accepted", "skipped:cooldown"},
			map[string]string{"sys/devices/system/node/node0/compact": "1\n", "sys/devices/system/node/node1/compact": "1\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t, "buddyinfo-fragmented")
			r := newReceiver(t, testConfig(tr, newFakeClock()))
			for i, a := range tc.order {
				got := decideOne(t, r, a)
				r.wg.Wait()
				if got != tc.want[i] {
					t.Errorf("alert %d (%s): %s, want %s", i, a["remediate"], got, tc.want[i])
				}
			}
			if w := tr.written(t); !maps.Equal(w, tc.wrote) {
				t.Errorf("written %q, want %q", w, tc.wrote)
			}
		})
	}
}

// A restart with --remediate.state-file keeps the cooldown, the backoff and
// the dedupe set.
func TestStateFileKeepsWaitsAcrossRestart(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	clock := newFakeClock()
	cfg := testConfig(tr, clock)
	cfg.StateFile = filepath.Join(t.TempDir(), "state.json")
	r1, _ := newLoggedReceiver(t, cfg)
	if got := decideOne(t, r1, alertFor("compact", "a")); got != "accepted" {
		t.Fatalf("first start: %s, want accepted", got)
	}
	r1.wg.Wait()
	if err := r1.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil || st.Version != 1 || st.Memory[scopeAll].Misses != 1 || len(st.Seen) != 1 {
		t.Fatalf("state file %s: %v", data, err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(cfg.StateFile), ".*tmp*")); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}

	clock.Advance(time.Minute)
	r2, logs := newLoggedReceiver(t, cfg)
	if !strings.Contains(logs.String(), "remediation state restored") {
		t.Errorf("restore not logged:\n%s", logs)
	}
	for _, step := range []struct {
		advance time.Duration
		labels  map[string]string
		want    string
	}{
		{0, alertFor("compact", "a"), "skipped:duplicate"},
		{0, alertFor("drop_caches", "b"), "skipped:cooldown"},
		{30 * time.Minute, alertFor("compact", "b"), "skipped:backoff"}, // the run gained nothing
		{30 * time.Minute, alertFor("compact", "b"), "accepted"},
	} {
		clock.Advance(step.advance)
		if got := decideOne(t, r2, step.labels); got != step.want {
			t.Errorf("after restart %v: %s, want %s", step.labels["fingerprint"], got, step.want)
		}
		r2.wg.Wait()
	}
	if got := testutil.ToFloat64(r2.metrics.stateOK); got != 1 {
		t.Errorf("state_ok %v, want 1", got)
	}
}

// A state file that cannot be read as this version fails closed: no action
// until one cooldown has passed since start, said in a log line and a
// metric, and the exporter starts.
func TestStateFileBadFailsClosed(t *testing.T) {
	valid := `{"version":1,"saved_at":"2026-03-01T11:00:00Z","memory":{},"seen":[]}`
	for _, tc := range []struct{ name, content string }{
		{"garbage", "\x00\x01not json"},
		{"truncated", valid[:30]},
		{"empty", ""},
		{"unknown version", strings.Replace(valid, `"version":1`, `"version":2`, 1)},
		{"no version", strings.Replace(valid, `"version":1,`, ``, 1)},
		{"unknown field", strings.Replace(valid, `"seen":[]`, `"seen":[],"extra":1`, 1)},
		{"bad scope", strings.Replace(valid, `"memory":{}`, `"memory":{"node../../x":{}}`, 1)},
		{"bad key", strings.Replace(valid, `"seen":[]`, `"seen":[{"key":"zz","scope":"all"}]`, 1)},
		{"misses out of range", strings.Replace(valid, `"memory":{}`, `"memory":{"all":{"misses":99}}`, 1)},
		{"too large", valid + strings.Repeat(" ", maxStateBytes)},
		{"directory", ""},
		{"fifo", ""}, // opening it must not wait for a writer
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t, "buddyinfo-fragmented")
			clock := newFakeClock()
			cfg := testConfig(tr, clock)
			cfg.StateFile = filepath.Join(t.TempDir(), "state.json")
			switch tc.name {
			case "directory":
				if err := os.Mkdir(cfg.StateFile, 0o755); err != nil {
					t.Fatal(err)
				}
			case "fifo":
				if err := syscall.Mkfifo(cfg.StateFile, 0o600); err != nil {
					t.Fatal(err)
				}
			default:
				mustWrite(t, cfg.StateFile, tc.content)
			}
			r, logs := newLoggedReceiver(t, cfg)
			if !strings.Contains(logs.String(), "failing closed") {
				t.Errorf("no fail-closed log line:\n%s", logs)
			}
			if got := testutil.ToFloat64(r.metrics.stateErrors.WithLabelValues(stateOpLoad)); got != 1 {
				t.Errorf("state_errors_total{op=load} %v, want 1", got)
			}
			if got := testutil.ToFloat64(r.metrics.stateOK); got != 0 {
				t.Errorf("state_ok %v, want 0", got)
			}
			if got := decideOne(t, r, alertFor("drop_caches", "a")); got != "skipped:cooldown" {
				t.Errorf("right after start: %s, want skipped:cooldown", got)
			}
			clock.Advance(30 * time.Minute)
			if got := decideOne(t, r, alertFor("drop_caches", "b")); got != "accepted" {
				t.Errorf("one cooldown after start: %s, want accepted", got)
			}
			r.wg.Wait()
			if tc.name == "directory" {
				return
			}
			if _, err := readStateFile(cfg.StateFile); err != nil {
				t.Errorf("the accepted action saved a state that does not read back: %v", err)
			}
		})
	}
}

// Clock jumps or a shorter cooldown since the save cannot lock the cure out
// for longer than this configuration's longest wait.
func TestStateFileWaitsAreClamped(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	clock := newFakeClock()
	cfg := testConfig(tr, clock)
	cfg.StateFile = filepath.Join(t.TempDir(), "state.json")
	mustWrite(t, cfg.StateFile, `{"version":1,"saved_at":"2026-03-01T11:00:00Z","memory":{"all":{"cooldown_until":"2099-01-01T00:00:00Z","backoff_until":"2099-01-01T00:00:00Z","misses":4}},"seen":[]}`)
	r, _ := newLoggedReceiver(t, cfg)
	clock.Advance(8*time.Hour - time.Second)
	if got := decideOne(t, r, alertFor("drop_caches", "a")); got != "skipped:cooldown" {
		t.Fatalf("within 16 cooldowns: %s", got)
	}
	clock.Advance(time.Second)
	if got := decideOne(t, r, alertFor("drop_caches", "b")); got != "accepted" {
		t.Fatalf("after 16 cooldowns: %s, want accepted", got)
	}
}

// A state directory that cannot be written is an error in the log and the
// metric; the receiver still runs and honours the wait it holds in memory.
func TestStateFileUnwritable(t *testing.T) {
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// root writes through permission bits: a read-only mount it is.
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY, "size=64k"); err != nil {
			t.Skipf("cannot mount a read-only tmpfs: %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(dir, 0) })
	} else if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.StateFile = filepath.Join(dir, "state.json")
	r, logs := newLoggedReceiver(t, cfg)
	if got := testutil.ToFloat64(r.metrics.stateErrors.WithLabelValues(stateOpSave)); got != 1 {
		t.Errorf("state_errors_total{op=save} after start %v, want 1", got)
	}
	if got := decideOne(t, r, alertFor("drop_caches", "a")); got != "accepted" {
		t.Fatalf("%s, want accepted", got)
	}
	r.wg.Wait()
	if got := decideOne(t, r, alertFor("drop_caches", "b")); got != "skipped:cooldown" {
		t.Errorf("%s, want skipped:cooldown", got)
	}
	if got := testutil.ToFloat64(r.metrics.stateErrors.WithLabelValues(stateOpSave)); got != 3 {
		t.Errorf("state_errors_total{op=save} %v, want 3 (start, begin, finish)", got)
	}
	if got := testutil.ToFloat64(r.metrics.stateOK); got != 0 {
		t.Errorf("state_ok %v, want 0", got)
	}
	if !strings.Contains(logs.String(), "cannot save the remediation state file") {
		t.Errorf("no save error logged:\n%s", logs)
	}
}

// After StopAccepting (SIGTERM) an alert that would act skips as
// shutting_down and nothing is written.
func TestStopAccepting(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	r := newReceiver(t, testConfig(tr, newFakeClock()))
	r.StopAccepting()
	if got := decideOne(t, r, alertFor("drop_caches", "a")); got != "skipped:shutting_down" {
		t.Fatalf("%s, want skipped:shutting_down", got)
	}
	r.wg.Wait()
	if w := tr.written(t); len(w) != 0 {
		t.Errorf("written %q after StopAccepting", w)
	}
}

// FuzzParseState: a state file is input the receiver did not necessarily
// write; whatever it holds, parsing returns an error or a state that
// applies without panicking.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"saved_at":"2026-03-01T11:00:00Z","memory":{"all":{"misses":1},"node3":{}},"seen":[{"key":"` + strings.Repeat("ab", 32) + `","scope":"node3"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseState(data)
		if err != nil {
			return
		}
		r := &Receiver{cfg: Config{Cooldown: time.Minute}, keys: map[string]*keyState{}, seen: map[[32]byte]string{}}
		r.applyState(st, time.Now())
		if len(r.seen) > dedupeSize {
			t.Fatalf("%d dedupe entries", len(r.seen))
		}
	})
}
