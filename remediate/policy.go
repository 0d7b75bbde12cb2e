package remediate

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"

	"github.com/go-kit/log/level"

	"github.com/memfrag/memfrag_exporter/fragmentation"
)

// job is an accepted alert on its way to the action runner.
type job struct {
	action   Action
	node     string // NUMA node id, "" for all
	zone     string // zone the alert names, "" for any but DMA
	scope    string // memory it touches: scopeAll or "node<N>"
	dedupe   [sha256.Size]byte
	decision *Decision
	start    time.Time
}

// snapshot is buddyinfo read at most once per request, lazily: most alerts
// are decided before it is needed.
type snapshot struct {
	zones  []fragmentation.Zone
	err    error
	loaded bool
}

// decideAll decides every alert of one payload under the policy lock, starts
// the accepted action (at most one) and logs and counts every decision.
func (r *Receiver) decideAll(alerts []alert) []*Decision {
	out := make([]*Decision, len(alerts))
	var start *job
	var snap snapshot
	r.mu.Lock()
	now := r.now()
	for i := range alerts {
		d, j := r.decide(&alerts[i], now, &snap)
		out[i] = d
		if j != nil {
			r.begin(j)
			start = j
		}
		if d.Decision == decisionAccepted {
			r.accepted.add(d)
		} else {
			r.skipped.add(d)
		}
	}
	r.mu.Unlock()
	for _, d := range out {
		r.logDecision(d)
		if d.Decision == decisionSkipped {
			r.metrics.skipped.WithLabelValues(d.Action, d.Reason).Inc()
		}
	}
	if start != nil {
		r.launch(start)
	}
	return out
}

// launch is the one place where an accepted action starts running. The
// decision is recorded and the cooldown of the memory it touches started
// (begin, under r.mu); launch saves that state, so that a restart honours
// it, and runs the action in the background. It runs before the webhook's
// reply is written.
func (r *Receiver) launch(j *job) {
	r.saveState("begin")
	go r.run(j)
}

// decide runs the checks in the documented order; the first that fails names
// the reason. It holds r.mu.
func (r *Receiver) decide(a *alert, now time.Time, snap *snapshot) (*Decision, *job) {
	labels := a.Labels
	d := &Decision{
		Time:        now,
		Alertname:   clip(labels["alertname"]),
		Fingerprint: clip(a.Fingerprint),
		Action:      unknownAction,
		NUMANode:    clip(labels["numa_node"]),
		Zone:        clip(labels["zone"]),
		Decision:    decisionSkipped,
	}
	action, known := knownAction(labels["remediate"])
	if known {
		d.Action = string(action)
	}
	skip := func(reason string) (*Decision, *job) {
		d.Reason = reason
		return d, nil
	}
	if a.Status == "resolved" {
		return skip(reasonResolved)
	}
	node, nodeSet := labels["numa_node"]
	zone, zoneSet := labels["zone"]
	if !known || (nodeSet && !validNodeID(node)) || (zoneSet && zone == "") {
		return skip(reasonInvalid)
	}
	if ok, _ := r.id.matches(labels, now); !ok {
		return skip(reasonOtherHost)
	}
	if !r.allowed[action] {
		return skip(reasonNotAllowed)
	}
	if nodeSet || zoneSet {
		// Whether the node and zone exist is a question about this host,
		// so it is asked only once the alert is known to be ours.
		zones, err := r.snapshot(snap)
		if err != nil {
			return skip(reasonRecheckError)
		}
		if !inBuddyinfo(zones, node, zone) {
			return skip(reasonInvalid)
		}
	}
	scope := r.scopeOf(action, node)
	dedupe := dedupeKey(a)
	if prev, ok := r.seen[dedupe]; ok {
		// A retry or the HA peer's copy of an accepted alert is coalesced
		// while the memory it touched still waits; once the cooldown and
		// backoff are over, a repeat of the still-firing alert is decided
		// anew (and still re-checked).
		if r.waiting(prev, now) != "" {
			return skip(reasonDuplicate)
		}
		r.forget(dedupe)
	}
	if r.closed {
		return skip(reasonShutdown)
	}
	if r.running || r.inflight.Load() > 0 {
		return skip(reasonBusy)
	}
	if why := r.waiting(scope, now); why != "" {
		return skip(why)
	}
	zones, err := r.snapshot(snap)
	if err != nil {
		return skip(reasonRecheckError)
	}
	if !r.needsCure(zones, node, zone) {
		return skip(reasonNotNeeded)
	}
	r.remember(dedupe, scope)
	d.Decision, d.Result, d.ScoreBefore, d.ScoreAfter = decisionAccepted, resultRunning, -1, -1
	return d, &job{action: action, node: node, zone: zone, scope: scope, dedupe: dedupe, decision: d, start: now}
}

func (r *Receiver) snapshot(s *snapshot) ([]fragmentation.Zone, error) {
	if !s.loaded {
		s.loaded = true
		s.zones, s.err = r.check.Buddyinfo()
		if s.err != nil {
			level.Error(r.logger).Log("msg", "remediation re-check cannot read buddyinfo; not acting", "err", s.err)
		}
	}
	return s.zones, s.err
}

// needsCure is the criterion shared with the alert rules: some zone in scope
// has an unusable free index at the check order of at least the threshold.
// The scope is the alert's zone if it names one, else every zone but DMA
// (16 MiB the kernel keeps for old devices; its fragmentation harms no one),
// on the alert's NUMA node if it names one.
func (r *Receiver) needsCure(zones []fragmentation.Zone, node, zone string) bool {
	for i := range zones {
		z := &zones[i]
		if node != "" && z.Node != node {
			continue
		}
		if zone != "" && z.Name != zone || zone == "" && z.Name == "DMA" {
			continue
		}
		if fragmentation.UnusableFreeIndex(z.Free, r.cfg.Order) >= r.thresholdMilli {
			return true
		}
	}
	return false
}

func inBuddyinfo(zones []fragmentation.Zone, node, zone string) bool {
	for i := range zones {
		if (node == "" || zones[i].Node == node) && (zone == "" || zones[i].Name == zone) {
			return true
		}
	}
	return false
}

// validNodeID accepts what the kernel prints as a NUMA node id: a decimal
// without sign, exponent, padding or path characters, below MAX_NUMNODES
// (1024 on the largest configurations).
func validNodeID(s string) bool {
	if s == "" || len(s) > 4 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && n < 1024
}

// scopeAll is the scope of an action that touches every NUMA node's memory:
// drop_caches, and compaction through /proc/sys/vm/compact_memory.
const scopeAll = "all"

// scopeOf names the memory an action touches: one NUMA node for compaction
// through that node's own compact file, else all of it. drop_caches is
// global whatever the alert says, and a numa_node alert on a kernel without
// the per-node file compacts the whole machine.
func (r *Receiver) scopeOf(a Action, node string) string {
	if a == Compact && node != "" && r.compactTarget(node) != r.procFile("sys/vm/compact_memory") {
		return "node" + node
	}
	return scopeAll
}

// waiting reports whether the memory of scope is still cooling down or
// backing off at now: "" when an action on it may start, else the reason.
// There is one wait per piece of memory, whichever action started it: a
// node's wait is its own and the global one; the global wait is the longest
// of all. It holds r.mu.
func (r *Receiver) waiting(scope string, now time.Time) string {
	var cool, back time.Time
	for key, ks := range r.keys {
		if scope != scopeAll && key != scopeAll && key != scope {
			continue
		}
		if ks.cooldownUntil.After(cool) {
			cool = ks.cooldownUntil
		}
		if ks.backoffUntil.After(back) {
			back = ks.backoffUntil
		}
	}
	switch {
	case now.Before(cool):
		return reasonCooldown
	case now.Before(back):
		return reasonBackoff
	}
	return ""
}

// remember records an accepted alert for deduplication with the memory its
// action touches, evicting the oldest beyond dedupeSize so that memory stays
// bounded. It holds r.mu.
func (r *Receiver) remember(key [sha256.Size]byte, scope string) {
	if _, ok := r.seen[key]; ok {
		return
	}
	for len(r.seenFIFO) >= dedupeSize {
		delete(r.seen, r.seenFIFO[0])
		r.seenFIFO = r.seenFIFO[1:]
	}
	r.seen[key] = scope
	r.seenFIFO = append(r.seenFIFO, key)
}

// forget drops an alert from the dedupe set once its wait is over.
func (r *Receiver) forget(key [sha256.Size]byte) {
	delete(r.seen, key)
	for i, k := range r.seenFIFO {
		if k == key {
			r.seenFIFO = append(r.seenFIFO[:i:i], r.seenFIFO[i+1:]...)
			break
		}
	}
}

// dedupeKey identifies an alert occurrence: its fingerprint (or, from a
// sender that sets none, its labels) and startsAt, hashed so that the dedupe
// set holds 32 bytes per entry whatever the payload.
func dedupeKey(a *alert) [sha256.Size]byte {
	id := a.Fingerprint
	if id == "" {
		id = fmt.Sprintf("%q", a.Labels) // fmt sorts map keys
	}
	return sha256.Sum256([]byte(id + "@" + a.StartsAt.UTC().Format(time.RFC3339Nano)))
}

// begin marks a job running and starts the cooldown of the memory it
// touches. It holds r.mu.
func (r *Receiver) begin(j *job) {
	r.running = true
	r.wg.Add(1)
	r.metrics.inProgress.Set(1)
	ks := r.keys[j.scope]
	if ks == nil {
		ks = &keyState{}
		r.keys[j.scope] = ks
	}
	ks.cooldownUntil = j.start.Add(r.cfg.Cooldown)
	ks.backoffUntil = j.start.Add(backoff(r.cfg.Cooldown, ks.misses))
}

// finish ends a job: an action that gained nothing or failed doubles the wait
// of the memory it touched before any action on it may run again, up to
// 2^maxBackoffShift cooldowns; one that helped resets it. A dry run says
// nothing about gain and leaves the backoff alone.
func (r *Receiver) finish(j *job, result string, gain int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = false
	if r.inflight.Load() == 0 {
		r.metrics.inProgress.Set(0)
	}
	ks := r.keys[j.scope]
	switch {
	case result == resultDryRun:
	case result == resultSuccess && gain > 0:
		ks.misses = 0
	default:
		ks.misses = min(ks.misses+1, maxBackoffShift)
	}
	ks.backoffUntil = j.start.Add(backoff(r.cfg.Cooldown, ks.misses))
}

// backoff is the wait after misses runs that gained nothing: the cooldown
// doubled per miss, saturating instead of overflowing.
func backoff(cooldown time.Duration, misses int) time.Duration {
	b := cooldown << misses
	if b>>misses != cooldown {
		return time.Duration(1<<63 - 1)
	}
	return b
}

func (r *Receiver) logDecision(d *Decision) {
	kv := []any{"msg", "remediation decision", "decision", d.Decision, "action", d.Action,
		"alertname", d.Alertname, "fingerprint", d.Fingerprint}
	if d.NUMANode != "" {
		kv = append(kv, "numa_node", d.NUMANode)
	}
	if d.Zone != "" {
		kv = append(kv, "zone", d.Zone)
	}
	if d.Reason != "" {
		kv = append(kv, "reason", d.Reason)
	}
	if r.cfg.DryRun {
		kv = append(kv, "dry_run", true)
	}
	level.Info(r.logger).Log(kv...)
}
