package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// Defaults of the settings main.go exposes as flags.
const (
	DefaultLeasePrefix   = "memfrag-remediation"
	DefaultLeaseDuration = 30 * time.Second
	DefaultWait          = 5 * time.Minute
)

// Config is the fleet budget's configuration, filled from main's flags.
type Config struct {
	// MaxConcurrent is N, the number of slots; 0 turns the budget off.
	MaxConcurrent int
	LeasePrefix   string        // slots are <LeasePrefix>-0 … <LeasePrefix>-(N-1)
	LeaseDuration time.Duration // a slot not renewed for this long is free
	Wait          time.Duration // how long Acquire waits for a free slot
	// Identity is written as holderIdentity: the node name.
	Identity string
	Client   ClientConfig

	// PollInterval is how often a waiting node looks at the slots again;
	// 0 means LeaseDuration/6 within 0.5 s … 10 s.
	PollInterval time.Duration
}

// Errors of Acquire. ErrBusy: every slot stayed taken for the whole wait.
// An *UnavailableError: the API server could not be asked or refused.
var ErrBusy = errors.New("every fleet slot stayed taken for the whole wait")

// UnavailableError says why the budget could not be consulted. The caller
// must not act: without the API server nobody knows how many nodes act.
type UnavailableError struct {
	Kind string // errors_total kind
	Err  error
}

func (e *UnavailableError) Error() string {
	return "fleet budget unavailable (" + e.Kind + "): " + e.Err.Error()
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Error kinds (label kind of memfrag_remediation_fleet_errors_total).
const (
	KindUnreachable     = "unreachable"      // no answer: network, TLS, timeout
	KindUnauthorized    = "unauthorized"     // 401: the token is wrong or expired
	KindForbidden       = "forbidden"        // 403: RBAC does not allow the Lease verb
	KindServerError     = "server_error"     // 5xx or 429
	KindRejected        = "rejected"         // another 4xx: the request itself is wrong
	KindInvalidResponse = "invalid_response" // a 2xx that is not a Lease
	KindToken           = "token"            // the token file cannot be read
	KindLost            = "lost"             // a held slot was taken over or could not be renewed
)

// ErrorKinds lists every kind, pre-set to zero in the metrics.
var ErrorKinds = []string{KindUnreachable, KindUnauthorized, KindForbidden, KindServerError,
	KindRejected, KindInvalidResponse, KindToken, KindLost}

func errorKind(err error) string {
	var api *APIError
	switch {
	case errors.As(err, &api):
		switch {
		case api.Code == http.StatusUnauthorized:
			return KindUnauthorized
		case api.Code == http.StatusForbidden:
			return KindForbidden
		case api.Code >= 500 || api.Code == http.StatusTooManyRequests:
			return KindServerError
		default:
			return KindRejected
		}
	case errors.Is(err, errToken):
		return KindToken
	case errors.Is(err, errDecode):
		return KindInvalidResponse
	default:
		return KindUnreachable
	}
}

// Budget hands out the fleet's slots to this node, one at a time.
type Budget struct {
	cfg     Config
	client  *Client
	logger  log.Logger
	metrics *metrics
	limiter logLimiter
	status  statusCache

	mu       sync.Mutex
	observed map[string]observation // per slot: when its current version was first seen
	held     *Slot
}

// observation remembers when this node first saw a slot's current version
// (resourceVersion), on its own monotonic clock: a slot counts as expired only
// once it has stayed unchanged for the lease duration as this node measured
// it, whatever the clocks of the holder and of this node say.
type observation struct {
	rv    string
	first time.Time
}

// New checks the configuration and sets up the client. It does not contact
// the API server: a node starts even when the control plane is down, and
// fails closed per alert.
func New(cfg Config, logger log.Logger) (*Budget, error) {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	if cfg.MaxConcurrent < 1 {
		return nil, fmt.Errorf("max concurrent %d: the budget needs at least one slot", cfg.MaxConcurrent)
	}
	if cfg.LeasePrefix == "" {
		cfg.LeasePrefix = DefaultLeasePrefix
	}
	if !validName(slotName(cfg.LeasePrefix, cfg.MaxConcurrent-1)) {
		return nil, fmt.Errorf("lease prefix %q does not make valid Lease names (lowercase letters, digits, '-', at most 63 characters)", cfg.LeasePrefix)
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.LeaseDuration < 3*time.Second || cfg.LeaseDuration%time.Second != 0 {
		return nil, fmt.Errorf("lease duration %v: want whole seconds, at least 3s (it is renewed every third of it)", cfg.LeaseDuration)
	}
	if cfg.Wait < 0 {
		return nil, fmt.Errorf("wait %v is negative", cfg.Wait)
	}
	if cfg.Identity == "" {
		return nil, errors.New("no holder identity (node name)")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = min(max(cfg.LeaseDuration/6, 500*time.Millisecond), 10*time.Second)
	}
	c, err := NewClient(cfg.Client)
	if err != nil {
		return nil, err
	}
	b := &Budget{cfg: cfg, client: c, logger: logger, metrics: newMetrics(cfg.MaxConcurrent),
		observed: map[string]observation{}, limiter: logLimiter{every: 30 * time.Second}}
	return b, nil
}

// MaxConcurrent is N.
func (b *Budget) MaxConcurrent() int { return b.cfg.MaxConcurrent }

// Namespace is where the slots live.
func (b *Budget) Namespace() string { return b.client.Namespace() }

func slotName(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }

// Acquire takes a free slot, waiting up to the configured wait (or until ctx
// ends). It returns ErrBusy when none came free, an *UnavailableError when
// the API server could not be consulted, ctx's error when ctx ended.
func (b *Budget) Acquire(ctx context.Context) (*Slot, error) {
	began := time.Now()
	s, err := b.acquire(ctx, began.Add(b.cfg.Wait))
	b.metrics.wait.Observe(time.Since(began).Seconds())
	if err != nil {
		var un *UnavailableError
		if errors.As(err, &un) {
			b.metrics.errors.WithLabelValues(un.Kind).Inc()
			b.limiter.log(un.Kind, func(suppressed int) {
				level.Error(b.logger).Log("msg", "fleet budget unavailable: not acting", "kind", un.Kind,
					"namespace", b.client.Namespace(), "err", un.Err, "suppressed_since_last", suppressed)
			})
		}
		return nil, err
	}
	level.Info(b.logger).Log("msg", "fleet slot taken", "lease", s.name, "waited", time.Since(began).Round(time.Millisecond))
	return s, nil
}

func (b *Budget) acquire(ctx context.Context, deadline time.Time) (*Slot, error) {
	b.mu.Lock()
	if b.held != nil {
		b.mu.Unlock()
		return nil, errors.New("this node already holds a fleet slot")
	}
	b.mu.Unlock()
	for {
		// Start at a random slot so that nodes waiting together do not all
		// race for slot 0 first.
		off := rand.IntN(b.cfg.MaxConcurrent)
		for k := range b.cfg.MaxConcurrent {
			s, err := b.try(ctx, slotName(b.cfg.LeasePrefix, (off+k)%b.cfg.MaxConcurrent))
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, &UnavailableError{Kind: errorKind(err), Err: err}
			}
			if s != nil {
				return s, nil
			}
		}
		wait := b.cfg.PollInterval/2 + rand.N(b.cfg.PollInterval)
		if time.Until(deadline) < wait {
			if now := time.Now(); now.Before(deadline) {
				wait = deadline.Sub(now)
			} else {
				return nil, ErrBusy
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// try takes the named slot if it is free. (nil, nil) means taken, or lost
// the race for it.
func (b *Budget) try(ctx context.Context, name string) (*Slot, error) {
	now := time.Now()
	l, err := b.client.Get(ctx, name)
	if IsNotFound(err) {
		created, err := b.client.Create(ctx, b.newLease(name, now))
		if IsConflict(err) {
			return nil, nil // created by another node a moment ago
		}
		if err != nil {
			return nil, err
		}
		return b.hold(created), nil
	}
	if err != nil {
		return nil, err
	}
	if !b.free(l, now) {
		return nil, nil
	}
	prev := l.Spec.Holder()
	next := *l
	next.Spec = b.newLease(name, now).Spec
	next.Spec.LeaseTransitions = l.Spec.LeaseTransitions
	if prev != "" && prev != b.cfg.Identity {
		t := int32(1)
		if l.Spec.LeaseTransitions != nil {
			t = *l.Spec.LeaseTransitions + 1
		}
		next.Spec.LeaseTransitions = &t
		level.Warn(b.logger).Log("msg", "taking over an expired fleet slot", "lease", name, "previous_holder", prev,
			"renew_time", renewOf(l).UTC().Format(time.RFC3339Nano))
	}
	updated, err := b.client.Update(ctx, &next)
	if IsConflict(err) {
		return nil, nil // another node took it first
	}
	if err != nil {
		return nil, err
	}
	return b.hold(updated), nil
}

func (b *Budget) newLease(name string, now time.Time) *Lease {
	id := b.cfg.Identity
	d := int32(b.cfg.LeaseDuration / time.Second)
	t := MicroTime{now}
	return &Lease{
		Metadata: Meta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "memfrag_exporter"}},
		Spec:     LeaseSpec{HolderIdentity: &id, LeaseDurationSeconds: &d, AcquireTime: &t, RenewTime: &t},
	}
}

func renewOf(l *Lease) time.Time {
	switch {
	case l.Spec.RenewTime != nil:
		return l.Spec.RenewTime.Time
	case l.Spec.AcquireTime != nil:
		return l.Spec.AcquireTime.Time
	}
	return time.Time{}
}

// free says whether a slot may be taken: nobody holds it, this node's
// previous life held it (a restart; whatever it ran ended with the process),
// or its holder stopped renewing. Expiry needs both clocks to agree: the
// renewTime written plus the lease's duration is past on this node's clock,
// and this node has seen the same version for a full duration on its
// monotonic clock. The first guards against a holder whose clock runs
// behind, the second against this node's clock running ahead; the cost is
// that a node that has just started waits one duration before taking over.
func (b *Budget) free(l *Lease, now time.Time) bool {
	holder := l.Spec.Holder()
	if holder == "" || holder == b.cfg.Identity {
		return true
	}
	b.mu.Lock()
	o, ok := b.observed[l.Metadata.Name]
	if !ok || o.rv != l.Metadata.ResourceVersion {
		o = observation{rv: l.Metadata.ResourceVersion, first: now}
		b.observed[l.Metadata.Name] = o
	}
	b.mu.Unlock()
	d := b.cfg.LeaseDuration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	renewed := renewOf(l)
	return !renewed.IsZero() && !now.Before(renewed.Add(d)) && now.Sub(o.first) >= d
}

func (b *Budget) hold(l *Lease) *Slot {
	s := &Slot{b: b, name: l.Metadata.Name, lease: l, renewed: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	b.mu.Lock()
	b.held = s
	b.mu.Unlock()
	b.metrics.held.Set(1)
	go s.renew()
	return s
}

// Slot is a held slot. It renews itself until Release.
type Slot struct {
	b    *Budget
	name string
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	lease   *Lease
	renewed time.Time // last successful write, this node's clock
	lost    bool
}

// Name is the Lease's name.
func (s *Slot) Name() string { return s.name }

// Lost reports whether the slot was taken over or could not be renewed
// within the lease duration.
func (s *Slot) Lost() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

func (s *Slot) renew() {
	defer close(s.done)
	t := time.NewTicker(s.b.cfg.LeaseDuration / 3)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.renewOnce() {
			return
		}
	}
}

// renewOnce writes a fresh renewTime; it reports true when the slot is lost.
func (s *Slot) renewOnce() bool {
	b := s.b
	s.mu.Lock()
	next := *s.lease
	s.mu.Unlock()
	now := time.Now()
	t := MicroTime{now}
	next.Spec.RenewTime = &t
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.LeaseDuration/3)
	defer cancel()
	l, err := b.client.Update(ctx, &next)
	if IsConflict(err) {
		holder, ours := s.reread(ctx)
		if ours {
			return false
		}
		s.markLost("the slot now names another holder", holder, err)
		return true
	}
	if err != nil {
		kind := errorKind(err)
		b.metrics.errors.WithLabelValues(kind).Inc()
		s.mu.Lock()
		since := time.Since(s.renewed)
		s.mu.Unlock()
		if since >= b.cfg.LeaseDuration {
			s.markLost("renewal failed for a whole lease duration: other nodes may take the slot", "", err)
			return true
		}
		level.Warn(b.logger).Log("msg", "cannot renew fleet slot; retrying", "lease", s.name, "kind", kind,
			"since_last_renewal", since.Round(time.Millisecond), "err", err)
		return false
	}
	s.mu.Lock()
	s.lease, s.renewed = l, now
	s.mu.Unlock()
	return false
}

// reread fetches the slot after a conflict. If it still names this node
// (nothing else should change a held slot) the slot carries on from that
// version and ours is true; otherwise holder says who has it now.
func (s *Slot) reread(ctx context.Context) (holder string, ours bool) {
	cur, err := s.b.client.Get(ctx, s.name)
	if err != nil {
		return "(unknown: " + err.Error() + ")", false
	}
	if cur.Spec.Holder() != s.b.cfg.Identity {
		return cur.Spec.Holder(), false
	}
	s.mu.Lock()
	s.lease = cur
	s.mu.Unlock()
	return "", true
}

func (s *Slot) markLost(why, holder string, err error) {
	s.mu.Lock()
	s.lost = true
	s.mu.Unlock()
	s.b.metrics.errors.WithLabelValues(KindLost).Inc()
	s.b.metrics.held.Set(0)
	level.Error(s.b.logger).Log("msg", "fleet slot LOST while acting: "+why+"; the running action finishes or hits its timeout, no other action starts meanwhile",
		"lease", s.name, "holder_now", holder, "err", err)
}

// Release stops renewing and clears the holder, so that the next node need
// not wait for the lease to expire. It is safe to call more than once; it
// bounds its own requests, so a dead API server delays it by at most one
// request timeout (the slot then frees at expiry).
func (s *Slot) Release() {
	s.once.Do(s.release)
}

func (s *Slot) release() {
	b := s.b
	close(s.stop)
	<-s.done
	defer func() {
		b.mu.Lock()
		b.held = nil
		b.mu.Unlock()
		b.metrics.held.Set(0)
	}()
	if s.Lost() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.client.timeout)
	defer cancel()
	for attempt := 0; attempt < 2; attempt++ {
		s.mu.Lock()
		next := *s.lease
		s.mu.Unlock()
		next.Spec.HolderIdentity = nil
		next.Spec.AcquireTime = nil
		_, err := b.client.Update(ctx, &next)
		if err == nil {
			level.Info(b.logger).Log("msg", "fleet slot released", "lease", s.name)
			return
		}
		if IsConflict(err) {
			if _, ours := s.reread(ctx); ours {
				continue
			}
			return // someone else holds it now: nothing of ours to release
		}
		b.metrics.errors.WithLabelValues(errorKind(err)).Inc()
		level.Warn(b.logger).Log("msg", "cannot release fleet slot; it frees when the lease expires", "lease", s.name,
			"lease_duration", b.cfg.LeaseDuration, "err", err)
		return
	}
}

// logLimiter logs a kind of message at most once per interval and says how
// many it held back, so that a dead API server cannot flood the log.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
	held  map[string]int
}

func (l *logLimiter) log(kind string, emit func(suppressed int)) {
	l.mu.Lock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if t, ok := l.last[kind]; ok && now.Sub(t) < l.every {
		l.held[kind]++
		l.mu.Unlock()
		return
	}
	n := l.held[kind]
	l.last[kind], l.held[kind] = now, 0
	l.mu.Unlock()
	emit(n)
}
