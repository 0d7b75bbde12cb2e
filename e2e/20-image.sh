#!/usr/bin/env bash
# Container image end to end: build the Dockerfile with podman (default
# target: the prebuilt ./memfrag_exporter, no base image pulled), check the
# image config (non-root user, exec-form entrypoint, port, OCI labels), export
# its filesystem, and run the binary from it the way the DaemonSet does: as the
# image's user, on a read-only root, with the host /proc and /sys bind-mounted
# read-only at /host/proc and /host/sys. Then scrape it.
#
# `podman run` does not work on this machine's cgroup setup, so the container
# is emulated with unshare (private mount namespace) + chroot. Everything
# podman stores goes to a temporary --root, so nothing is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL 20-image: $*" >&2; exit 1; }
command -v podman >/dev/null || fail "podman not installed (add it via .ci/apt-packages)"
command -v unshare >/dev/null || fail "unshare (util-linux) not installed"
[ -x ./memfrag_exporter ] || fail "./memfrag_exporter missing: run make build first"
[ "$(id -u)" = 0 ] || fail "needs root (bind mounts, chroot); CI runs as root"

# `--target from-source` compiles the context as .dockerignore filters it
# (it needs the golang image, so it is not built here): every package the
# binary imports must survive the filter.
for dir in $(go list -deps -f '{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}' . | sed "s#^$PWD/\{0,1\}##"); do
  top=${dir%%/*}
  [ -z "$dir" ] && continue
  if grep -qx "$top" .dockerignore; then fail ".dockerignore drops $dir, which the binary imports: --target from-source would not build"; fi
done

tmp=$(mktemp -d /tmp/memfrag-image.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

pm() {
  podman --root "$tmp/storage" --runroot "$tmp/run" --storage-driver vfs \
    --cgroup-manager cgroupfs --events-backend none "$@"
}

# The default target packages ./memfrag_exporter as built, so the image's
# labels must carry that binary's version and revision (the release flow:
# make build, then podman build with the same VERSION/REVISION).
vline=$(./memfrag_exporter --version 2>&1 | head -n1)
version=$(echo "$vline" | sed -n 's/^memfrag_exporter, version \([^ ]*\) .*/\1/p')
revision=$(echo "$vline" | sed -n 's/.*revision: \([^)]*\)).*/\1/p')
[ -n "$version" ] && [ -n "$revision" ] || fail "cannot read version/revision from '$vline'"
image=localhost/memfrag_exporter:e2e

echo "building image (podman build, prebuilt binary)"
pm build --quiet --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t "$image" . >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log" >&2; fail "podman build failed"; }

inspect() { pm image inspect --format "$1" "$image"; }
user=$(inspect '{{.Config.User}}')
entrypoint=$(inspect '{{json .Config.Entrypoint}}')
ports=$(inspect '{{json .Config.ExposedPorts}}')
label_version=$(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}')
label_revision=$(inspect '{{index .Config.Labels "org.opencontainers.image.revision"}}')
label_source=$(inspect '{{index .Config.Labels "org.opencontainers.image.source"}}')
[ "$user" = "65534:65534" ] || fail "image user is '$user', want 65534:65534 (non-root by default)"
[ "$entrypoint" = '["/bin/memfrag_exporter"]' ] || fail "entrypoint is $entrypoint, want exec form [\"/bin/memfrag_exporter\"]"
case "$ports" in *'"19710/tcp"'*) ;; *) fail "image exposes $ports, want 19710/tcp" ;; esac
[ "$label_version" = "$version" ] || fail "label org.opencontainers.image.version=$label_version, want $version"
[ "$label_revision" = "$revision" ] || fail "label org.opencontainers.image.revision=$label_revision, want $revision"
[ -n "$label_source" ] || fail "label org.opencontainers.image.source missing"

echo "exporting the image filesystem"
rootfs="$tmp/rootfs"
mkdir -p "$rootfs"
ctr=$(pm create "$image")
pm export "$ctr" | tar -x -C "$rootfs"
pm rm "$ctr" >/dev/null
# scratch + one binary: no shell, no libc, nothing else to patch or exploit.
files=$(cd "$rootfs" && find . -type f | sort | tr '\n' ' ')
[ "$files" = "./bin/memfrag_exporter " ] || fail "image holds unexpected files: $files"
mkdir -p "$rootfs/host/proc" "$rootfs/host/sys"

# A free loopback port (bounded search); the exporter's own default port may
# be taken by a developer's running copy.
port=""
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || fail "no free loopback port found"

echo "running the image's binary under chroot as $user on 127.0.0.1:$port"
entry=$(echo "$entrypoint" | sed 's/^\["\(.*\)"\]$/\1/')
# In a private mount namespace: read-only root (readOnlyRootFilesystem) and
# read-only host /proc and /sys (the DaemonSet's hostPath mounts).
unshare --mount --propagation private sh -c '
  set -e
  root=$1; shift
  mount --bind "$root" "$root"
  mount --rbind /proc "$root/host/proc"
  mount -o remount,bind,ro "$root/host/proc"
  mount --rbind /sys "$root/host/sys"
  mount -o remount,bind,ro "$root/host/sys"
  mount -o remount,bind,ro "$root"
  exec chroot --userspec="$1" "$root" "$2" --web.listen-address="$3" \
    --path.procfs=/host/proc --path.sysfs=/host/sys
' sh "$rootfs" "$user" "$entry" "127.0.0.1:$port" >"$tmp/exporter.log" 2>&1 &
pid=$!

ready=""
for _ in $(seq 1 50); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/-/ready" 2>/dev/null; then ready=1; break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/exporter.log" >&2; fail "exporter exited before becoming ready"; }
  sleep 0.2
done
[ -n "$ready" ] || { cat "$tmp/exporter.log" >&2; fail "exporter not ready within 10s"; }

uid=$(awk '/^Uid:/ {print $2":"$3}' "/proc/$pid/status")
[ "$uid" = "65534:65534" ] || fail "exporter runs as uid $uid, want 65534 (real:effective)"

curl -fsS "http://127.0.0.1:$port/-/healthy" >/dev/null || fail "/-/healthy failed"
curl -fsS "http://127.0.0.1:$port/metrics" >"$tmp/metrics" || fail "scrape of /metrics failed"
grep -q '^memfrag_free_blocks{' "$tmp/metrics" || fail "memfrag_free_blocks missing from the scrape"
grep -q "^memfrag_exporter_build_info{.*version=\"$version\"" "$tmp/metrics" \
  || fail "memfrag_exporter_build_info does not carry version=$version (image label and binary disagree)"
# Every default collector must work as nobody on a read-only root: this is
# what the metrics-only DaemonSet relies on.
if grep '^memfrag_scrape_collector_success{' "$tmp/metrics" | grep -v ' 1$'; then
  cat "$tmp/exporter.log" >&2
  fail "a collector failed when run unprivileged from the image (above)"
fi
n=$(grep -c '^memfrag_' "$tmp/metrics")
if command -v promtool >/dev/null; then
  promtool check metrics <"$tmp/metrics" || fail "promtool check metrics found problems"
  echo "promtool check metrics: ok"
else
  echo "promtool not installed: skipping promtool check metrics"
fi

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" = 0 ] || { cat "$tmp/exporter.log" >&2; fail "exporter exited $rc on SIGTERM, want 0"; }
echo "ok 20-image: image built, runs as $user from a read-only scratch root, $n memfrag_* samples scraped"
