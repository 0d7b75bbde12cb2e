package remediate

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
)

// When the cure does not hold, the node needs a reboot, and the rebooting
// is kured's: it watches a sentinel file and reboots one node at a time
// under its own lock. With --remediate.escalate.reboot-sentinel the
// receiver creates that file exactly when the cure has kept failing:
// the backoff of the memory was already at its maximum when the run
// started (so the run came after the longest wait), the run completed
// (not a dry run, no write error), and afterwards the re-check still finds
// the order unusable and the gain at the order is zero or less.
//
// The file says which boot asked. A sentinel of this exporter left from an
// earlier boot (a sentinel on a persistent filesystem, which a reboot does
// not clear) is removed at start, so that it cannot ask for a second reboot.

// sentinelMarker starts every sentinel this exporter writes.
const sentinelMarker = "memfrag_exporter: reboot requested: the fragmentation cure did not hold\n"

// cureOutcome is what the escalation condition looks at after a run.
type cureOutcome struct {
	dryRun       bool
	result       string // resultSuccess, resultError or resultDryRun
	measured     bool   // the state after the action was measured
	stillNeeded  bool   // the re-check after the action still fails at the order
	gain         int64  // free bytes at the order, after minus before
	missesBefore int    // consecutive runs on this memory that gained nothing, before this one
}

// cureKeepsFailing is the escalation condition, dry run aside.
func cureKeepsFailing(o cureOutcome) bool {
	return o.result == resultSuccess && o.measured && o.stillNeeded && o.gain <= 0 &&
		o.missesBefore >= maxBackoffShift
}

// escalationDue is when the sentinel is created: never in a dry run.
func escalationDue(o cureOutcome) bool { return !o.dryRun && cureKeepsFailing(o) }

type escalation struct {
	path    string
	bootID  string
	logger  log.Logger
	created prometheus.Counter
	errors  prometheus.Counter
}

// newEscalation checks the sentinel path at start: absolute, in a directory
// that exists. An empty path turns escalation off (nil).
func newEscalation(path, procPath string, logger log.Logger) (*escalation, error) {
	if path == "" {
		return nil, nil
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("reboot sentinel %q: want an absolute path", path)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("reboot sentinel %q: its directory must exist (in Kubernetes, mount the host's /var/run): %w", path, errNotDir(err))
	}
	boot, err := os.ReadFile(filepath.Join(procPath, "sys/kernel/random/boot_id"))
	if err != nil {
		return nil, fmt.Errorf("reboot sentinel: reading the boot id: %w", err)
	}
	e := &escalation{
		path:   path,
		bootID: strings.TrimSpace(string(boot)),
		logger: logger,
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "remediation_reboot_sentinel_created_total",
			Help: "Times the receiver created --remediate.escalate.reboot-sentinel because the cure kept failing (backoff at its maximum, the re-check still failing, no gain): kured reboots the node.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "remediation_reboot_sentinel_errors_total",
			Help: "Times the reboot sentinel was due but could not be created (see the log): the node is not rebooted.",
		}),
	}
	e.removeStale()
	return e, nil
}

func errNotDir(err error) error {
	if err == nil {
		return errors.New("not a directory")
	}
	return err
}

// removeStale removes a sentinel this exporter wrote in an earlier boot.
func (e *escalation) removeStale() {
	data, err := os.ReadFile(e.path)
	if err != nil || !bytes.HasPrefix(data, []byte(sentinelMarker)) {
		return // absent, or someone else's (the OS's own reboot-required)
	}
	if bytes.Contains(data, []byte("boot_id="+e.bootID+"\n")) {
		return // this boot asked; kured has not rebooted yet
	}
	if err := os.Remove(e.path); err != nil {
		level.Error(e.logger).Log("msg", "cannot remove the reboot sentinel of an earlier boot", "path", e.path, "err", err)
		return
	}
	level.Info(e.logger).Log("msg", "removed the reboot sentinel of an earlier boot", "path", e.path)
}

func (e *escalation) collectors() []prometheus.Collector {
	if e == nil {
		return nil
	}
	return []prometheus.Collector{e.created, e.errors}
}

// consider creates the sentinel when the outcome of a run on scope calls
// for it, and says so in the log and the counters.
func (e *escalation) consider(j *job, o cureOutcome) {
	if e == nil || !cureKeepsFailing(o) {
		return
	}
	kv := []any{"path", e.path, "action", string(j.action), "scope", j.scope, "gain_bytes", o.gain,
		"misses_before", o.missesBefore}
	if !escalationDue(o) {
		level.Warn(e.logger).Log(append([]any{"msg", "dry run: the cure keeps failing; would create the reboot sentinel"}, kv...)...)
		return
	}
	f, err := os.OpenFile(e.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		level.Warn(e.logger).Log(append([]any{"msg", "the cure keeps failing; reboot sentinel already present, waiting for the reboot"}, kv...)...)
		return
	}
	if err == nil {
		_, err = fmt.Fprintf(f, "%saction=%s scope=%s gain_bytes=%d\nboot_id=%s\n", sentinelMarker, j.action, j.scope, o.gain, e.bootID)
		if serr := f.Sync(); err == nil {
			err = serr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(e.path) // a half-written sentinel would still reboot; say why instead
		}
	}
	if err != nil {
		e.errors.Inc()
		level.Error(e.logger).Log(append([]any{"msg", "the cure keeps failing but the reboot sentinel cannot be created", "err", err}, kv...)...)
		return
	}
	e.created.Inc()
	level.Warn(e.logger).Log(append([]any{"msg", "the cure keeps failing: created the reboot sentinel; kured reboots the node"}, kv...)...)
}
