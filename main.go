// Command memfrag_exporter serves Prometheus metrics about Linux memory
// fragmentation and, when enabled, cures it on its own node when
// Alertmanager asks. This file is wiring only: flags, logger, registries and
// the HTTP server.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	slgk "github.com/tjhop/slog-gokit"

	"github.com/memfrag/memfrag_exporter/collector"
	"github.com/memfrag/memfrag_exporter/internal/fastgzip"
	"github.com/memfrag/memfrag_exporter/internal/processcollector"
	"github.com/memfrag/memfrag_exporter/remediate"
	"github.com/memfrag/memfrag_exporter/report"
)

const exporterName = "memfrag_exporter"

// defaultAddress lies outside 9100-9999, the range the Prometheus wiki hands
// out to exporters (fully allocated since 2023).
const defaultAddress = ":19710"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	app := kingpin.New(exporterName, "Prometheus exporter for Linux memory fragmentation (buddyinfo, the kernel's fragmentation indices, compaction) with an optional Alertmanager-driven cure.")
	var (
		webConfig      = kingpinflag.AddFlags(app, defaultAddress)
		metricsPath    = app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
		maxRequests    = app.Flag("web.max-requests", "Maximum number of parallel scrape requests. 0 disables the limit.").Default("40").Int()
		disableExpMetr = app.Flag("web.disable-exporter-metrics", "Exclude the exporter's own process and Go runtime metrics (process_*, go_*).").Bool()
		procPath       = app.Flag("path.procfs", "procfs mountpoint.").Default("/proc").String()
		sysPath        = app.Flag("path.sysfs", "sysfs mountpoint.").Default("/sys").String()
		logLevel       = app.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").Default("info").Enum("debug", "info", "warn", "error")
		maxProcs       = app.Flag("runtime.gomaxprocs", "The target number of CPUs the Go runtime may use at once (GOMAXPROCS); as node_exporter, 1 by default: a scrape is sequential work and extra threads only add scheduling overhead and memory.").Envar("GOMAXPROCS").Default("1").Int()
		gcPercent      = app.Flag("runtime.gogc", "Go garbage collection target percentage (GOGC), or off. 40 by default: a scrape's garbage is short-lived, and the smaller heap goal keeps about 2 MiB less resident than 100 for about 9% more of a scrape's CPU (bench/compare.sh).").Envar("GOGC").Default("40").String()
		logFormat      = app.Flag("log.format", "Output format of log messages. One of: [logfmt, json]").Default("logfmt").Enum("logfmt", "json")
	)
	// Collector flags. --collector.<name> for each collector; flags of one
	// collector's own settings follow in its block.
	collectorFlags := map[string]*bool{}
	for _, c := range collector.Available() {
		def := "false"
		if c.DefaultEnabled {
			def = "true"
		}
		collectorFlags[c.Name] = app.Flag("collector."+c.Name, "Enable the "+c.Name+" collector: "+c.Help+".").Default(def).Bool()
	}
	// --- pagetypeinfo / kmsg collector settings (issue 6) ---
	pagetypeinfoInterval := app.Flag("collector.pagetypeinfo.min-interval", "Read /proc/pagetypeinfo at most this often and serve the last result in between: the kernel holds the zone lock while it prints the file (measured 0.5 ms calm, 10-28 ms fragmented). 0 reads on every scrape.").Default(collector.DefaultPagetypeinfoMinInterval.String()).Duration()
	kmsgPath := app.Flag("collector.kmsg.path", "Kernel log device the kmsg collector reads allocation failures from.").Default(collector.DefaultKmsgPath).String()

	// --- remediation flags (issue 3) ---
	hostname, _ := os.Hostname()
	remEnable := app.Flag("remediate.enable", "Serve POST /remediate: an Alertmanager webhook that cures fragmentation on this node (drop_caches, compaction) when an alert for this node asks. Off by default; when off the path does not exist.").Bool()
	remTokenFile := app.Flag("remediate.token-file", "File holding the bearer token Alertmanager must send (Authorization: Bearer <token>). Re-read on SIGHUP and when the file changes. Required unless --remediate.allow-unauthenticated.").String()
	remAllowUnauth := app.Flag("remediate.allow-unauthenticated", "Serve /remediate without a token, on purpose: --web.config.file (basic auth, client certificates) or the network protects it.").Bool()
	remActions := app.Flag("remediate.actions", "Comma-separated allowlist of the actions alerts may ask for (label remediate): drop_caches, compact, drop_caches_then_compact.").Default("drop_caches,compact,drop_caches_then_compact").String()
	remNodeName := app.Flag("remediate.node-name", "Name this node answers to in an alert's node label (in Kubernetes, the downward-API spec.nodeName); also accepted as the host part of instance.").Default(hostname).String()
	remTrustLoopback := app.Flag("remediate.trust-loopback-instance", "Count an instance label naming localhost or a loopback address (127.0.0.1:19710) as this host. For single-host setups only: in a fleet a loopback address names no host in particular.").Bool()
	remCooldown := app.Flag("remediate.cooldown", "Minimum time between two runs of the same action (per NUMA node for node compaction). An action that gained nothing waits twice as long each time, up to 16 cooldowns.").Default(remediate.DefaultCooldown.String()).Duration()
	remDryRun := app.Flag("remediate.dry-run", "Decide, log and count every remediation, but write nothing.").Bool()
	remDropLevel := app.Flag("remediate.drop-caches-level", "Value written to /proc/sys/vm/drop_caches: 1 page cache, 2 dentries and inodes, 3 both.").Default(strconv.Itoa(remediate.DefaultDropCachesLevel)).Int()
	remSync := app.Flag("remediate.sync", "Run sync(2) before drop_caches, so that dirty pages can be dropped too.").Default("true").Bool()
	remSyncTimeout := app.Flag("remediate.sync-timeout", "How long to wait for sync(2); when it takes longer the action stops before dropping caches.").Default(remediate.DefaultSyncTimeout.String()).Duration()
	remTimeout := app.Flag("remediate.timeout", "Upper bound on one action, measurements included; shutdown waits for it.").Default(remediate.DefaultTimeout.String()).Duration()
	remOrder := app.Flag("remediate.order", "Allocation order of the re-check before acting and of the gain measured after (keep equal to the alert rules'); also the order the landing page judges by default.").Default(strconv.Itoa(remediate.DefaultOrder)).Int()
	remThreshold := app.Flag("remediate.unusable-threshold", "Act only while some zone (other than DMA, or the zone the alert names) has an unusable free index at --remediate.order of at least this (keep equal to the alert rules'). Also the at-risk line of the landing page and inspect.").Default(strconv.FormatFloat(remediate.DefaultUnusableThreshold, 'g', -1, 64)).Float64()
	remMaxBody := app.Flag("remediate.max-body-bytes", "Largest webhook body accepted; larger ones are answered 413.").Default(strconv.Itoa(remediate.DefaultMaxBodyBytes)).Int64()

	serveCmd := app.Command("serve", "Serve metrics (the default).").Default()
	// --- inspect command (issue 7) ---
	inspectCmd := app.Command("inspect", "Read buddyinfo and zoneinfo once and print, per zone, free blocks and bytes by order, both fragmentation indices, the compaction score and a verdict (at risk from --remediate.unusable-threshold). Exit status: 0 OK, 1 the --order trips --fail-on in a zone other than DMA, 2 error (the node-problem-detector plugin convention).")
	inspectOrder := inspectCmd.Flag("order", "Allocation order to judge (4 = 64 KiB blocks with 4 KiB pages). Independent of --remediate.order.").Default("4").Int()
	inspectOutput := inspectCmd.Flag("output", "Output format: table for people, json for scripts.").Default("table").Enum("table", "json")
	inspectFailOn := inspectCmd.Flag("fail-on", "Exit 1 when the --order is, in some zone other than DMA: failing = failing for fragmentation (the cure is compaction); at-risk = anything but OK (at risk from --remediate.unusable-threshold, or failing for either cause).").Default(report.FailOnFailing).Enum(report.FailOnFailing, report.FailOnAtRisk)

	app.Version(version.Print(exporterName))
	app.HelpFlag.Short('h')
	command, err := app.Parse(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := collector.Config{ProcPath: *procPath, SysPath: *sysPath, Enabled: map[string]bool{}}
	for name, on := range collectorFlags {
		cfg.Enabled[name] = *on
	}
	// issue 6: pagetypeinfo / kmsg settings.
	cfg.Pagetypeinfo.MinInterval = *pagetypeinfoInterval
	cfg.Kmsg.Path = *kmsgPath
	switch command {
	case serveCmd.FullCommand():
	case inspectCmd.FullCommand():
		return report.Inspect(report.Config{ProcPath: *procPath, SysPath: *sysPath, UnusableThreshold: *remThreshold},
			report.InspectOptions{Order: *inspectOrder, Output: *inspectOutput, FailOn: *inspectFailOn}, os.Stdout, os.Stderr)
	}

	if *maxProcs < 1 {
		fmt.Fprintln(os.Stderr, "--runtime.gomaxprocs must be at least 1")
		return 2
	}
	runtime.GOMAXPROCS(*maxProcs)
	if *gcPercent == "off" {
		debug.SetGCPercent(-1)
	} else if n, err := strconv.Atoi(*gcPercent); err == nil && n > 0 {
		debug.SetGCPercent(n)
	} else {
		fmt.Fprintf(os.Stderr, "--runtime.gogc must be a positive integer or off, not %q\n", *gcPercent)
		return 2
	}
	logger, slogger := newLogger(*logLevel, *logFormat)
	level.Info(logger).Log("msg", "starting "+exporterName, "version", version.Info(), "build_context", version.BuildContext())

	exporter, err := collector.New(cfg, logger)
	if err != nil {
		level.Error(logger).Log("msg", "cannot set up collectors", "err", err)
		return 1
	}
	defer exporter.Close()
	level.Info(logger).Log("msg", "collectors enabled", "collectors", strings.Join(exporter.Enabled(), ","))

	registry := newRegistry(*procPath, !*disableExpMetr)

	// --- remediation wiring (issue 3) ---
	// remediation serves POST /remediate; nil unless --remediate.enable.
	var remediation *remediate.Receiver
	if *remEnable {
		actions, err := remediate.ParseActions(strings.Split(*remActions, ","))
		if err != nil {
			level.Error(logger).Log("msg", "bad --remediate.actions", "err", err)
			return 1
		}
		remediation, err = remediate.New(remediate.Config{
			ProcPath: *procPath, SysPath: *sysPath,
			TokenFile: *remTokenFile, AllowUnauthenticated: *remAllowUnauth,
			Actions: actions, NodeName: *remNodeName, TrustLoopback: *remTrustLoopback,
			Cooldown: *remCooldown, DryRun: *remDryRun,
			DropCachesLevel: *remDropLevel, Sync: *remSync, SyncTimeout: *remSyncTimeout, Timeout: *remTimeout,
			Order: *remOrder, UnusableThreshold: *remThreshold, MaxBodyBytes: *remMaxBody,
		}, log.With(logger, "component", "remediate"))
		if err != nil {
			level.Error(logger).Log("msg", "cannot set up remediation", "err", err)
			return 1
		}
		registry.MustRegister(remediation)
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				remediation.ReloadToken()
			}
		}()
	}

	mux := http.NewServeMux()
	if remediation != nil {
		mux.Handle("/remediate", remediation)
	}
	mux.Handle(*metricsPath, metricsHandler(exporter.WithGatherer(registry), registry, *maxRequests, logger))
	// Probes for Kubernetes and load balancers: the process is up and serving.
	// They do not read the kernel, so a broken source never restarts the pod.
	for _, p := range []string{"/-/healthy", "/-/ready"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "OK")
		})
	}

	// --- landing page (issue 7) ---
	// The landing page reads the kernel on every request (its own Reader,
	// so it never waits on a scrape) and renders the fragmentation report
	// into exporter-toolkit's page. It judges --remediate.order (unless
	// ?order=N) at --remediate.unusable-threshold, the alert criterion.
	// ?refresh=SECONDS reloads it.
	if *metricsPath != "/" {
		pageReader, err := report.NewReader(report.Config{ProcPath: *procPath, SysPath: *sysPath, UnusableThreshold: *remThreshold})
		if err != nil {
			level.Error(logger).Log("msg", "bad --remediate.unusable-threshold", "err", err)
			return 1
		}
		defer pageReader.Close()
		landing, err := report.NewPage(report.PageConfig{
			Landing: web.LandingConfig{
				Name:        "Memory fragmentation exporter",
				Description: "Linux memory fragmentation: free blocks by order, the kernel's fragmentation indices and compaction score",
				Version:     version.Info(),
				Links:       []web.LandingLinks{{Address: *metricsPath, Text: "Metrics"}},
				Profiling:   "false", // no pprof handlers are registered
			},
			Reader: pageReader,
			Order:  *remOrder,
			Recent: pageRemediations(remediation),
		})
		if err != nil {
			level.Error(logger).Log("msg", "cannot build landing page", "err", err)
			return 1
		}
		mux.Handle("/", landing)
	}
	// (pageRemediations, at the end of this file, belongs to this block.)

	server := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- web.ListenAndServe(server, webConfig, slogger) }()
	select {
	case err := <-served:
		level.Error(logger).Log("msg", "cannot serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	level.Info(logger).Log("msg", "shutting down: no new requests, waiting for running ones")
	code := 0
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		level.Error(logger).Log("msg", "shutdown incomplete", "err", err)
		code = 1
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		level.Error(logger).Log("msg", "server ended with error", "err", err)
	}
	if remediation != nil {
		// No webhook is taken any more (even when slow requests outlived the
		// server's shutdown); the running action finishes or hits its timeout.
		ctx, cancel := context.WithTimeout(context.Background(), *remTimeout+5*time.Second)
		defer cancel()
		if err := remediation.Shutdown(ctx); err != nil {
			level.Error(logger).Log("msg", "remediation shutdown incomplete", "err", err)
			code = 1
		}
	}
	if code != 0 {
		return code
	}
	level.Info(logger).Log("msg", "stopped")
	return 0
}

// newRegistry registers what is served next to the exporter's own families
// (collector.Exporter.Gather): build info and, unless disabled, the process
// and Go runtime metrics; remediation adds its metrics when enabled.
func newRegistry(procPath string, exporterMetrics bool) *prometheus.Registry {
	registry := prometheus.NewRegistry()
	registry.MustRegister(versioncollector.NewCollector(exporterName))
	if exporterMetrics {
		registry.MustRegister(processcollector.New(procPath), collectors.NewGoCollector())
	}
	return registry
}

// metricsHandler serves gatherer, gzipped (see fastgzip);
// promhttp's own error counter goes to registry.
func metricsHandler(gatherer prometheus.TransactionalGatherer, registry *prometheus.Registry, maxRequests int, logger log.Logger) http.Handler {
	return fastgzip.Handler(promhttp.HandlerForTransactional(gatherer, promhttp.HandlerOpts{
		DisableCompression:  true,
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            stdlogAdapter{logger},
		MaxRequestsInFlight: maxRequests,
		Registry:            registry,
	}))
}

// newLogger builds the go-kit logger the packages use and bridges it to the
// *slog.Logger exporter-toolkit wants.
func newLogger(lvl, format string) (log.Logger, *slog.Logger) {
	var base log.Logger
	w := log.NewSyncWriter(os.Stderr)
	if format == "json" {
		base = log.NewJSONLogger(w)
	} else {
		base = log.NewLogfmtLogger(w)
	}
	var sl slog.Level
	switch lvl {
	case "debug":
		base, sl = level.NewFilter(base, level.AllowDebug()), slog.LevelDebug
	case "warn":
		base, sl = level.NewFilter(base, level.AllowWarn()), slog.LevelWarn
	case "error":
		base, sl = level.NewFilter(base, level.AllowError()), slog.LevelError
	default:
		base, sl = level.NewFilter(base, level.AllowInfo()), slog.LevelInfo
	}
	// slog records carry their own time (logged as time=): no ts= on the bridge.
	return log.With(base, "ts", log.DefaultTimestampUTC), slog.New(slgk.NewGoKitHandler(base, sl))
}

// stdlogAdapter lets promhttp report encoding errors through go-kit.
type stdlogAdapter struct{ logger log.Logger }

func (a stdlogAdapter) Println(v ...any) {
	level.Error(a.logger).Log("msg", fmt.Sprint(v...))
}

// pageRemediations adapts the receiver's decisions to the landing page's
// rows (landing page, issue 7); nil hides the section when remediation is off.
func pageRemediations(rec *remediate.Receiver) func() []report.Remediation {
	if rec == nil {
		return nil
	}
	return func() []report.Remediation {
		ds := rec.Recent()
		out := make([]report.Remediation, len(ds))
		for i, d := range ds {
			// Accepted actions are re-measured once they end; the score is
			// -1 where it could not be computed. Skips measure nothing.
			ran := d.Decision == "accepted" && d.Result != "running"
			reason := d.Reason
			if d.Error != "" {
				reason = d.Error
			}
			out[i] = report.Remediation{
				Time: d.Time, Alert: d.Alertname, Action: d.Action, Node: d.NUMANode, Zone: d.Zone,
				Decision: d.Decision, Result: d.Result, Reason: reason,
				Measured:      ran && (d.Result == "success" || d.ScoreAfter >= 0),
				GainBytes:     d.GainBytes,
				HasScoreDelta: ran && d.ScoreBefore >= 0 && d.ScoreAfter >= 0,
				ScoreDelta:    d.ScoreAfter - d.ScoreBefore,
			}
		}
		return out
	}
}
