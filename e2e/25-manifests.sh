#!/usr/bin/env bash
# Kubernetes manifests: decode every file under deploy/kubernetes strictly
# into the API types, render the kustomizations (base, remediation), check
# their wiring, and run the built exporter with each variant's args, mounts
# mapped to this machine. The test lives in its own Go module
# (deploy/kubernetes/manifest_test), which the root `go test ./...` skips,
# so that k8s.io/api and kustomize stay out of the exporter's go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "FAIL 25-manifests: $*" >&2; exit 1; }
[ -x ./memfrag_exporter ] || fail "./memfrag_exporter missing: run make build first"
bin="$(pwd)/memfrag_exporter"
cd deploy/kubernetes/manifest_test
test -z "$(gofmt -l .)" || fail "gofmt: $(gofmt -l .)"
go vet ./... || fail "go vet"
MEMFRAG_EXPORTER="$bin" timeout 600 go test -count=1 ./... || fail "manifest tests failed (above)"
echo "ok 25-manifests"
