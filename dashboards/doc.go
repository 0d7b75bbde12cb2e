// Package dashboards holds memfrag_exporter's Grafana dashboard
// (memfrag.json, Grafana's classic JSON model) and its tests.
//
// The package has no code of its own: it exists so `go test` checks the
// dashboard. The static tests run everywhere: the JSON's structure, its
// variables, every panel's queries and layout, and (where promtool is
// installed) that every query parses as PromQL once Grafana's variables are
// substituted. The live test runs every panel and annotation query against a
// real Prometheus that scrapes the exporter and requires data from each; it
// runs when MEMFRAG_PROMETHEUS_URL names that Prometheus, which
// e2e/50-fullstack.sh does.
package dashboards
