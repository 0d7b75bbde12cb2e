package remediate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEscalationCondition(t *testing.T) {
	due := cureOutcome{result: resultSuccess, measured: true, stillNeeded: true, gain: 0, missesBefore: maxBackoffShift}
	tests := []struct {
		name   string
		change func(o *cureOutcome)
		want   bool
	}{
		{"backoff at its maximum, still failing, no gain", func(*cureOutcome) {}, true},
		{"lost memory at the order", func(o *cureOutcome) { o.gain = -4096 }, true},
		{"gained one page", func(o *cureOutcome) { o.gain = 4096 }, false},
		{"backoff one step short of its maximum", func(o *cureOutcome) { o.missesBefore = maxBackoffShift - 1 }, false},
		{"first failure", func(o *cureOutcome) { o.missesBefore = 0 }, false},
		{"re-check passes after the action", func(o *cureOutcome) { o.stillNeeded = false }, false},
		{"not measured after", func(o *cureOutcome) { o.measured = false }, false},
		{"the action failed to write", func(o *cureOutcome) { o.result = resultError }, false},
		{"dry run result", func(o *cureOutcome) { o.result = resultDryRun }, false},
		{"dry run, everything else due", func(o *cureOutcome) { o.dryRun = true }, false},
	}
	for _, tt := range tests {
		o := due
		tt.change(&o)
		if got := escalationDue(o); got != tt.want {
			t.Errorf("%s: escalationDue(%+v) = %v, want %v", tt.name, o, got, tt.want)
		}
	}
}

// sentinelTree is a tree with a boot id and a directory for the sentinel.
func sentinelTree(t *testing.T, buddyinfo, bootID string) (*tree, string) {
	tr := newTree(t, buddyinfo)
	mustWrite(t, filepath.Join(tr.proc, "sys/kernel/random/boot_id"), bootID+"\n")
	return tr, filepath.Join(t.TempDir(), "reboot-required")
}

// runOnce posts the alert and waits for its run; the clock then moves past
// the longest backoff so the next post is decided anew.
func runOnce(t *testing.T, r *Receiver, clock *fakeClock, alert map[string]string) string {
	t.Helper()
	got := decideOne(t, r, alert)
	r.wg.Wait()
	clock.Advance(backoff(r.cfg.Cooldown, maxBackoffShift) + time.Minute)
	return got
}

// On a node where compaction gains nothing (the fixture's buddyinfo does not
// change), the sentinel appears after the run that followed the longest
// backoff, not before, and once.
func TestEscalationCreatesSentinel(t *testing.T) {
	tr, sentinel := sentinelTree(t, "buddyinfo-fragmented", "boot-1")
	clock := newFakeClock()
	cfg := testConfig(tr, clock)
	cfg.RebootSentinel = sentinel
	r := newReceiver(t, cfg)
	alert := alertFor("compact", "fp-1")
	for run := 1; run <= maxBackoffShift+2; run++ {
		if got := runOnce(t, r, clock, alert); got != decisionAccepted {
			t.Fatalf("run %d: %s, want accepted", run, got)
		}
		_, err := os.Stat(sentinel)
		exists := err == nil
		wantExists := run > maxBackoffShift
		if exists != wantExists {
			t.Fatalf("after run %d (misses %d): sentinel exists %v, want %v", run, r.keys[scopeAll].misses, exists, wantExists)
		}
		if run == maxBackoffShift+1 {
			data, _ := os.ReadFile(sentinel)
			if !strings.HasPrefix(string(data), sentinelMarker) || !strings.Contains(string(data), "boot_id=boot-1\n") {
				t.Errorf("sentinel content %q", data)
			}
		}
	}
	if n := testutil.ToFloat64(r.escalation.created); n != 1 {
		t.Errorf("created_total %v after two due runs with the sentinel left in place, want 1", n)
	}
	if n := testutil.ToFloat64(r.escalation.errors); n != 0 {
		t.Errorf("errors_total %v", n)
	}
}

// A dry run never creates the sentinel, even with the backoff at its
// maximum and the cure failing.
func TestEscalationNeverInDryRun(t *testing.T) {
	tr, sentinel := sentinelTree(t, "buddyinfo-fragmented", "boot-1")
	clock := newFakeClock()
	cfg := testConfig(tr, clock)
	cfg.RebootSentinel, cfg.DryRun = sentinel, true
	r := newReceiver(t, cfg)
	r.keys[scopeAll] = &keyState{misses: maxBackoffShift}
	for run := 1; run <= 3; run++ {
		if got := runOnce(t, r, clock, alertFor("compact", "fp-1")); got != decisionAccepted {
			t.Fatalf("run %d: %s", run, got)
		}
	}
	if _, err := os.Stat(sentinel); err == nil {
		t.Error("a dry run created the sentinel")
	}
	if len(tr.written(t)) != 0 {
		t.Errorf("a dry run wrote %v", tr.written(t))
	}
}

// A node whose cure works never escalates, whatever its history.
func TestEscalationNotWhenCured(t *testing.T) {
	tr, sentinel := sentinelTree(t, "buddyinfo-healthy", "boot-1")
	clock := newFakeClock()
	cfg := testConfig(tr, clock)
	cfg.RebootSentinel = sentinel
	r := newReceiver(t, cfg)
	r.keys[scopeAll] = &keyState{misses: maxBackoffShift}
	if got := runOnce(t, r, clock, alertFor("compact", "fp-1")); got != "skipped:"+reasonNotNeeded {
		t.Fatalf("%s, want skipped:not_needed on a healthy node", got)
	}
	if _, err := os.Stat(sentinel); err == nil {
		t.Error("sentinel created on a healthy node")
	}
}

func TestEscalationStaleSentinel(t *testing.T) {
	tests := []struct {
		name     string
		content  string
		wantKept bool
	}{
		{"ours, from an earlier boot", sentinelMarker + "action=compact scope=all gain_bytes=0\nboot_id=boot-0\n", false},
		{"ours, from this boot", sentinelMarker + "action=compact scope=all gain_bytes=0\nboot_id=boot-1\n", true},
		{"the OS's own", "*** System restart required ***\n", true},
		{"empty (touched by someone)", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, sentinel := sentinelTree(t, "buddyinfo-fragmented", "boot-1")
			mustWrite(t, sentinel, tt.content)
			cfg := testConfig(tr, newFakeClock())
			cfg.RebootSentinel = sentinel
			newReceiver(t, cfg)
			_, err := os.Stat(sentinel)
			if kept := err == nil; kept != tt.wantKept {
				t.Errorf("kept %v, want %v", kept, tt.wantKept)
			}
		})
	}
}

func TestEscalationConfigRejects(t *testing.T) {
	tr, _ := sentinelTree(t, "buddyinfo-fragmented", "boot-1")
	for name, path := range map[string]string{
		"relative":          "var/run/reboot-required",
		"missing directory": filepath.Join(t.TempDir(), "absent", "reboot-required"),
	} {
		cfg := testConfig(tr, newFakeClock())
		cfg.RebootSentinel = path
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted sentinel %q", name, path)
		}
	}
	noBoot := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(noBoot, newFakeClock())
	cfg.RebootSentinel = filepath.Join(t.TempDir(), "reboot-required")
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "boot id") {
		t.Errorf("without a boot id: %v, want an error naming it", err)
	}
}
