// Command gen-prometheusrule writes deploy/kubernetes/base/prometheusrule.yaml
// from the Prometheus rule files in alerts/, so that the Prometheus Operator
// loads exactly the rules that promtool tests. Run it from its module
// (deploy/kubernetes/manifest_test); TestPrometheusRuleUpToDate fails while
// the committed file is stale.
package main

import (
	"flag"
	"fmt"
	"os"

	manifests "github.com/memfrag/memfrag_exporter/deploy/kubernetes/manifest_test"
)

func main() {
	alerts := flag.String("alerts", "../../../alerts", "directory of Prometheus rule files")
	out := flag.String("out", "../base/prometheusrule.yaml", "PrometheusRule manifest to write")
	flag.Parse()
	data, err := manifests.PrometheusRule(*alerts, "alerts")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-prometheusrule:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen-prometheusrule:", err)
		os.Exit(1)
	}
}
