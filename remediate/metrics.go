package remediate

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "memfrag"

// Results of an action run (label result).
const (
	resultSuccess = "success"
	resultError   = "error"
	resultDryRun  = "dry_run"
)

// Skip reasons (label reason). Every alert that is not acted on gets exactly
// one, chosen by the first check it fails, in this order.
const (
	reasonResolved     = "resolved"       // the alert is resolved; resolved alerts never act
	reasonInvalid      = "invalid"        // missing/unknown action, bad numa_node or zone: skipped whole
	reasonOtherHost    = "other_host"     // neither instance nor node names this host
	reasonNotAllowed   = "not_allowed"    // the action is not in --remediate.actions
	reasonDuplicate    = "duplicate"      // same fingerprint and startsAt as an accepted alert
	reasonShutdown     = "shutting_down"  // the receiver is stopping
	reasonBusy         = "busy"           // another action is running (or its kernel write is)
	reasonCooldown     = "cooldown"       // the action ran less than a cooldown ago
	reasonBackoff      = "backoff"        // the last runs gained nothing: a longer wait
	reasonRecheckError = "recheck_failed" // buddyinfo unreadable: fail closed
	reasonNotNeeded    = "not_needed"     // the re-check finds no zone that needs the cure
	// After these, reasonFleetBusy and reasonFleetUnavailable (fleetslot.go)
	// for an accepted alert that got no fleet slot.
)

var skipReasons = []string{reasonResolved, reasonInvalid, reasonOtherHost, reasonNotAllowed,
	reasonDuplicate, reasonShutdown, reasonBusy, reasonCooldown, reasonBackoff, reasonRecheckError, reasonNotNeeded,
	reasonFleetBusy, reasonFleetUnavailable}

// replyCodes are every status the handler answers with; pre-set so that a
// rate() over them starts at zero.
var replyCodes = []int{200, 400, 401, 405, 408, 413, 415}

type metrics struct {
	runs       *prometheus.CounterVec
	skipped    *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	lastRun    *prometheus.GaugeVec
	lastGain   *prometheus.GaugeVec
	lastScore  *prometheus.GaugeVec
	requests   *prometheus.CounterVec
	inProgress prometheus.Gauge

	stateErrors   *prometheus.CounterVec
	stateOK       prometheus.Gauge
	tokenErrors   prometheus.Counter
	tokenOK       prometheus.Gauge
	refusalLogged prometheus.Counter

	codes map[int]prometheus.Counter // pre-resolved: no label lookup per request
}

func newMetrics() *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "remediation_runs_total",
			Help: "Remediation actions started, by result: success, error (see the log), or dry_run (decided but nothing written).",
		}, []string{"action", "result"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "remediation_skipped_total",
			Help: "Alerts that asked for a remediation action that was not run, by the reason (the first check the alert failed).",
		}, []string{"action", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "remediation_duration_seconds",
			Help:    "How long remediation actions took, measurements and sync included.",
			Buckets: []float64{0.01, 0.05, 0.25, 1, 5, 15, 60, 180, 600},
		}, []string{"action"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "remediation_last_run_timestamp_seconds",
			Help: "When the action last finished (Unix time), whatever its result.",
		}, []string{"action"}),
		lastGain: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "remediation_last_gain_bytes",
			Help: "Last run of the action: free bytes in blocks of at least the check order (--remediate.order) after minus before. Zero or less means it did not help and the action backs off.",
		}, []string{"action"}),
		lastScore: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "remediation_last_score_delta",
			Help: "Last run of the action: compaction score (worst NUMA node in scope) after minus before; negative is better.",
		}, []string{"action"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "remediation_webhook_requests_total",
			Help: "Requests to the remediation webhook by HTTP status code: 401 means a wrong or missing token, 400 a payload that is not an Alertmanager v4 webhook.",
		}, []string{"code"}),
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "remediation_in_progress",
			Help: "1 while a remediation action (or a kernel write it timed out on) is running.",
		}),
		stateErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "remediation_state_errors_total",
			Help: "Failures of the --remediate.state-file by operation: load (unreadable, corrupt or unknown version: no action until one cooldown has passed since start) or save (waits hold until the process ends, not across a restart).",
		}, []string{"op"}),
		stateOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "remediation_state_ok",
			Help: "1 when the last load or save of --remediate.state-file succeeded (or none is configured), 0 after a failure.",
		}),
		tokenErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "remediation_token_reload_errors_total",
			Help: "Reloads of --remediate.token-file that failed (missing, empty, unreadable, too large); the previous token stays in force.",
		}),
		tokenOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "remediation_token_last_reload_success",
			Help: "1 when the last load of --remediate.token-file succeeded, 0 while the file is missing, empty or unreadable (the previous token is still accepted).",
		}),
		refusalLogged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "remediation_refusal_log_lines_total",
			Help: "Log lines written about refused (401) webhook requests; at most one per interval, each with the count suppressed since the last. memfrag_remediation_webhook_requests_total{code=\"401\"} has the exact count of refusals.",
		}),
		codes: map[int]prometheus.Counter{},
	}
	m.stateErrors.WithLabelValues(stateOpLoad)
	m.stateErrors.WithLabelValues(stateOpSave)
	m.stateOK.Set(1)
	m.tokenOK.Set(1)
	for _, a := range Actions {
		for _, r := range []string{resultSuccess, resultError, resultDryRun} {
			m.runs.WithLabelValues(string(a), r)
		}
	}
	for _, a := range append([]string{unknownAction}, actionNames()...) {
		for _, r := range skipReasons {
			m.skipped.WithLabelValues(a, r)
		}
	}
	for _, c := range replyCodes {
		m.codes[c] = m.requests.WithLabelValues(strconv.Itoa(c))
	}
	return m
}

func actionNames() []string {
	out := make([]string, len(Actions))
	for i, a := range Actions {
		out[i] = string(a)
	}
	return out
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.runs, m.skipped, m.duration, m.lastRun, m.lastGain, m.lastScore, m.requests, m.inProgress,
		m.stateErrors, m.stateOK, m.tokenErrors, m.tokenOK, m.refusalLogged}
}

// Describe implements prometheus.Collector.
func (r *Receiver) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range append(r.metrics.collectors(), r.escalation.collectors()...) {
		c.Describe(ch)
	}
	if r.fleet != nil {
		r.fleet.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (r *Receiver) Collect(ch chan<- prometheus.Metric) {
	for _, c := range append(r.metrics.collectors(), r.escalation.collectors()...) {
		c.Collect(ch)
	}
	if r.fleet != nil {
		r.fleet.Collect(ch)
	}
}
