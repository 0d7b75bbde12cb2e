// Command memfrag_exporter serves Prometheus metrics about Linux memory
// fragmentation and, when enabled, cures it on its own node when
// Alertmanager asks. The package is wiring only: flags.go turns the command
// line into config values, server.go builds and runs the HTTP server,
// logging.go the logger.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/go-kit/log/level"
	"github.com/prometheus/common/version"

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
	fillVersion(debug.ReadBuildInfo())
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if o.command == "inspect" {
		return report.Inspect(o.reportConfig(), o.inspect, os.Stdout, os.Stderr)
	}
	if err := setRuntime(o.maxProcs, o.gcPercent); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	logger, slogger := newLogger(o.logLevel, o.logFormat)
	level.Info(logger).Log("msg", "starting "+exporterName, "version", version.Info(), "build_context", version.BuildContext())
	for _, err := range checkPaths(o.procPath, o.sysPath) {
		level.Error(logger).Log("msg", "misconfiguration: the kernel's files are not where the flags say; the collectors that read them report success 0", "err", err)
	}

	exporter, err := collector.New(o.collectors, logger)
	if err != nil {
		level.Error(logger).Log("msg", "cannot set up collectors", "err", err)
		return 1
	}
	defer exporter.Close()
	level.Info(logger).Log("msg", "collectors enabled", "collectors", strings.Join(exporter.Enabled(), ","))

	s, err := newServer(o, exporter, logger)
	if err != nil {
		level.Error(logger).Log("msg", "cannot set up the server", "err", err)
		return 1
	}
	defer s.close()
	return s.serve(slogger)
}

// setRuntime applies --runtime.gomaxprocs and --runtime.gogc.
func setRuntime(maxProcs int, gcPercent string) error {
	if maxProcs < 1 {
		return fmt.Errorf("--runtime.gomaxprocs must be at least 1")
	}
	runtime.GOMAXPROCS(maxProcs)
	if gcPercent == "off" {
		debug.SetGCPercent(-1)
	} else if n, err := strconv.Atoi(gcPercent); err == nil && n > 0 {
		debug.SetGCPercent(n)
	} else {
		return fmt.Errorf("--runtime.gogc must be a positive integer or off, not %q", gcPercent)
	}
	return nil
}
