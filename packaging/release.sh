#!/usr/bin/env bash
# Release artifacts into dist/, the way Prometheus projects ship them:
#   memfrag_exporter-VERSION.linux-ARCH.tar.gz  (directory memfrag_exporter-VERSION.linux-ARCH/
#                                                with the static binary and LICENSE)
#   memfrag-exporter_VERSION_ARCH.deb, memfrag-exporter-VERSION-1.ARCH.rpm  (nfpm)
#   sha256sums.txt
# Called by `make release VERSION=X.Y.Z`, which passes VERSION and LDFLAGS.
# ARCHES overrides the architectures (Go names), DIST the output directory.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:?set VERSION=X.Y.Z}"
: "${LDFLAGS:?run through make release}"
if ! [[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
	echo "release: VERSION must be X.Y.Z or X.Y.Z-suffix, not '$VERSION'" >&2
	exit 1
fi
GO=${GO:-go}
ARCHES=${ARCHES:-amd64 arm64 ppc64le}
NFPM_VERSION=v2.45.2
DIST=${DIST:-dist}

# nfpm is built once per version into a cache outside the checkout.
cache=${MEMFRAG_CACHE:-/var/cache/memfrag-ci}
mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=${XDG_CACHE_HOME:-$HOME/.cache}/memfrag
nfpm=$cache/nfpm-$NFPM_VERSION/nfpm
if [ ! -x "$nfpm" ]; then
	echo "release: building nfpm $NFPM_VERSION into $(dirname "$nfpm")"
	GOBIN=$(dirname "$nfpm") "$GO" install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
fi

# Every file in the archives carries the commit time, not the time of the
# build.
mtime=$(git log -1 --format=%cI 2>/dev/null || date -u +%FT%TZ)
export SOURCE_DATE_EPOCH=$(date -d "$mtime" +%s)

rm -rf "$DIST"
mkdir -p "$DIST/build"
for arch in $ARCHES; do
	name=memfrag_exporter-$VERSION.linux-$arch
	dir=$DIST/build/$name
	mkdir -p "$dir"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$dir/memfrag_exporter" .
	cp LICENSE "$dir/"
	[ ! -f NOTICE ] || cp NOTICE "$dir/"
	tar -C "$DIST/build" --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" -c "$name" |
		gzip -n -9 >"$DIST/$name.tar.gz"
	mkdir -p dist/build/package
	cp "$dir/memfrag_exporter" dist/build/package/
	for packager in deb rpm; do
		if ! out=$(VERSION=$VERSION ARCH=$arch "$nfpm" package --config packaging/nfpm.yaml \
			--packager "$packager" --target "$DIST/" 2>&1); then
			echo "release: nfpm $packager $arch failed: $out" >&2
			exit 1
		fi
	done
done
rm -rf "$DIST/build" dist/build/package
rmdir dist/build dist 2>/dev/null || true
(cd "$DIST" && sha256sum -- *.tar.gz *.deb *.rpm >sha256sums.txt)
ls -l "$DIST"
