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

	serveCmd := app.Command("serve", "Serve metrics (the default).").Default()
	// --- inspect command (issue 7) ---
	inspectCmd := app.Command("inspect", "Read buddyinfo and zoneinfo once and print, per zone, free blocks and bytes by order, both fragmentation indices, the compaction score and a verdict. Exit status: 0 OK, 1 the --order is failing for fragmentation in a zone other than DMA, 2 error (the node-problem-detector plugin convention).")
	inspectOrder := inspectCmd.Flag("order", "Allocation order to judge (4 = 64 KiB blocks with 4 KiB pages).").Default("4").Int()
	inspectOutput := inspectCmd.Flag("output", "Output format: table for people, json for scripts.").Default("table").Enum("table", "json")

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
		return report.Inspect(report.Config{ProcPath: *procPath, SysPath: *sysPath},
			report.InspectOptions{Order: *inspectOrder, Output: *inspectOutput}, os.Stdout, os.Stderr)
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

	registry := prometheus.NewRegistry()
	registry.MustRegister(exporter, versioncollector.NewCollector(exporterName))
	if !*disableExpMetr {
		registry.MustRegister(
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			collectors.NewGoCollector(),
		)
	}

	// --- remediation wiring (issue 3) ---

	mux := http.NewServeMux()
	mux.Handle(*metricsPath, promhttp.HandlerFor(registry, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            stdlogAdapter{logger},
		MaxRequestsInFlight: *maxRequests,
		Registry:            registry,
	}))
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
	// into exporter-toolkit's page. ?order=N and ?refresh=SECONDS tune it.
	if *metricsPath != "/" {
		pageReader := report.NewReader(report.Config{ProcPath: *procPath, SysPath: *sysPath})
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
			Order:  4,
		})
		if err != nil {
			level.Error(logger).Log("msg", "cannot build landing page", "err", err)
			return 1
		}
		mux.Handle("/", landing)
	}

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
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		level.Error(logger).Log("msg", "shutdown incomplete", "err", err)
		return 1
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		level.Error(logger).Log("msg", "server ended with error", "err", err)
	}
	level.Info(logger).Log("msg", "stopped")
	return 0
}

// newLogger builds the go-kit logger the packages use and bridges it to the
// *slog.Logger exporter-toolkit wants.
func newLogger(lvl, format string) (log.Logger, *slog.Logger) {
	var logger log.Logger
	w := log.NewSyncWriter(os.Stderr)
	if format == "json" {
		logger = log.NewJSONLogger(w)
	} else {
		logger = log.NewLogfmtLogger(w)
	}
	logger = log.With(logger, "ts", log.DefaultTimestampUTC)
	var sl slog.Level
	switch lvl {
	case "debug":
		logger, sl = level.NewFilter(logger, level.AllowDebug()), slog.LevelDebug
	case "warn":
		logger, sl = level.NewFilter(logger, level.AllowWarn()), slog.LevelWarn
	case "error":
		logger, sl = level.NewFilter(logger, level.AllowError()), slog.LevelError
	default:
		logger, sl = level.NewFilter(logger, level.AllowInfo()), slog.LevelInfo
	}
	return logger, slog.New(slgk.NewGoKitHandler(logger, sl))
}

// stdlogAdapter lets promhttp report encoding errors through go-kit.
type stdlogAdapter struct{ logger log.Logger }

func (a stdlogAdapter) Println(v ...any) {
	level.Error(a.logger).Log("msg", fmt.Sprint(v...))
}
