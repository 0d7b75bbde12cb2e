package remediate

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/memfrag/memfrag_exporter/fragmentation"
	"github.com/memfrag/memfrag_exporter/remediate/fleet"
)

// Action is a cure the receiver can run, named by the alert's remediate label.
type Action string

// The actions. Each is a plain write to a kernel file.
const (
	// DropCaches writes the configured level to /proc/sys/vm/drop_caches,
	// after sync(2) when enabled.
	DropCaches Action = "drop_caches"
	// Compact writes 1 to /sys/devices/system/node/node<N>/compact for an
	// alert with a numa_node label (when the file exists), else to
	// /proc/sys/vm/compact_memory.
	Compact Action = "compact"
	// DropCachesThenCompact is the seed practice: sync, drop caches,
	// re-measure, compact only if the node still needs it, re-measure.
	DropCachesThenCompact Action = "drop_caches_then_compact"
)

// Actions lists every action the receiver knows.
var Actions = []Action{DropCaches, Compact, DropCachesThenCompact}

// unknownAction labels metrics of alerts whose remediate label is missing or
// names no known action, so that an alert can never choose a label value.
const unknownAction = "unknown"

func knownAction(s string) (Action, bool) {
	for _, a := range Actions {
		if string(a) == s {
			return a, true
		}
	}
	return "", false
}

// Defaults of the settings main.go exposes as flags. A zero duration, size or
// level in Config means its default; Order, UnusableThreshold and Cooldown
// are taken as given, since zero is a meaningful value for each.
const (
	DefaultCooldown          = 30 * time.Minute
	DefaultDropCachesLevel   = 3
	DefaultSyncTimeout       = 30 * time.Second
	DefaultTimeout           = 5 * time.Minute
	DefaultOrder             = 4
	DefaultUnusableThreshold = 0.9
	DefaultMaxBodyBytes      = 1 << 20
	DefaultBodyTimeout       = 10 * time.Second
	DefaultTokenCheck        = 10 * time.Second
)

// maxBackoffShift bounds the backoff: an action that keeps gaining nothing
// waits at most 2^maxBackoffShift cooldowns (16 x 30m = 8h by default).
const maxBackoffShift = 4

// Config is what the receiver needs, filled from main's flags.
type Config struct {
	ProcPath string // procfs root, normally /proc
	SysPath  string // sysfs root, normally /sys
	PageSize int    // bytes per page; 0 means this machine's

	// TokenFile holds the bearer token Alertmanager must send. It is read at
	// start and again on ReloadToken (SIGHUP) or when the file changes.
	TokenFile string
	// AllowUnauthenticated lets the receiver start without a token: the
	// operator says the endpoint is protected otherwise (web config basic
	// auth or client certificates, a network policy).
	AllowUnauthenticated bool

	// Actions is the allowlist; nil means none (every alert is skipped as
	// not_allowed), which is the safe reading of an empty flag.
	Actions []Action

	// NodeName is compared with the alert's node label (Kubernetes node
	// name); empty means the hostname.
	NodeName string
	// TrustLoopback makes instance labels naming a loopback address or
	// localhost count as this host. Off by default: a loopback address names
	// whichever host reads it, so in a fleet it identifies no one.
	TrustLoopback bool

	Cooldown    time.Duration // per action (and NUMA node for per-node compaction)
	DryRun      bool          // decide, log and count, write nothing
	Sync        bool          // sync(2) before drop_caches
	SyncTimeout time.Duration // how long to wait for sync(2)
	Timeout     time.Duration // bound on one action, measurements included

	DropCachesLevel int // 1 page cache, 2 dentries and inodes, 3 both

	// Order and UnusableThreshold are the re-check criterion shared with the
	// shipped alert rules: a zone (other than DMA, or the zone the alert
	// names) needs the cure when its unusable free index at Order is at
	// least UnusableThreshold. Order is also the order the gain is counted at.
	Order             int
	UnusableThreshold float64

	MaxBodyBytes int64         // larger bodies are answered 413
	BodyTimeout  time.Duration // bound on reading one request body

	// StateFile keeps cooldowns, backoff and dedupe across restarts; empty
	// keeps them in memory only.
	StateFile string

	// RebootSentinel is the file created when the cure keeps failing (see
	// escalate.go), for kured to reboot the node; empty never creates one.
	RebootSentinel string

	// TokenCheckInterval is how often the token file is checked for changes.
	TokenCheckInterval time.Duration

	// Fleet bounds how many nodes act at once (Leases on the API server);
	// MaxConcurrent 0 leaves it off. Its Identity is NodeName.
	Fleet fleet.Config

	// Clock returns the current time; nil means time.Now. Tests inject one.
	Clock func() time.Time
}

func (c *Config) setDefaults() error {
	if c.ProcPath == "" {
		c.ProcPath = "/proc"
	}
	if c.SysPath == "" {
		c.SysPath = "/sys"
	}
	if c.PageSize == 0 {
		c.PageSize = os.Getpagesize()
	}
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no node name given and no hostname: %w", err)
		}
		c.NodeName = h
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = DefaultSyncTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.DropCachesLevel == 0 {
		c.DropCachesLevel = DefaultDropCachesLevel
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.TokenCheckInterval == 0 {
		c.TokenCheckInterval = DefaultTokenCheck
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c.validate()
}

func (c *Config) validate() error {
	var errs []error
	if c.PageSize <= 0 || c.PageSize&(c.PageSize-1) != 0 {
		errs = append(errs, fmt.Errorf("page size %d is not a power of two", c.PageSize))
	}
	if c.TokenFile == "" && !c.AllowUnauthenticated {
		errs = append(errs, errors.New("no token file: set --remediate.token-file, or --remediate.allow-unauthenticated if the endpoint is protected otherwise"))
	}
	for _, a := range c.Actions {
		if _, ok := knownAction(string(a)); !ok {
			errs = append(errs, fmt.Errorf("unknown action %q (known: drop_caches, compact, drop_caches_then_compact)", a))
		}
	}
	if c.DropCachesLevel < 1 || c.DropCachesLevel > 3 {
		errs = append(errs, fmt.Errorf("drop_caches level %d is not 1, 2 or 3", c.DropCachesLevel))
	}
	if c.Order < 0 || c.Order >= fragmentation.MaxOrders {
		errs = append(errs, fmt.Errorf("order %d is not in 0..%d", c.Order, fragmentation.MaxOrders-1))
	}
	if !(c.UnusableThreshold >= 0 && c.UnusableThreshold <= 1) { // also rejects NaN
		errs = append(errs, fmt.Errorf("unusable threshold %v is not in 0..1", c.UnusableThreshold))
	}
	if c.Cooldown < 0 || c.SyncTimeout < 0 || c.Timeout < 0 || c.BodyTimeout < 0 || c.TokenCheckInterval < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d is negative", c.MaxBodyBytes))
	}
	return errors.Join(errs...)
}

// ParseActions turns a comma-separated allowlist into actions, rejecting
// unknown names so that a typo in a flag fails at start, not at 3 a.m.
func ParseActions(list []string) ([]Action, error) {
	var out []Action
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		a, ok := knownAction(s)
		if !ok {
			return nil, fmt.Errorf("unknown action %q (known: drop_caches, compact, drop_caches_then_compact)", s)
		}
		out = append(out, a)
	}
	return out, nil
}
