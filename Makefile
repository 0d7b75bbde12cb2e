# `make test` is the one test command (README, .ci/run): Go unit, fuzz-seed,
# live-kernel and end-to-end tests, then every e2e/*.sh script in order.
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
BUILD_USER ?= $(shell id -un)@$(shell hostname)
BUILD_DATE ?= $(shell date -u +%Y%m%d-%H:%M:%S)
LDFLAGS := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=$(BRANCH) \
	-X github.com/prometheus/common/version.BuildUser=$(BUILD_USER) \
	-X github.com/prometheus/common/version.BuildDate=$(BUILD_DATE)

.PHONY: build test deps unit e2e bench release
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o memfrag_exporter .

test: deps unit e2e

deps:
	.ci/install-deps

unit:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	@# -p 1: the live tests of different packages share one kernel (one
	@# fragments and compacts memory while another compares free lists).
	$(GO) test -count=1 -p 1 ./...

# Each script's output goes to e2e/logs/<script>.log and is printed only when
# it fails; V=1 prints everything as it runs.
e2e: build
	@mkdir -p e2e/logs; passed=0; failed=0; for t in e2e/*.sh; do \
		log=e2e/logs/$$(basename $$t .sh).log; start=$$(date +%s); \
		if [ -n "$(V)" ]; then echo "== $$t"; { bash "$$t"; echo $$? >"$$log.rc"; } 2>&1 | tee "$$log"; rc=$$(cat "$$log.rc"); rm -f "$$log.rc"; \
		else bash "$$t" >"$$log" 2>&1; rc=$$?; fi; \
		if [ $$rc -eq 0 ]; then passed=$$((passed+1)); echo "ok   $$t ($$(( $$(date +%s) - start )) s)"; \
		else failed=$$((failed+1)); [ -n "$(V)" ] || cat "$$log"; echo "FAIL $$t (log: $$log)"; fi; \
	done; \
	echo "e2e: $$passed passed, $$failed failed"; [ $$failed -eq 0 ]

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# dist/: tarballs, .deb and .rpm for linux amd64, arm64 and ppc64le, and
# sha256sums.txt (packaging/release.sh).
release:
	VERSION='$(VERSION)' LDFLAGS='$(LDFLAGS)' GO='$(GO)' DIST='$(or $(DIST),dist)' packaging/release.sh
