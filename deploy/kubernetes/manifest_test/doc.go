// Package manifests checks the Kubernetes manifests under deploy/kubernetes
// and generates their PrometheusRule from alerts/.
//
// It is a module of its own so that k8s.io/api, kustomize and the Prometheus
// Operator types never enter the exporter's go.mod; `go test ./...` at the
// repository root skips it, e2e/25-manifests.sh runs it.
package manifests
