# memfrag_exporter container image: one static binary in an empty (scratch)
# filesystem, running as nobody (65534) by default.
#
# Two ways to build, one Dockerfile:
#
#   1. Default (last stage): package a binary built beforehand by `make build`
#      (CGO_ENABLED=0, -trimpath, version ldflags). Needs no base image at all,
#      so it builds offline; this is what CI builds and tests (e2e/20-image.sh),
#      and the way the Prometheus projects package their exporters.
#
#        make build
#        podman build --build-arg VERSION=$(git describe --tags --always) \
#          --build-arg REVISION=$(git rev-parse HEAD) -t memfrag_exporter .
#
#   2. From source, without a local Go toolchain (`--target from-source`):
#      compiles in a golang build stage, so it needs to pull that image.
#
#        docker build --target from-source -t memfrag_exporter .
#
# Buildah/podman and BuildKit skip stages the chosen target does not depend
# on, so the default build never touches the golang image.
#
# The image needs no privilege to serve metrics: the Kubernetes DaemonSet in
# deploy/kubernetes/base mounts the host's /proc and /sys read-only and passes
# --path.procfs/--path.sysfs. Only the remediation overlay runs it as root
# (privileged), because writing /proc/sys/vm needs that; see README.md, "Deploy on Kubernetes".

ARG GO_VERSION=1.26

# Settings shared by both final images.
FROM scratch AS runtime
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="memfrag_exporter" \
      org.opencontainers.image.description="Prometheus exporter for Linux memory fragmentation (buddyinfo, the kernel's fragmentation indices, compaction) with an optional Alertmanager-driven cure" \
      org.opencontainers.image.source="https://github.com/memfrag/memfrag_exporter" \
      org.opencontainers.image.url="https://github.com/memfrag/memfrag_exporter" \
      org.opencontainers.image.documentation="https://github.com/memfrag/memfrag_exporter/blob/main/deploy/README.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
# nobody:nogroup, numeric because scratch has no /etc/passwd. Kubernetes'
# runAsNonRoot can only verify a numeric user.
USER 65534:65534
EXPOSE 19710
ENTRYPOINT ["/bin/memfrag_exporter"]

FROM docker.io/library/golang:${GO_VERSION} AS build
ARG VERSION=dev
ARG REVISION=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
      -X github.com/prometheus/common/version.Version=${VERSION} \
      -X github.com/prometheus/common/version.Revision=${REVISION} \
      -X github.com/prometheus/common/version.Branch=main" \
      -o /out/memfrag_exporter .

FROM runtime AS from-source
COPY --from=build /out/memfrag_exporter /bin/memfrag_exporter

# Default: the binary from `make build` in the build context.
FROM runtime
COPY memfrag_exporter /bin/memfrag_exporter
