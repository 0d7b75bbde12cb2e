package remediate

import (
	"errors"
	"fmt"

	"github.com/go-kit/log"

	"github.com/memfrag/memfrag_exporter/remediate/fleet"
)

// Skip reasons of the fleet budget: the alert passed every local check but
// did not get one of the fleet's slots.
const (
	reasonFleetBusy        = "fleet_busy"        // every slot stayed taken for --remediate.fleet.wait
	reasonFleetUnavailable = "fleet_unavailable" // the API server could not be reached or refused: fail closed
)

// newFleet sets up the fleet budget when it is on; the node name is the
// holder identity.
func newFleet(cfg *Config, logger log.Logger) (*fleet.Budget, error) {
	if cfg.Fleet.MaxConcurrent == 0 {
		return nil, nil
	}
	fc := cfg.Fleet
	fc.Identity = cfg.NodeName
	b, err := fleet.New(fc, log.With(logger, "component", "fleet"))
	if err != nil {
		return nil, fmt.Errorf("fleet budget: %w", err)
	}
	return b, nil
}

// takeSlot waits for a fleet slot for an accepted job, after every local
// check passed and before anything is measured or written. Meanwhile the host
// counts as busy (the job is running). A nil slot comes with the skip reason.
// After a wait the node is checked again: another cure (or the kernel) may
// have done the job meanwhile.
func (r *Receiver) takeSlot(j *job) (*fleet.Slot, string) {
	if r.fleet == nil || r.cfg.DryRun {
		return nil, ""
	}
	s, err := r.fleet.Acquire(r.fleetCtx)
	var un *fleet.UnavailableError
	switch {
	case err == nil && r.isClosed():
		s.Release() // SIGTERM came while it waited
		return nil, reasonShutdown
	case err == nil:
	case errors.Is(err, fleet.ErrBusy):
		return nil, reasonFleetBusy
	case errors.As(err, &un):
		return nil, reasonFleetUnavailable
	default: // the receiver is shutting down
		return nil, reasonShutdown
	}
	zones, err := r.act.Buddyinfo()
	if err != nil {
		s.Release()
		return nil, reasonRecheckError
	}
	if !r.needsCure(zones, j.node, j.zone) {
		s.Release()
		return nil, reasonNotNeeded
	}
	return s, ""
}

func (r *Receiver) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// giveUp ends a job that never acted: it becomes a skip with reason, and
// neither its cooldown nor its dedupe entry stays, so that Alertmanager's
// next notification of the same alert may try again.
func (r *Receiver) giveUp(j *job, reason string) {
	r.mu.Lock()
	d := j.decision
	d.Decision, d.Reason, d.Result, d.ScoreBefore, d.ScoreAfter = decisionSkipped, reason, "", 0, 0
	r.running = false
	if r.inflight.Load() == 0 {
		r.metrics.inProgress.Set(0)
	}
	if ks := r.keys[j.scope]; ks != nil {
		// begin started them; the checks had passed, so nothing earlier
		// was pending.
		ks.cooldownUntil, ks.backoffUntil = j.start, j.start
	}
	r.forget(j.dedupe)
	r.mu.Unlock()
	r.saveState("fleet")
	r.logDecision(d)
	r.metrics.skipped.WithLabelValues(string(j.action), reason).Inc()
}

// FleetOn says whether the fleet budget is on.
func (r *Receiver) FleetOn() bool { return r.fleet != nil }

// FleetStatus is the fleet budget for the landing page; nil when it is off.
func (r *Receiver) FleetStatus() (maxConcurrent int, namespace string, slots []fleet.SlotStatus, ok bool) {
	if r.fleet == nil {
		return 0, "", nil, false
	}
	return r.fleet.MaxConcurrent(), r.fleet.Namespace(), r.fleet.Status(), true
}
