package remediate

import (
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWrites shows the exact bytes written to exactly which file, and that
// nothing is written in a dry run or on a skip.
func TestWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*Config)
		prep   func(*tree)
		labels map[string]string
		want   map[string]string
		result string
	}{
		{"compact", nil, nil, alertFor("compact", "a"),
			map[string]string{"proc/sys/vm/compact_memory": "1\n"}, resultSuccess},
		{"compact node 1", nil, nil, alertFor("compact", "a", "numa_node", "1"),
			map[string]string{"sys/devices/system/node/node1/compact": "1\n"}, resultSuccess},
		{"compact node 1 without per-node file", nil, func(tr *tree) {
			os.Remove(filepath.Join(tr.sys, "devices/system/node/node1/compact"))
		}, alertFor("compact", "a", "numa_node", "1"),
			map[string]string{"proc/sys/vm/compact_memory": "1\n"}, resultSuccess},
		{"drop_caches level 3", nil, nil, alertFor("drop_caches", "a"),
			map[string]string{"proc/sys/vm/drop_caches": "3\n"}, resultSuccess},
		{"drop_caches level 1", func(c *Config) { c.DropCachesLevel = 1 }, nil, alertFor("drop_caches", "a"),
			map[string]string{"proc/sys/vm/drop_caches": "1\n"}, resultSuccess},
		{"drop then compact (still needed)", nil, nil, alertFor("drop_caches_then_compact", "a", "numa_node", "0"),
			map[string]string{"proc/sys/vm/drop_caches": "3\n", "sys/devices/system/node/node0/compact": "1\n"}, resultSuccess},
		{"dry run", func(c *Config) { c.DryRun = true }, nil, alertFor("drop_caches_then_compact", "a"),
			map[string]string{}, resultDryRun},
		{"skipped", nil, nil, alertFor("compact", "a", "node", "elsewhere"), map[string]string{}, ""},
		{"compact file missing", nil, func(tr *tree) {
			os.Remove(filepath.Join(tr.proc, "sys/vm/compact_memory"))
		}, alertFor("compact", "a"), map[string]string{}, resultError},
		{"symlink not followed", nil, func(tr *tree) {
			p := filepath.Join(tr.proc, "sys/vm/compact_memory")
			os.Remove(p)
			os.Symlink(filepath.Join(tr.proc, "buddyinfo"), p)
		}, alertFor("compact", "a"), map[string]string{}, resultError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t, "buddyinfo-fragmented")
			if tc.prep != nil {
				tc.prep(tr)
			}
			cfg := testConfig(tr, newFakeClock())
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			r := newReceiver(t, cfg)
			decideOne(t, r, tc.labels)
			r.wg.Wait()
			if got := tr.written(t); !maps.Equal(got, tc.want) {
				t.Errorf("written %q, want %q", got, tc.want)
			}
			if tc.result == "" {
				return
			}
			rec := r.Recent()
			if len(rec) != 1 || rec[0].Result != tc.result {
				t.Fatalf("recent %+v, want one decision with result %s", rec, tc.result)
			}
			if tc.result == resultError && rec[0].Error == "" {
				t.Error("error result without an error message")
			}
			if b, _ := os.ReadFile(filepath.Join(tr.proc, "buddyinfo")); len(b) == 0 {
				t.Error("buddyinfo was overwritten")
			}
		})
	}
}

func TestSyncBeforeDrop(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.Sync = true
	r := newReceiver(t, cfg)
	var dropAtSync string
	r.syncFn = func() { dropAtSync = tr.written(t)["proc/sys/vm/drop_caches"] }
	decideOne(t, r, alertFor("drop_caches", "a"))
	r.wg.Wait()
	rec := r.Recent()[0]
	if rec.Result != resultSuccess || len(rec.Targets) != 2 || rec.Targets[0] != "sync" {
		t.Fatalf("decision %+v, want success with targets [sync drop_caches]", rec)
	}
	if dropAtSync != "" {
		t.Errorf("drop_caches was written (%q) before sync ran", dropAtSync)
	}
	if got := tr.written(t)["proc/sys/vm/drop_caches"]; got != "3\n" {
		t.Errorf("drop_caches = %q after the action", got)
	}
}

// A sync that does not finish in its timeout stops the action before
// drop_caches, and keeps the next one out (busy) until it returns.
func TestSyncTimeout(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	clock := newFakeClock()
	cfg := testConfig(tr, clock)
	cfg.Sync = true
	cfg.SyncTimeout = 50 * time.Millisecond
	r := newReceiver(t, cfg)
	release := make(chan struct{})
	r.syncFn = func() { <-release }
	decideOne(t, r, alertFor("drop_caches", "a"))
	r.wg.Wait()
	rec := r.Recent()[0]
	if rec.Result != resultError || !strings.Contains(rec.Error, "sync") {
		t.Fatalf("decision %+v, want a sync error", rec)
	}
	if w := tr.written(t); len(w) != 0 {
		t.Fatalf("written %q after a failed sync", w)
	}
	clock.Advance(24 * time.Hour)
	if got := decideOne(t, r, alertFor("compact", "b")); got != "skipped:busy" {
		t.Fatalf("while sync(2) is still running: %s, want skipped:busy", got)
	}
	close(release)
	waitFor(t, func() bool { return r.inflight.Load() == 0 })
	if got := decideOne(t, r, alertFor("compact", "c")); got != "accepted" {
		t.Fatalf("after sync(2) returned: %s, want accepted", got)
	}
}

// fifo replaces a kernel file with a named pipe: the receiver's write blocks
// until the test reads it, which lets the test change buddyinfo "while the
// kernel works" and see the exact bytes.
func fifo(t *testing.T, path string) {
	t.Helper()
	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("cannot make a FIFO: %v", err)
	}
}

// readFIFO reads what the receiver writes into the FIFO at path. The
// receiver blocks opening the FIFO until the test opens it, so whileBlocked
// runs after the receiver measured "before" and before it measures "after".
func readFIFO(t *testing.T, r *Receiver, path string, whileBlocked func()) string {
	t.Helper()
	waitFor(t, func() bool { return r.inflight.Load() > 0 })
	if whileBlocked != nil {
		whileBlocked()
	}
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 16)
	n, err := f.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// An action that helped records its gain from buddyinfo before and after,
// and resets the backoff.
func TestGain(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	clock := newFakeClock()
	r := newReceiver(t, testConfig(tr, clock))
	target := filepath.Join(tr.proc, "sys/vm/compact_memory")
	fifo(t, target)
	if got := decideOne(t, r, alertFor("compact", "a")); got != "accepted" {
		t.Fatal(got)
	}
	if got := decideOne(t, r, alertFor("compact", "b")); got != "skipped:busy" {
		t.Fatalf("while compacting: %s, want skipped:busy", got)
	}
	wrote := readFIFO(t, r, target, func() { tr.setBuddyinfo(t, "buddyinfo-healthy") })
	r.wg.Wait()
	if wrote != "1\n" {
		t.Errorf("wrote %q to compact_memory, want \"1\\n\"", wrote)
	}
	d := r.Recent()[0]
	// Suitable pages at order 4 (blocks of 16+ pages), 4 KiB pages:
	// fragmented: DMA 3968 + DMA32 160 + Normal 1024 + node 1 0 = 5152 pages;
	// healthy: DMA 3968 + DMA32 (10 x 1008 + 700 x 1024) + 2 Normal zones x
	// (100 x 1008 + 500 x 1024) = 1956448 pages.
	const before, after = 5152 * 4096, 1956448 * 4096
	if d.BeforeBytes != before || d.AfterBytes != after || d.GainBytes != after-before {
		t.Errorf("before %d after %d gain %d, want %d %d %d", d.BeforeBytes, d.AfterBytes, d.GainBytes, before, after, after-before)
	}
	if d.ScoreBefore <= d.ScoreAfter || d.ScoreAfter < 0 {
		t.Errorf("score %d -> %d, want a fall", d.ScoreBefore, d.ScoreAfter)
	}
	// Helped: the next run needs only the cooldown (and the node needs it).
	tr.setBuddyinfo(t, "buddyinfo-fragmented")
	os.Remove(target)
	mustWrite(t, target, "")
	clock.Advance(30*time.Minute + time.Second)
	if got := decideOne(t, r, alertFor("compact", "c")); got != "accepted" {
		t.Fatalf("after a run that helped: %s, want accepted", got)
	}
}

// drop_caches_then_compact re-measures after dropping and does not compact
// when the drop already cured the node.
func TestDropThenCompactStopsWhenCured(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	r := newReceiver(t, testConfig(tr, newFakeClock()))
	drop := filepath.Join(tr.proc, "sys/vm/drop_caches")
	fifo(t, drop)
	decideOne(t, r, alertFor("drop_caches_then_compact", "a"))
	if got := readFIFO(t, r, drop, func() { tr.setBuddyinfo(t, "buddyinfo-healthy") }); got != "3\n" {
		t.Errorf("wrote %q to drop_caches", got)
	}
	r.wg.Wait()
	if w := tr.written(t); len(w) != 0 {
		t.Errorf("compacted although the drop cured the node: %q", w)
	}
	if d := r.Recent()[0]; d.Result != resultSuccess || len(d.Targets) != 1 {
		t.Errorf("decision %+v, want success with only drop_caches written", d)
	}
}

// An action that outlives --remediate.timeout is recorded as an error; the
// kernel write it left behind keeps other actions out until it returns, and
// Shutdown waits for the action's timeout, not for the kernel.
func TestTimeoutBusyShutdown(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	clock := newFakeClock()
	cfg := testConfig(tr, clock)
	cfg.Timeout = 200 * time.Millisecond
	r := newReceiver(t, cfg)
	target := filepath.Join(tr.proc, "sys/vm/compact_memory")
	fifo(t, target)
	decideOne(t, r, alertFor("compact", "a"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	d := r.Recent()[0]
	if d.Result != resultError || !strings.Contains(d.Error, "did not finish") {
		t.Fatalf("decision %+v, want a timeout error", d)
	}
	if got := decideOne(t, r, alertFor("compact", "b")); got != "skipped:duplicate" && got != "skipped:shutting_down" {
		t.Fatalf("after shutdown: %s", got)
	}
	readFIFO(t, r, target, nil) // let the blocked write finish
	waitFor(t, func() bool { return r.inflight.Load() == 0 })
}

func TestBusyWhileKernelWriteOutlivesTimeout(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	clock := newFakeClock()
	cfg := testConfig(tr, clock)
	cfg.Timeout = 100 * time.Millisecond
	r := newReceiver(t, cfg)
	target := filepath.Join(tr.proc, "sys/vm/compact_memory")
	fifo(t, target)
	decideOne(t, r, alertFor("compact", "a"))
	r.wg.Wait()
	clock.Advance(24 * time.Hour)
	if got := decideOne(t, r, alertFor("drop_caches", "b")); got != "skipped:busy" {
		t.Fatalf("with a compaction write still in the kernel: %s, want skipped:busy", got)
	}
	readFIFO(t, r, target, nil)
	waitFor(t, func() bool { return r.inflight.Load() == 0 })
	if got := decideOne(t, r, alertFor("drop_caches", "c")); got != "accepted" {
		t.Fatalf("after the write returned: %s, want accepted", got)
	}
}

func TestShutdownDeadline(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.Timeout = time.Minute
	r := newReceiver(t, cfg)
	target := filepath.Join(tr.proc, "sys/vm/compact_memory")
	fifo(t, target)
	decideOne(t, r, alertFor("compact", "a"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a short deadline: %v, want DeadlineExceeded", err)
	}
	readFIFO(t, r, target, nil)
	r.wg.Wait()
}

// waitFor polls cond for up to 10 s; the bound only guards against a hang.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
