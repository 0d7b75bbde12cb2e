package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/mdlayher/vsock"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"

	"github.com/memfrag/memfrag_exporter/collector"
	"github.com/memfrag/memfrag_exporter/internal/fastgzip"
	"github.com/memfrag/memfrag_exporter/internal/processcollector"
	"github.com/memfrag/memfrag_exporter/internal/selfmetrics"
	"github.com/memfrag/memfrag_exporter/remediate"
	"github.com/memfrag/memfrag_exporter/report"
)

// server is the HTTP side of the exporter: metrics, probes, the landing page
// and, when enabled, the remediation receiver.
type server struct {
	opts        *options
	logger      log.Logger
	http        *http.Server
	remediation *remediate.Receiver // nil unless --remediate.enable
	conns       *connLimiter
	closers     []func()
}

// Bounds of the HTTP server against clients that hold connections without
// finishing requests. Alertmanager's and Prometheus's request heads are a
// few hundred bytes and sent at once; the bounds keep 5,000 slow or 15,000
// idle connections from a stranger well inside the DaemonSet's 64 MiB (see
// the README's "What the receiver withstands").
const (
	maxConnections    = 512
	maxHeaderBytes    = 16 << 10
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 30 * time.Second
)

func newServer(o *options, exporter *collector.Exporter, logger log.Logger) (*server, error) {
	s := &server{opts: o, logger: logger, conns: newConnLimiter(maxConnections)}
	errCnt := newErrCounter()
	registry, more := newGatherers(o.exporterMetrics, logger, append(s.conns.collectors(), errCnt)...)
	mux := http.NewServeMux()

	if o.remediateEnable {
		if err := s.setUpRemediation(registry, mux); err != nil {
			s.close()
			return nil, err
		}
	}
	mux.Handle(o.metricsPath, releaseAfterFirst(metricsHandler(exporter.WithGatherer(registry, more...), errCnt, o.maxRequests, logger), logger))
	// Probes for Kubernetes and load balancers: the process is up and serving.
	// They do not read the kernel, so a broken source never restarts the pod.
	for _, p := range []string{"/-/healthy", "/-/ready"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "OK")
		})
	}
	if o.metricsPath != "/" {
		landing, err := s.landingPage()
		if err != nil {
			s.close()
			return nil, err
		}
		mux.Handle("/", limitInFlight(landing, landingPageInFlight))
	}
	s.http = &http.Server{
		Handler:           mux,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       idleTimeout,
		ConnState:         s.conns.connState,
		ConnContext:       fastgzip.ConnContext,
		ErrorLog:          newServerErrorLog(logger, "http"),
	}
	return s, nil
}

// setUpRemediation builds the receiver, registers its metrics, mounts
// /remediate and reloads the token on SIGHUP.
func (s *server) setUpRemediation(registry *prometheus.Registry, mux *http.ServeMux) error {
	cfg, err := s.opts.remediateConfig()
	if err != nil {
		return fmt.Errorf("bad --remediate.actions: %w", err)
	}
	rec, err := remediate.New(cfg, log.With(s.logger, "component", "remediate"))
	if err != nil {
		return fmt.Errorf("cannot set up remediation: %w", err)
	}
	s.remediation = rec
	registry.MustRegister(rec)
	mux.Handle("/remediate", rec)
	s.warnBasicAuth()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	s.closers = append(s.closers, func() { signal.Stop(hup); close(hup) })
	go func() {
		for range hup {
			rec.ReloadToken()
		}
	}()
	return nil
}

// warnBasicAuth says at start when the web config puts basic auth in front
// of /remediate: exporter-toolkit checks every unknown password with bcrypt
// under one lock, so a flood of random passwords delays the real webhook
// past Alertmanager's timeout (README, "What the receiver withstands").
func (s *server) warnBasicAuth() {
	path := ""
	if s.opts.web.WebConfigFile != nil {
		path = *s.opts.web.WebConfigFile
	}
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return // exporter-toolkit reports it when it starts serving
	}
	var c struct {
		Users map[string]string `yaml:"basic_auth_users"`
	}
	if yaml.Unmarshal(data, &c) == nil && len(c.Users) > 0 {
		level.Warn(s.logger).Log("msg", "basic_auth_users in --web.config.file also guard /remediate: every unknown password costs a bcrypt check under one lock, and a flood of them delays Alertmanager's webhook past its timeout; prefer the bearer token (--remediate.token-file) with TLS client certificates", "web_config", path)
	}
}

// landingPage reads the kernel on every request (its own Reader, so it never
// waits on a scrape) and renders the fragmentation report into
// exporter-toolkit's page. It judges --remediate.order (unless ?order=N) at
// --remediate.unusable-threshold, the alert criterion.
func (s *server) landingPage() (http.Handler, error) {
	reader, err := report.NewReader(s.opts.reportConfig())
	if err != nil {
		return nil, fmt.Errorf("bad --remediate.unusable-threshold: %w", err)
	}
	s.closers = append(s.closers, func() { reader.Close() })
	page, err := report.NewPage(report.PageConfig{
		Landing: web.LandingConfig{
			Name:        "Memory fragmentation exporter",
			Description: "Linux memory fragmentation: free blocks by order, the kernel's fragmentation indices and compaction score",
			Version:     version.Info(),
			Links:       []web.LandingLinks{{Address: s.opts.metricsPath, Text: "Metrics"}},
			Profiling:   "false", // no pprof handlers are registered
		},
		Reader: reader,
		Order:  s.opts.remediateOrder,
		Recent: pageRemediations(s.remediation),
		DryRun: s.remediation != nil && s.opts.remediate.DryRun,
		Fleet:  pageFleet(s.remediation),
	})
	if err != nil {
		return nil, fmt.Errorf("cannot build landing page: %w", err)
	}
	return page, nil
}

// serve listens until SIGTERM or SIGINT, then shuts down: no new actions
// from that moment, no new requests, running ones finish, a running action
// finishes or hits its timeout.
func (s *server) serve(slogger *slog.Logger) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	listeners, err := s.listen(slogger)
	if err != nil {
		level.Error(s.logger).Log("msg", "cannot listen", "err", err)
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- web.ServeMultiple(listeners, s.http, s.opts.web, slogger) }()
	select {
	case err := <-served:
		level.Error(s.logger).Log("msg", "cannot serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	if s.remediation != nil {
		// At once, before the drain: a webhook whose body completes while
		// the server shuts down must not start an action.
		s.remediation.StopAccepting()
	}
	return s.shutdown(served)
}

// listen opens what exporter-toolkit's ListenAndServe would (systemd
// activated sockets with --web.systemd-socket, else every
// --web.listen-address, vsock:// included) and puts each behind the
// connection bound.
func (s *server) listen(slogger *slog.Logger) ([]net.Listener, error) {
	var raw []net.Listener
	if f := s.opts.web; f.WebSystemdSocket != nil && *f.WebSystemdSocket {
		slogger.Info("Listening on systemd activated listeners instead of port listeners.")
		ls, err := activation.Listeners()
		if err != nil {
			return nil, fmt.Errorf("systemd socket activation: %w", err)
		}
		if len(ls) == 0 {
			return nil, errors.New("no socket activation file descriptors found")
		}
		raw = ls
	} else {
		if f.WebListenAddresses == nil || len(*f.WebListenAddresses) == 0 {
			return nil, web.ErrNoListeners
		}
		for _, addr := range *f.WebListenAddresses {
			l, err := listenOn(addr)
			if err != nil {
				for _, o := range raw {
					o.Close()
				}
				return nil, err
			}
			raw = append(raw, l)
		}
	}
	out := make([]net.Listener, len(raw))
	for i, l := range raw {
		out[i] = s.conns.listener(l)
	}
	return out, nil
}

func listenOn(addr string) (net.Listener, error) {
	if !strings.HasPrefix(addr, "vsock://") {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listening on %s: %w", addr, err)
		}
		return l, nil
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("bad vsock address %q: %w", addr, err)
	}
	_, portStr, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("bad vsock address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("bad vsock port in %q: %w", addr, err)
	}
	l, err := vsock.Listen(uint32(port), nil)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	return l, nil
}

func (s *server) shutdown(served <-chan error) int {
	level.Info(s.logger).Log("msg", "shutting down: no new requests, waiting for running ones")
	code := 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		level.Error(s.logger).Log("msg", "shutdown incomplete", "err", err)
		code = 1
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		level.Error(s.logger).Log("msg", "server ended with error", "err", err)
	}
	if s.remediation != nil {
		// No webhook is taken any more (even when slow requests outlived the
		// server's shutdown); the running action finishes or hits its timeout.
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.shutdownWait())
		defer cancel()
		if err := s.remediation.Shutdown(ctx); err != nil {
			level.Error(s.logger).Log("msg", "remediation shutdown incomplete", "err", err)
			code = 1
		}
	}
	if code == 0 {
		level.Info(s.logger).Log("msg", "stopped")
	}
	return code
}

func (s *server) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// selfProcPath is the procfs process_* are read from. They describe this
// process, so they come from /proc/self whatever --path.procfs says, as
// client_golang's process collector reads them: another machine's files
// under --path.procfs (a copy, a test tree) have no self, and a host's
// procfs mounted into a container resolves self to this process anyway.
const selfProcPath = "/proc"

// newGatherers sets up what is served next to the exporter's own families
// (collector.Exporter.Gather): a registry, where remediation registers its
// metrics when enabled; build info and owned, collectors of one family each,
// through selfmetrics.Families; and, unless disabled, the process and Go
// runtime metrics through selfmetrics.Gatherer. Should selfmetrics refuse
// any of them, they go into the registry (client_golang's collectors for the
// Go and process metrics), served the same at a higher cost per scrape.
func newGatherers(exporterMetrics bool, logger log.Logger, owned ...prometheus.Collector) (*prometheus.Registry, []prometheus.TransactionalGatherer) {
	registry := prometheus.NewRegistry()
	var more []prometheus.TransactionalGatherer
	owned = append([]prometheus.Collector{versioncollector.NewCollector(exporterName)}, owned...)
	if fams, err := selfmetrics.NewFamilies(owned...); err == nil {
		more = append(more, fams)
	} else {
		level.Warn(logger).Log("msg", "serving build info and the HTTP server's metrics through a registry, at a higher cost per scrape", "err", err)
		registry.MustRegister(owned...)
	}
	if !exporterMetrics {
		return registry, more
	}
	self, err := selfmetrics.New(selfProcPath)
	if err != nil {
		level.Warn(logger).Log("msg", "serving the Go and process metrics through client_golang's collectors, at a higher cost per scrape", "err", err)
		registry.MustRegister(processcollector.New(selfProcPath), collectors.NewGoCollector())
		return registry, more
	}
	return registry, append(more, self)
}

// metricsHandler serves gatherer, gzipped (see fastgzip), in the text
// format through textenc and in other formats through promhttp (see
// textHandler), counting its errors in errCnt. Its error log
// is rate limited: a scraper that resets the connection makes it log one line
// per metric family. At most maxRequests scrapes are in flight, the writing
// of their gzipped responses included.
func metricsHandler(gatherer prometheus.TransactionalGatherer, errCnt *prometheus.CounterVec, maxRequests int, logger log.Logger) http.Handler {
	return limitInFlight(fastgzip.Handler(newTextHandler(gatherer, errCnt, newServerErrorLog(logger, "metrics"))), maxRequests)
}

// pageRemediations adapts the receiver's decisions to the landing page's
// rows; nil hides the section when remediation is off.
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

// pageFleet adapts the fleet budget's slots to the landing page; nil hides
// the section when remediation or the budget is off.
func pageFleet(rec *remediate.Receiver) func() *report.FleetBudget {
	if rec == nil || !rec.FleetOn() {
		return nil
	}
	return func() *report.FleetBudget {
		n, ns, slots, _ := rec.FleetStatus()
		f := &report.FleetBudget{MaxConcurrent: n, Namespace: ns, Slots: make([]report.FleetSlot, len(slots))}
		for i, s := range slots {
			f.Slots[i] = report.FleetSlot{Name: s.Name, Holder: s.Holder, RenewTime: s.RenewTime, Expired: s.Expired, Err: s.Err}
		}
		return f
	}
}
