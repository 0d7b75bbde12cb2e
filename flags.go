package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/memfrag/memfrag_exporter/collector"
	"github.com/memfrag/memfrag_exporter/remediate"
	"github.com/memfrag/memfrag_exporter/remediate/fleet"
	"github.com/memfrag/memfrag_exporter/report"
)

// options is everything the command line says, parsed into the config
// values the packages take. Flags live here only: the packages never see
// kingpin.
type options struct {
	command string // "serve" or "inspect"

	web             *web.FlagConfig
	metricsPath     string
	maxRequests     int
	exporterMetrics bool
	procPath        string
	sysPath         string
	logLevel        string
	logFormat       string
	maxProcs        int
	gcPercent       string

	collectors collector.Config

	remediateEnable bool
	remediateOrder  int
	remediateThresh float64
	remediateActs   string
	remediate       remediate.Config

	inspect report.InspectOptions
}

// parseArgs defines every flag and parses args into options.
func parseArgs(args []string) (*options, error) {
	app := kingpin.New(exporterName, "Prometheus exporter for Linux memory fragmentation (buddyinfo, the kernel's fragmentation indices, compaction) with an optional Alertmanager-driven cure.")
	o := &options{}
	o.web = kingpinflag.AddFlags(app, defaultAddress)
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&o.metricsPath)
	app.Flag("web.max-requests", "Maximum number of parallel scrape requests. 0 disables the limit.").Default("40").IntVar(&o.maxRequests)
	disableExporterMetrics := app.Flag("web.disable-exporter-metrics", "Exclude the exporter's own process and Go runtime metrics (process_*, go_*).").Bool()
	app.Flag("path.procfs", "procfs mountpoint.").Default("/proc").StringVar(&o.procPath)
	app.Flag("path.sysfs", "sysfs mountpoint.").Default("/sys").StringVar(&o.sysPath)
	app.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").Default("info").EnumVar(&o.logLevel, "debug", "info", "warn", "error")
	app.Flag("log.format", "Output format of log messages. One of: [logfmt, json]").Default("logfmt").EnumVar(&o.logFormat, "logfmt", "json")
	app.Flag("runtime.gomaxprocs", "The number of CPUs the Go runtime may use at once (GOMAXPROCS). 1 suits a scrape, which is sequential work: more threads add scheduling overhead and memory, not speed.").Envar("GOMAXPROCS").Default("1").IntVar(&o.maxProcs)
	app.Flag("runtime.gogc", "Go garbage collection target percentage (GOGC), or off. Lower keeps less memory resident for more CPU per scrape; the README has the measured trade-off.").Envar("GOGC").Default("40").StringVar(&o.gcPercent)

	// --collector.<name> for each collector; flags of one collector's own
	// settings follow.
	disableDefaults := app.Flag("collector.disable-defaults", "Turn off every collector that is on by default; the ones named with --collector.<name> stay on.").Bool()
	collectorFlags := map[string]*bool{}
	collectorSet := map[string]*bool{}
	for _, c := range collector.Available() {
		def := "false"
		if c.DefaultEnabled {
			def = "true"
		}
		set := new(bool)
		collectorSet[c.Name] = set
		collectorFlags[c.Name] = app.Flag("collector."+c.Name, "Enable the "+c.Name+" collector: "+c.Help+".").Default(def).IsSetByUser(set).Bool()
	}
	app.Flag("collector.pagetypeinfo.min-interval", "Read /proc/pagetypeinfo at most this often and serve the last result in between, since the kernel holds the zone lock while it prints the file (the README has the measured cost). 0 reads on every scrape.").Default(collector.DefaultPagetypeinfoMinInterval.String()).DurationVar(&o.collectors.Pagetypeinfo.MinInterval)
	app.Flag("collector.kmsg.path", "Kernel log device the kmsg collector reads allocation failures from.").Default(collector.DefaultKmsgPath).StringVar(&o.collectors.Kmsg.Path)

	hostname, _ := os.Hostname()
	r := &o.remediate
	app.Flag("remediate.enable", "Serve POST /remediate: an Alertmanager webhook that cures fragmentation on this node (drop_caches, compaction) when an alert for this node asks. Off by default; when off the path does not exist.").BoolVar(&o.remediateEnable)
	app.Flag("remediate.token-file", "File holding the bearer token Alertmanager must send (Authorization: Bearer <token>). Re-read on SIGHUP and when the file changes. Required unless --remediate.allow-unauthenticated.").StringVar(&r.TokenFile)
	app.Flag("remediate.allow-unauthenticated", "Serve /remediate without a token, on purpose: --web.config.file (basic auth, client certificates) or the network protects it.").BoolVar(&r.AllowUnauthenticated)
	app.Flag("remediate.actions", "Comma-separated allowlist of the actions alerts may ask for (label remediate): drop_caches, compact, drop_caches_then_compact.").Default("drop_caches,compact,drop_caches_then_compact").StringVar(&o.remediateActs)
	app.Flag("remediate.node-name", "Name this node answers to in an alert's node label (in Kubernetes, the downward-API spec.nodeName); also accepted as the host part of instance.").Default(hostname).StringVar(&r.NodeName)
	app.Flag("remediate.trust-loopback-instance", "Count an instance label naming localhost or a loopback address (127.0.0.1:19710) as this host. For single-host setups only: in a fleet a loopback address names no host in particular.").BoolVar(&r.TrustLoopback)
	app.Flag("remediate.cooldown", "Minimum time between two runs of the same action (per NUMA node for node compaction). An action that gained nothing waits twice as long each time, up to 16 cooldowns.").Default(remediate.DefaultCooldown.String()).DurationVar(&r.Cooldown)
	app.Flag("remediate.state-file", "File that keeps cooldowns, backoff and dedupe across restarts (a directory that survives the pod or service: /var/lib/memfrag-exporter/state.json). Written atomically on every accepted action. A file that cannot be read or parsed fails closed: no action until one cooldown has passed since start. Empty keeps them in memory only.").StringVar(&r.StateFile)
	app.Flag("remediate.dry-run", "Decide, log and count every remediation, but write nothing.").BoolVar(&r.DryRun)
	app.Flag("remediate.drop-caches-level", "Value written to /proc/sys/vm/drop_caches: 1 page cache, 2 dentries and inodes, 3 both.").Default(strconv.Itoa(remediate.DefaultDropCachesLevel)).IntVar(&r.DropCachesLevel)
	app.Flag("remediate.sync", "Run sync(2) before drop_caches, so that dirty pages can be dropped too.").Default("true").BoolVar(&r.Sync)
	app.Flag("remediate.sync-timeout", "How long to wait for sync(2); when it takes longer the action stops before dropping caches.").Default(remediate.DefaultSyncTimeout.String()).DurationVar(&r.SyncTimeout)
	app.Flag("remediate.timeout", "Upper bound on one action, measurements included; shutdown waits for it.").Default(remediate.DefaultTimeout.String()).DurationVar(&r.Timeout)
	app.Flag("remediate.order", "Allocation order of the re-check before acting and of the gain measured after (keep equal to the alert rules'); also the order the landing page judges by default.").Default(strconv.Itoa(remediate.DefaultOrder)).IntVar(&o.remediateOrder)
	app.Flag("remediate.unusable-threshold", "Act only while some zone (other than DMA, or the zone the alert names) has an unusable free index at --remediate.order of at least this (keep equal to the alert rules'). Also the at-risk line of the landing page and inspect.").Default(strconv.FormatFloat(remediate.DefaultUnusableThreshold, 'g', -1, 64)).Float64Var(&o.remediateThresh)
	app.Flag("remediate.escalate.reboot-sentinel", "Create this file (for kured: its --reboot-sentinel, default /var/run/reboot-required) when the cure keeps failing: the backoff was at its maximum, and after the action the re-check still fails at --remediate.order with no gain. Never in dry run. Empty: never.").StringVar(&r.RebootSentinel)
	// The fleet budget: Leases on the Kubernetes API server bound how many
	// nodes act at once.
	fl := &r.Fleet
	app.Flag("remediate.fleet.max-concurrent", "At most this many nodes of the fleet run a remediation action at the same time, coordinated through Leases <lease-prefix>-0 … -(N-1) on the Kubernetes API server. 0 (the default) turns the fleet budget off: each node decides alone.").Default("0").IntVar(&fl.MaxConcurrent)
	app.Flag("remediate.fleet.namespace", "Namespace of the slot Leases; empty means the pod's own (from the service account mount).").StringVar(&fl.Client.Namespace)
	app.Flag("remediate.fleet.lease-prefix", "Slots are the Leases <prefix>-0 … <prefix>-(N-1).").Default(fleet.DefaultLeasePrefix).StringVar(&fl.LeasePrefix)
	app.Flag("remediate.fleet.lease-duration", "A slot whose holder stops renewing (a dead node) is free after this; the holder renews every third of it while acting. Whole seconds.").Default(fleet.DefaultLeaseDuration.String()).DurationVar(&fl.LeaseDuration)
	app.Flag("remediate.fleet.wait", "How long an accepted alert waits for a free slot (in the background, the host counting as busy) before it is skipped with reason fleet_busy.").Default(fleet.DefaultWait.String()).DurationVar(&fl.Wait)
	app.Flag("remediate.fleet.api-server", "URL of the Kubernetes API server; empty means in-cluster (https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT).").StringVar(&fl.Client.APIServer)
	app.Flag("remediate.fleet.token-file", "Bearer token for the API server, re-read on every request (projected tokens rotate); empty means the service account's.").StringVar(&fl.Client.TokenFile)
	app.Flag("remediate.fleet.ca-file", "CA bundle of the API server's certificate; empty means the service account's ca.crt.").StringVar(&fl.Client.CAFile)
	app.Flag("remediate.max-body-bytes", "Largest webhook body accepted; larger ones are answered 413.").Default(strconv.Itoa(remediate.DefaultMaxBodyBytes)).Int64Var(&r.MaxBodyBytes)

	serveCmd := app.Command("serve", "Serve metrics (the default).").Default()
	inspectCmd := app.Command("inspect", "Read buddyinfo and zoneinfo once and print, per zone, free blocks and bytes by order, both fragmentation indices, the compaction score and a verdict (at risk from --remediate.unusable-threshold). Exit status: 0 OK, 1 the --order trips --fail-on in a zone other than DMA, 2 error (the node-problem-detector plugin convention).")
	inspectCmd.Flag("order", "Allocation order to judge (4 = 64 KiB blocks with 4 KiB pages). Independent of --remediate.order.").Default("4").IntVar(&o.inspect.Order)
	inspectCmd.Flag("output", "Output format: table for people, json for scripts, summary for the verdict line alone (a node-problem-detector condition message).").Default("table").EnumVar(&o.inspect.Output, "table", "json", "summary")
	inspectCmd.Flag("fail-on", "Exit 1 when the --order is, in some zone other than DMA: failing = failing for fragmentation (the cure is compaction); at-risk = anything but OK (at risk from --remediate.unusable-threshold, or failing for either cause).").Default(report.FailOnFailing).EnumVar(&o.inspect.FailOn, report.FailOnFailing, report.FailOnAtRisk)

	app.Version(version.Print(exporterName))
	app.HelpFlag.Short('h')
	app.UsageTemplate(usageTemplate)
	command, err := app.Parse(args)
	if err != nil {
		return nil, fmt.Errorf("%s: error: %w, try --help", exporterName, err)
	}
	switch command {
	case serveCmd.FullCommand():
		o.command = "serve"
	case inspectCmd.FullCommand():
		o.command = "inspect"
	}
	o.exporterMetrics = !*disableExporterMetrics
	o.collectors.ProcPath, o.collectors.SysPath = o.procPath, o.sysPath
	o.collectors.Enabled = map[string]bool{}
	for name, on := range collectorFlags {
		o.collectors.Enabled[name] = *on && (!*disableDefaults || *collectorSet[name])
	}
	r.ProcPath, r.SysPath = o.procPath, o.sysPath
	r.Order, r.UnusableThreshold = o.remediateOrder, o.remediateThresh
	return o, nil
}

// reportConfig is what the landing page and inspect read the machine with.
func (o *options) reportConfig() report.Config {
	return report.Config{ProcPath: o.procPath, SysPath: o.sysPath, UnusableThreshold: o.remediateThresh}
}

// remediateConfig completes the receiver's config with the parsed allowlist.
func (o *options) remediateConfig() (remediate.Config, error) {
	actions, err := remediate.ParseActions(strings.Split(o.remediateActs, ","))
	if err != nil {
		return remediate.Config{}, err
	}
	c := o.remediate
	c.Actions = actions
	return c, nil
}

// shutdownWait bounds how long shutdown waits for a running action.
func (o *options) shutdownWait() time.Duration { return o.remediate.Timeout + 5*time.Second }
