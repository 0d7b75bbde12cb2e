package remediate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/memfrag/memfrag_exporter/remediate/fleet"
)

// The receiver's use of the fleet budget, against a real kube-apiserver
// (e2e/70-fleet.sh starts one and sets these variables; without them the
// tests skip, or fail when MEMFRAG_REQUIRE_KUBE=1). They use the admin token
// and a fresh lease prefix in namespace default, so they need no setup.
func kubeFleet(t *testing.T, mod func(*fleet.Config)) fleet.Config {
	t.Helper()
	url, ca, admin := os.Getenv("MEMFRAG_KUBE_URL"), os.Getenv("MEMFRAG_KUBE_CA"), os.Getenv("MEMFRAG_KUBE_ADMIN_TOKEN")
	if url == "" || ca == "" || admin == "" {
		if os.Getenv("MEMFRAG_REQUIRE_KUBE") != "" {
			t.Fatal("MEMFRAG_REQUIRE_KUBE is set but MEMFRAG_KUBE_URL/CA/ADMIN_TOKEN are not")
		}
		t.Skip("no kube-apiserver (run e2e/70-fleet.sh, which starts one)")
	}
	tok := filepath.Join(t.TempDir(), "token")
	mustWrite(t, tok, admin+"\n")
	c := fleet.Config{MaxConcurrent: 1, LeasePrefix: fmt.Sprintf("rt-%d", time.Now().UnixNano()%1e12),
		LeaseDuration: 3 * time.Second, Wait: 10 * time.Second, PollInterval: 100 * time.Millisecond,
		Client: fleet.ClientConfig{APIServer: url, CAFile: ca, TokenFile: tok, Namespace: "default"}}
	if mod != nil {
		mod(&c)
	}
	return c
}

// holderOf reads slot 0 with a budget of its own: "" when free or absent.
func holderOf(t *testing.T, c fleet.Config) string {
	t.Helper()
	c.Identity = "observer"
	b, err := fleet.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := b.Status()
	if st[0].Err != "" {
		t.Fatal(st[0].Err)
	}
	return st[0].Holder
}

func prometheusRegistry(t *testing.T, r *Receiver) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(r); err != nil {
		t.Fatal(err)
	}
	return reg
}

// waitDecision waits until some decision ended with want (a result or a
// skip reason).
func waitDecision(t *testing.T, r *Receiver, want string) {
	t.Helper()
	waitFor(t, func() bool {
		for _, d := range r.Recent() {
			if d.Result == want || d.Reason == want {
				return true
			}
		}
		return false
	})
}

// The slot is held while the kernel write runs, and free once it ends.
func TestFleetSlotHeldWhileActing(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.Fleet = kubeFleet(t, nil)
	r := newReceiver(t, cfg)
	drop := filepath.Join(tr.proc, "sys/vm/drop_caches")
	fifo(t, drop)
	if got := decideOne(t, r, alertFor("drop_caches", "f1")); got != decisionAccepted {
		t.Fatalf("decision %s", got)
	}
	readFIFO(t, r, drop, func() {
		if h := holderOf(t, cfg.Fleet); h != testNode {
			t.Errorf("slot holder while acting: %q, want %s", h, testNode)
		}
		if n, err := testutil.GatherAndCount(prometheusRegistry(t, r), "memfrag_remediation_fleet_slot_held"); err != nil || n != 1 {
			t.Errorf("memfrag_remediation_fleet_slot_held: %d series, %v", n, err)
		}
	})
	waitDecision(t, r, resultSuccess)
	waitFor(t, func() bool { return holderOf(t, cfg.Fleet) == "" })
}

// With every slot taken for the whole wait the alert ends as fleet_busy,
// writes nothing, and leaves no cooldown or dedupe entry: the same alert,
// sent again once a slot is free, runs.
func TestFleetBusyThenRetry(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.Fleet = kubeFleet(t, func(c *fleet.Config) { c.Wait = 1500 * time.Millisecond })
	other := cfg.Fleet
	other.Identity = "other-node"
	ob, err := fleet.New(other, nil)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := ob.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t, cfg)
	began := time.Now()
	if got := decideOne(t, r, alertFor("drop_caches", "f1")); got != decisionAccepted {
		t.Fatalf("decision %s", got)
	}
	t.Logf("webhook answered in %v while the wait runs in the background", time.Since(began))
	if got := decideOne(t, r, alertFor("compact", "f2")); got != "skipped:"+reasonBusy {
		t.Errorf("another alert while waiting: %s, want skipped:busy", got)
	}
	waitDecision(t, r, reasonFleetBusy)
	if n := testutil.ToFloat64(r.metrics.skipped.WithLabelValues("drop_caches", reasonFleetBusy)); n != 1 {
		t.Errorf("skipped{fleet_busy} = %v, want 1", n)
	}
	if w := tr.written(t); len(w) != 0 {
		t.Errorf("wrote %v without a slot", w)
	}
	slot.Release()
	if got := decideOne(t, r, alertFor("drop_caches", "f1")); got != decisionAccepted {
		t.Fatalf("the same alert after fleet_busy: %s, want accepted", got)
	}
	waitDecision(t, r, resultSuccess)
}

// Dry-run takes no slot: the Lease is never created.
func TestFleetDryRunTakesNoSlot(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.DryRun = true
	cfg.Fleet = kubeFleet(t, nil)
	r := newReceiver(t, cfg)
	if got := decideOne(t, r, alertFor("drop_caches", "f1")); got != decisionAccepted {
		t.Fatalf("decision %s", got)
	}
	waitDecision(t, r, resultDryRun)
	c := cfg.Fleet
	c.Identity = "observer"
	b, _ := fleet.New(c, nil)
	if st := b.Status(); st[0].Holder != "" || !st[0].RenewTime.IsZero() || st[0].Err != "" {
		t.Errorf("dry run touched the slot: %+v", st[0])
	}
}

// No API server: fleet_unavailable, nothing written.
func TestFleetUnavailableFailsClosed(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.Fleet = kubeFleet(t, func(c *fleet.Config) { c.Client.APIServer = "https://127.0.0.1:1" })
	r := newReceiver(t, cfg)
	if got := decideOne(t, r, alertFor("drop_caches", "f1")); got != decisionAccepted {
		t.Fatalf("decision %s", got)
	}
	waitDecision(t, r, reasonFleetUnavailable)
	if w := tr.written(t); len(w) != 0 {
		t.Errorf("wrote %v with the API server unreachable", w)
	}
}
