package remediate

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/procfs"

	"github.com/memfrag/memfrag_exporter/fragmentation"
	"github.com/memfrag/memfrag_exporter/remediate/fleet"
)

// Decision is what the receiver decided for one alert and, for an accepted
// one, what the action did. Recent returns the last few for the landing page.
type Decision struct {
	Time        time.Time `json:"time"`
	Alertname   string    `json:"alertname,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Action      string    `json:"action"` // "unknown" when the label is missing or not an action
	NUMANode    string    `json:"numa_node,omitempty"`
	Zone        string    `json:"zone,omitempty"`
	Decision    string    `json:"decision"`         // "accepted" or "skipped"
	Reason      string    `json:"reason,omitempty"` // why it was skipped

	// Set for accepted alerts once the action ends; Result is "running"
	// until then.
	Result            string        `json:"result,omitempty"` // success, error or dry_run
	Error             string        `json:"error,omitempty"`
	Targets           []string      `json:"targets,omitempty"` // kernel files written, in order
	Duration          time.Duration `json:"duration,omitempty"`
	BeforeBytes       uint64        `json:"before_bytes,omitempty"` // free bytes in blocks >= Order
	AfterBytes        uint64        `json:"after_bytes,omitempty"`
	GainBytes         int64         `json:"gain_bytes,omitempty"`          // AfterBytes - BeforeBytes
	ScoreBefore       int64         `json:"score_before,omitempty"`        // compaction score, -1 unknown
	ScoreAfter        int64         `json:"score_after,omitempty"`         // -1 unknown
	CacheDroppedBytes int64         `json:"cache_dropped_bytes,omitempty"` // meminfo Cached before - after
}

const (
	decisionAccepted = "accepted"
	decisionSkipped  = "skipped"
	resultRunning    = "running"
)

// Sizes of the bounded histories: accepted actions are kept apart from skips
// so that a flood of duplicates cannot push the last real action out of view.
const (
	recentAccepted = 25
	recentSkipped  = 50
	recentMax      = 50
	dedupeSize     = 4096
)

// Receiver is the remediation webhook (POST /remediate) and the
// prometheus.Collector of its metrics.
type Receiver struct {
	cfg            Config
	logger         log.Logger
	now            func() time.Time
	token          *tokenStore // nil when unauthenticated on purpose
	id             *identity
	allowed        map[Action]bool
	thresholdMilli int64
	metrics        *metrics
	refusals       *refusalLog

	mu       sync.Mutex
	check    *fragmentation.Source        // re-check source, used under mu only
	keys     map[string]*keyState         // cooldown and backoff per scope of memory
	seen     map[[sha256.Size]byte]string // accepted fingerprint+startsAt: its scope
	seenFIFO [][sha256.Size]byte
	running  bool
	closed   bool
	accepted ring
	skipped  ring

	// Used by the single running action only (running guards it).
	act     *fragmentation.Source
	hpOrder int
	scores  []fragmentation.NodeScoreOf
	procfs  procfs.FS
	hasFS   bool
	syncFn  func()

	escalation *escalation // nil without --remediate.escalate.reboot-sentinel

	saveMu sync.Mutex // serializes state file writes; taken before mu

	// fleet is the fleet budget, nil when off; fleetCtx ends a wait for a
	// slot at shutdown.
	fleet     *fleet.Budget
	fleetCtx  context.Context
	fleetStop context.CancelFunc

	inflight atomic.Int64 // kernel writes or syncs still in the kernel
	wg       sync.WaitGroup
	stop     context.CancelFunc
	watchWG  sync.WaitGroup
}

// keyState is the cooldown and backoff of one piece of memory: a NUMA node
// ("node<N>") or all of it (scopeAll).
type keyState struct {
	cooldownUntil time.Time // normal cooldown from the last start
	backoffUntil  time.Time // later than cooldownUntil after runs that gained nothing
	misses        int       // consecutive runs that gained nothing (or failed)
}

// New builds a Receiver. It fails when no token is configured (unless
// AllowUnauthenticated) or the token file cannot be read.
func New(cfg Config, logger log.Logger) (*Receiver, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("remediation config: %w", err)
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	r := &Receiver{
		cfg:            cfg,
		logger:         logger,
		now:            cfg.Clock,
		id:             newIdentity(cfg.NodeName, cfg.TrustLoopback),
		allowed:        map[Action]bool{},
		thresholdMilli: int64(math.Ceil(cfg.UnusableThreshold*1000 - 1e-9)),
		metrics:        newMetrics(),
		check:          fragmentation.NewSource(cfg.ProcPath),
		act:            fragmentation.NewSource(cfg.ProcPath),
		keys:           map[string]*keyState{},
		seen:           map[[sha256.Size]byte]string{},
		accepted:       ring{max: recentAccepted},
		skipped:        ring{max: recentSkipped},
		syncFn:         syscall.Sync,
	}
	r.refusals = &refusalLog{logger: logger, every: refusalLogEvery, lines: r.metrics.refusalLogged.Inc}
	for _, a := range cfg.Actions {
		r.allowed[a] = true
	}
	var err error
	r.hpOrder, _ = fragmentation.HugePageOrder(cfg.SysPath, cfg.PageSize)
	esc, err := newEscalation(cfg.RebootSentinel, cfg.ProcPath, logger)
	if err != nil {
		return nil, fmt.Errorf("remediation escalation: %w", err)
	}
	r.escalation = esc
	if fs, err := procfs.NewFS(cfg.ProcPath); err == nil {
		r.procfs, r.hasFS = fs, true
	}
	if cfg.TokenFile != "" {
		t, err := newTokenStore(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("remediation token: %w", err)
		}
		r.token = t
		r.metrics.tokenOK.Set(1)
	}
	if r.fleet, err = newFleet(&r.cfg, logger); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.fleetCtx, r.fleetStop = context.WithCancel(ctx)
	if r.token != nil && cfg.TokenCheckInterval > 0 {
		r.watchWG.Add(1)
		go r.watchToken(ctx)
	}
	if cfg.StateFile != "" && r.loadState(r.now()) {
		// Saving at once tells at start whether the file can be written.
		r.saveState("start")
	}
	if _, err := r.check.Buddyinfo(); err != nil {
		// Not fatal: the receiver fails closed per alert (recheck_failed),
		// and the node may get /proc back (a remount) without a restart.
		level.Warn(logger).Log("msg", "remediation cannot read buddyinfo; every alert will be skipped until it can", "err", err)
	}
	if r.token == nil {
		level.Warn(logger).Log("msg", "remediation endpoint serves without authentication (--remediate.allow-unauthenticated): whoever reaches POST /remediate can ask for drop_caches and compaction unless --web.config.file or the network keeps them out")
	}
	level.Info(logger).Log("msg", "remediation enabled", "actions", fmt.Sprint(cfg.Actions), "node_name", cfg.NodeName,
		"dry_run", cfg.DryRun, "cooldown", cfg.Cooldown, "order", cfg.Order, "unusable_threshold", cfg.UnusableThreshold,
		"authenticated", r.token != nil, "trust_loopback", cfg.TrustLoopback, "state_file", cfg.StateFile)
	return r, nil
}

// ReloadToken re-reads the token file (main calls it on SIGHUP; the watcher
// when the file changes). On error the previous token stays in force, the
// error is logged and counted.
func (r *Receiver) ReloadToken() error {
	if r.token == nil {
		return nil
	}
	changed, err := r.token.load()
	if err != nil {
		r.metrics.tokenErrors.Inc()
		r.metrics.tokenOK.Set(0)
		level.Error(r.logger).Log("msg", "cannot reload remediation token; keeping the previous one (deleting or emptying the file does not revoke it: replace its content)", "err", err)
		return err
	}
	r.metrics.tokenOK.Set(1)
	level.Info(r.logger).Log("msg", "remediation token reloaded", "changed", changed)
	return nil
}

func (r *Receiver) watchToken(ctx context.Context) {
	defer r.watchWG.Done()
	t := time.NewTicker(r.cfg.TokenCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r.token.changed() {
				r.ReloadToken()
			}
		}
	}
}

// StopAccepting makes every later alert skip as shutting_down. Main calls it
// the moment SIGTERM arrives, before the HTTP server drains: a webhook whose
// body completes during the drain must not start an action that could
// outlive the pod's grace period.
func (r *Receiver) StopAccepting() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.fleetStop() // an alert waiting for a fleet slot gives up now
}

// Shutdown stops new actions and waits until the running one ends or times
// out (its own --remediate.timeout), or ctx ends. Main calls it after the
// HTTP server stopped.
func (r *Receiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	running := r.running
	r.mu.Unlock()
	r.stop()
	r.watchWG.Wait()
	r.refusals.stop()
	if running {
		level.Info(r.logger).Log("msg", "waiting for the running remediation action to finish or time out", "timeout", r.cfg.Timeout)
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("remediation action still running at shutdown: %w", ctx.Err())
	}
	r.check.Close()
	r.act.Close()
	return nil
}

// Recent returns the last decisions, newest first: the last 25 accepted
// ones, and the last skipped ones up to 50 in all.
func (r *Receiver) Recent() []Decision {
	r.mu.Lock()
	out := make([]Decision, 0, recentMax)
	for _, d := range r.accepted.last(recentAccepted) {
		c := *d
		c.Targets = append([]string(nil), d.Targets...)
		out = append(out, c)
	}
	for _, d := range r.skipped.last(recentMax - len(out)) {
		out = append(out, *d)
	}
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out
}

// ring keeps the last max decisions, oldest first in items() order. It
// overwrites in place: a flood of skips costs no copying.
type ring struct {
	max  int
	buf  []*Decision
	next int // where the next decision goes once buf is full
}

func (g *ring) add(d *Decision) {
	if len(g.buf) < g.max {
		g.buf = append(g.buf, d)
		return
	}
	g.buf[g.next] = d
	g.next = (g.next + 1) % g.max
}

// last returns up to n of the newest decisions, oldest first.
func (g *ring) last(n int) []*Decision {
	out := make([]*Decision, 0, min(n, len(g.buf)))
	for i := max(len(g.buf)-n, 0); i < len(g.buf); i++ {
		out = append(out, g.buf[(g.next+i)%len(g.buf)])
	}
	return out
}

// reply is the JSON body of a 200: one entry per alert, in payload order.
type reply struct {
	DryRun    bool            `json:"dry_run"`
	Decisions []replyDecision `json:"decisions"`
}

type replyDecision struct {
	Alertname   string `json:"alertname,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Action      string `json:"action"`
	Decision    string `json:"decision"`
	Reason      string `json:"reason,omitempty"`
}

// ServeHTTP answers POST /remediate.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	code := r.serve(w, req)
	if c, ok := r.metrics.codes[code]; ok {
		c.Inc()
	}
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) int {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return replyError(w, http.StatusMethodNotAllowed, "use POST")
	}
	// Authenticate before reading the body: strangers get nothing parsed,
	// and their answer does not wait for their body.
	if r.token != nil {
		if err := r.token.check(req.Header.Get("Authorization")); err != nil {
			r.refusals.note(req.RemoteAddr, err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="memfrag_exporter remediation"`)
			return refuse(w, http.StatusUnauthorized, err.Error())
		}
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return r.reject(w, req, http.StatusUnsupportedMediaType, "want Content-Type: application/json")
	}
	if req.ContentLength > r.cfg.MaxBodyBytes {
		return r.reject(w, req, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", r.cfg.MaxBodyBytes))
	}
	// The server's ReadHeaderTimeout stops slow headers; this stops a slow
	// body (ErrNotSupported outside a real server is fine to ignore).
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(r.cfg.BodyTimeout))
	data, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return r.reject(w, req, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", r.cfg.MaxBodyBytes))
		}
		return r.reject(w, req, http.StatusRequestTimeout, "reading body: "+err.Error())
	}
	alerts, err := decodeMessage(data)
	if err != nil {
		return r.reject(w, req, http.StatusBadRequest, err.Error())
	}
	decisions := r.decideAll(alerts)
	rep := reply{DryRun: r.cfg.DryRun, Decisions: make([]replyDecision, len(decisions))}
	for i, d := range decisions {
		rep.Decisions[i] = replyDecision{Alertname: d.Alertname, Fingerprint: d.Fingerprint, Action: d.Action, Decision: d.Decision, Reason: d.Reason}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(rep)
	return http.StatusOK
}

// reject answers an authenticated request whose payload cannot be decided
// (400, 408, 413, 415) and logs it: the alerts in it are lost to this
// receiver, which must not happen silently. Requests refused before
// authentication (401, 405) log less or nothing, so strangers cannot fill
// the log.
func (r *Receiver) reject(w http.ResponseWriter, req *http.Request, code int, msg string) int {
	level.Warn(r.logger).Log("msg", "remediation webhook payload rejected", "code", code, "remote", req.RemoteAddr, "err", msg)
	return replyError(w, code, msg)
}

// refuse answers a request that is not let in and closes its connection
// without reading the body: net/http would otherwise read up to 256 KiB of
// what is left of it before the reply goes out (Connection: close skips
// that), and after the reply while the connection stays open (the past read
// deadline ends that at once). Either way a client trickling its body would
// hold the connection and delay its answer.
func refuse(w http.ResponseWriter, code int, msg string) int {
	w.Header().Set("Connection", "close")
	replyError(w, code, msg)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // ErrNotSupported outside a real server is fine to ignore
	_ = rc.SetReadDeadline(time.Now())
	return code
}

func replyError(w http.ResponseWriter, code int, msg string) int {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
	return code
}
