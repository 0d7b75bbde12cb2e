package remediate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-kit/log/level"

	"github.com/memfrag/memfrag_exporter/fragmentation"
)

// measurement is the node's state around an action, in the alert's scope.
type measurement struct {
	suitableBytes uint64 // free bytes in blocks of at least the check order
	score         int64  // compaction score of the worst node in scope; -1 unknown
	needed        bool   // the re-check criterion still holds
	cachedBytes   int64  // meminfo Cached; -1 unknown
}

// outcome is what one run did.
type outcome struct {
	result  string
	err     error
	targets []string
	before  measurement
	after   measurement
	after2  bool // after is valid
	notes   []string
}

// run executes an accepted job in the background with its timeout, then
// records the outcome in the decision, the metrics and the log.
func (r *Receiver) run(j *job) {
	defer r.wg.Done()
	// The fleet's slot comes last, after every local check, and the
	// action's timeout starts once it is held.
	if slot, reason := r.takeSlot(j); reason != "" {
		r.giveUp(j, reason)
		return
	} else if slot != nil {
		defer slot.Release()
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	began := time.Now()
	o := r.execute(ctx, j)
	elapsed := time.Since(began)

	var gain int64
	if o.after2 {
		gain = int64(o.after.suitableBytes) - int64(o.before.suitableBytes)
	}
	r.mu.Lock()
	d := j.decision
	d.Result, d.Targets, d.Duration = o.result, o.targets, elapsed
	if o.err != nil {
		d.Error = o.err.Error()
	}
	d.BeforeBytes, d.ScoreBefore = o.before.suitableBytes, o.before.score
	if o.after2 {
		d.AfterBytes, d.ScoreAfter, d.GainBytes = o.after.suitableBytes, o.after.score, gain
		if o.before.cachedBytes >= 0 && o.after.cachedBytes >= 0 {
			d.CacheDroppedBytes = o.before.cachedBytes - o.after.cachedBytes
		}
	}
	missesBefore := r.keys[j.scope].misses
	r.mu.Unlock()
	r.finish(j, o.result, gain)
	r.saveState("finish")
	r.escalation.consider(j, cureOutcome{dryRun: r.cfg.DryRun, result: o.result, measured: o.after2,
		stillNeeded: o.after.needed, gain: gain, missesBefore: missesBefore})

	a := string(j.action)
	r.metrics.runs.WithLabelValues(a, o.result).Inc()
	r.metrics.duration.WithLabelValues(a).Observe(elapsed.Seconds())
	r.metrics.lastRun.WithLabelValues(a).Set(float64(r.now().UnixNano()) / 1e9)
	kv := []any{"msg", "remediation action finished", "action", a, "result", o.result,
		"alertname", d.Alertname, "fingerprint", d.Fingerprint, "duration", elapsed,
		"targets", strings.Join(o.targets, ","), "before_bytes", o.before.suitableBytes, "score_before", o.before.score}
	if j.node != "" {
		kv = append(kv, "numa_node", j.node)
	}
	if o.after2 {
		r.metrics.lastGain.WithLabelValues(a).Set(float64(gain))
		if o.before.score >= 0 && o.after.score >= 0 {
			r.metrics.lastScore.WithLabelValues(a).Set(float64(o.after.score - o.before.score))
		}
		kv = append(kv, "after_bytes", o.after.suitableBytes, "gain_bytes", gain, "score_after", o.after.score)
		if d.CacheDroppedBytes != 0 {
			kv = append(kv, "cache_dropped_bytes", d.CacheDroppedBytes)
		}
	}
	if len(o.notes) > 0 {
		kv = append(kv, "notes", strings.Join(o.notes, "; "))
	}
	if o.err != nil {
		level.Error(r.logger).Log(append(kv, "err", o.err)...)
	} else {
		level.Info(r.logger).Log(kv...)
	}
}

func (r *Receiver) execute(ctx context.Context, j *job) outcome {
	var o outcome
	var err error
	if o.before, err = r.measure(j); err != nil {
		// The handler's re-check read buddyinfo a moment ago; failing now
		// means something changed under us: do not act.
		o.result, o.err = resultError, fmt.Errorf("measuring before acting: %w", err)
		return o
	}
	if r.cfg.DryRun {
		o.result = resultDryRun
		o.notes = append(o.notes, "dry run: would write "+strings.Join(r.plan(j), " then "))
		return o
	}
	switch j.action {
	case DropCaches:
		err = r.dropCaches(ctx, &o)
	case Compact:
		err = r.compact(ctx, j, &o)
	case DropCachesThenCompact:
		if err = r.dropCaches(ctx, &o); err != nil {
			break
		}
		var mid measurement
		if mid, err = r.measure(j); err != nil {
			err = fmt.Errorf("measuring after drop_caches: %w", err)
			break
		}
		if !mid.needed {
			o.notes = append(o.notes, "compaction not needed after drop_caches")
			break
		}
		err = r.compact(ctx, j, &o)
	}
	o.result = resultSuccess
	if err != nil {
		o.result, o.err = resultError, err
	}
	// Measure even after an error: a timed-out compaction may still have
	// helped, and the record says so.
	if after, merr := r.measure(j); merr == nil {
		o.after, o.after2 = after, true
	} else if o.err == nil {
		o.result, o.err = resultError, fmt.Errorf("measuring after acting: %w", merr)
	}
	return o
}

// plan names the writes the job would make, for the dry-run log.
func (r *Receiver) plan(j *job) []string {
	drop := fmt.Sprintf("%d > %s", r.cfg.DropCachesLevel, r.procFile("sys/vm/drop_caches"))
	if r.cfg.Sync {
		drop = "sync; " + drop
	}
	comp := "1 > " + r.compactTarget(j.node)
	switch j.action {
	case DropCaches:
		return []string{drop}
	case Compact:
		return []string{comp}
	default:
		return []string{drop, comp + " (if still needed)"}
	}
}

func (r *Receiver) procFile(rel string) string { return filepath.Join(r.cfg.ProcPath, rel) }

// compactTarget is the node's own compact file when the alert names a node
// and the kernel has it (CONFIG_NUMA), else the global trigger.
func (r *Receiver) compactTarget(node string) string {
	if node != "" {
		p := filepath.Join(r.cfg.SysPath, "devices/system/node", "node"+node, "compact")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return r.procFile("sys/vm/compact_memory")
}

func (r *Receiver) dropCaches(ctx context.Context, o *outcome) error {
	if r.cfg.Sync {
		sctx, cancel := context.WithTimeout(ctx, r.cfg.SyncTimeout)
		err := r.inKernel(sctx, "sync", func() error { r.syncFn(); return nil })
		cancel()
		if err != nil {
			// Dropping caches behind a sync that cannot finish would add
			// read I/O to a disk already too busy to write: give up.
			return fmt.Errorf("sync before drop_caches: %w", err)
		}
		o.targets = append(o.targets, "sync")
	}
	p := r.procFile("sys/vm/drop_caches")
	o.targets = append(o.targets, p)
	return r.inKernel(ctx, "drop_caches", func() error {
		return writeKernelFile(p, strconv.Itoa(r.cfg.DropCachesLevel)+"\n")
	})
}

func (r *Receiver) compact(ctx context.Context, j *job, o *outcome) error {
	p := r.compactTarget(j.node)
	o.targets = append(o.targets, p)
	return r.inKernel(ctx, "compaction", func() error { return writeKernelFile(p, "1\n") })
}

// inKernel runs a blocking system call (a write the kernel serves
// synchronously, or sync(2)) and waits for it or ctx. A call cannot be
// interrupted, so on timeout it goes on in the background and counts as
// in flight: no other action starts until the kernel is done.
func (r *Receiver) inKernel(ctx context.Context, what string, call func() error) error {
	done := make(chan error, 1)
	r.inflight.Add(1)
	go func() {
		err := call()
		if r.inflight.Add(-1) == 0 {
			r.mu.Lock()
			if !r.running {
				r.metrics.inProgress.Set(0)
			}
			r.mu.Unlock()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s did not finish: %w (the kernel carries on; no new action starts until it is done)", what, ctx.Err())
	}
}

// writeKernelFile writes data to an existing kernel file. It never creates
// or truncates a file and does not follow a symlink in the last component,
// so a wrong --path.procfs cannot turn it into a file writer.
func writeKernelFile(path, data string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", strings.TrimSpace(data), path, err)
	}
	return nil
}

// measure reads the node's state in the job's scope with the fragmentation
// package: the same numbers the collectors export and the alerts fire on.
func (r *Receiver) measure(j *job) (measurement, error) {
	m := measurement{score: -1, cachedBytes: -1}
	zones, err := r.act.Buddyinfo()
	if err != nil {
		return m, err
	}
	var found bool
	for i := range zones {
		if j.node != "" && zones[i].Node != j.node {
			continue
		}
		found = true
		m.suitableBytes += fragmentation.SuitableFreePages(zones[i].Free, r.cfg.Order) * uint64(r.cfg.PageSize)
	}
	if !found {
		return m, errors.New("the alert's NUMA node is gone from buddyinfo")
	}
	m.needed = r.needsCure(zones, j.node, j.zone)
	// The score needs zoneinfo for the zone weights; without it the action
	// still runs, the record says "unknown".
	if infos, err := r.act.Zoneinfo(); err == nil {
		if r.scores, err = fragmentation.NodeScores(zones, infos, r.hpOrder, r.scores); err == nil {
			for _, s := range r.scores {
				if (j.node == "" || s.Node == j.node) && int64(s.Score) > m.score {
					m.score = int64(s.Score)
				}
			}
		}
	}
	if j.action != Compact && r.hasFS {
		if mi, err := r.procfs.Meminfo(); err == nil && mi.CachedBytes != nil {
			m.cachedBytes = int64(*mi.CachedBytes)
		}
	}
	return m, nil
}
