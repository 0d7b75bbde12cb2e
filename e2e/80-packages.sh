#!/usr/bin/env bash
# Release artifacts end to end: `make release` for amd64, arm64 and ppc64le
# into a temp dir, then
#  - sha256sums.txt verifies, every tarball holds exactly
#    memfrag_exporter-VERSION.linux-ARCH/{memfrag_exporter,LICENSE}, the
#    binary is for ARCH, static (CGO_ENABLED=0) and carries VERSION;
#  - the .rpm holds the same files with /etc/default as its config file;
#  - the systemd unit and its remediation drop-in pass systemd-analyze verify;
#  - the .deb of this machine's architecture installs (dpkg -i): binary,
#    unit and conffile in place, nothing enabled or started, the installed
#    unit verifies, the installed binary reports VERSION and the revision
#    and runs inspect; an edited conffile survives a reinstall;
#  - dpkg --purge leaves none of the package's files, conffile included.
# The package is purged on exit whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL 80-packages: $*" >&2; exit 1; }
for c in dpkg dpkg-query systemd-analyze sha256sum tar rpm; do
  command -v $c >/dev/null || fail "$c not installed"
done
pkg=memfrag-exporter
version=0.0.0-test
if dpkg-query -W -f='${Status}' $pkg 2>/dev/null | grep -q installed; then
  fail "package $pkg is already installed on this machine; not touching it"
fi

tmp=$(mktemp -d /tmp/memfrag-packages.XXXXXX)
installed=
cleanup() {
  [ -z "$installed" ] || dpkg --purge $pkg >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

start=$(date +%s)
make -s release VERSION=$version DIST="$tmp/dist" >"$tmp/release.log" 2>&1 ||
  { cat "$tmp/release.log" >&2; fail "make release failed"; }
echo "release: $(( $(date +%s) - start )) s"
dist=$tmp/dist
revision=$(git rev-parse HEAD)

# Checksums and tarballs.
(cd "$dist" && sha256sum --quiet -c sha256sums.txt) || fail "sha256sums.txt does not verify"
[ "$(wc -l <"$dist/sha256sums.txt")" -eq 9 ] || fail "sha256sums.txt should list 3 tarballs, 3 .deb and 3 .rpm"
for arch in amd64 arm64 ppc64le; do
  name=memfrag_exporter-$version.linux-$arch
  tgz=$dist/$name.tar.gz
  [ -f "$tgz" ] || fail "$name.tar.gz missing"
  want=$(printf '%s\n' "$name/" "$name/LICENSE" "$name/memfrag_exporter")
  got=$(tar -tzf "$tgz" | sort)
  [ "$got" = "$want" ] || fail "$name.tar.gz holds:"$'\n'"$got"
  mkdir -p "$tmp/x" && tar -C "$tmp/x" -xzf "$tgz"
  cmp -s "$tmp/x/$name/LICENSE" LICENSE || fail "$name.tar.gz: LICENSE differs from the repository's"
  info=$(go version -m "$tmp/x/$name/memfrag_exporter") || fail "$name: not a Go binary"
  for want in "GOARCH=$arch" "CGO_ENABLED=0" "GOOS=linux"; do
    grep -q -- "$want" <<<"$info" || fail "$name: binary not built with $want:"$'\n'"$info"
  done
  grep -q -a -F "$version" "$tmp/x/$name/memfrag_exporter" || fail "$name: binary does not carry version $version"
  ls "$dist"/${pkg}_*.deb "$dist"/$pkg-*.rpm >/dev/null || fail "packages missing"
done
ls -l "$dist" | awk 'NR>1 {printf "  %8.1f MiB  %s\n", $5/1048576, $9}'

# The .rpm: same files, /etc/default as a config file kept on upgrade,
# the same scripts. rpm is in .ci/apt-packages; the check is by listing, as
# this machine is not an RPM system.
rpmfile=$(ls "$dist"/$pkg-*.x86_64.rpm)
want=$(printf '%s\n' /etc/default/$pkg /usr/bin/memfrag_exporter /usr/lib/systemd/system/$pkg.service \
  /usr/share/doc/$pkg/LICENSE /usr/share/$pkg/remediation.conf)
got=$(rpm -qlp "$rpmfile" 2>/dev/null | grep -v '/$' | sort)
got=$(comm -12 <(echo "$got") <(echo "$want"))
[ "$got" = "$want" ] || fail ".rpm lacks files: want"$'\n'"$want"$'\n'"got"$'\n'"$got"
[ "$(rpm -qcp "$rpmfile" 2>/dev/null)" = "/etc/default/$pkg" ] || fail ".rpm: /etc/default/$pkg is not its only config file"
rpm -qp --qf '%{VERSION}\n' "$rpmfile" 2>/dev/null | grep -qx '0.0.0~test' || fail ".rpm version is not 0.0.0~test"
rpm -qp --scripts "$rpmfile" 2>/dev/null | grep -q 'systemctl daemon-reload' || fail ".rpm lacks its scripts"

# The repository's unit files verify; ExecStart needs an existing binary.
vdir=$tmp/verify
mkdir -p "$vdir/$pkg.service.d"
sed "s#/usr/bin/memfrag_exporter#$PWD/memfrag_exporter#" deploy/systemd/$pkg.service >"$vdir/$pkg.service"
sed "s#/usr/bin/memfrag_exporter#$PWD/memfrag_exporter#" deploy/systemd/remediation.conf >"$vdir/$pkg.service.d/remediation.conf"
out=$(systemd-analyze verify "$vdir/$pkg.service" 2>&1) || fail "systemd-analyze verify of deploy/systemd: $out"
[ -z "$out" ] || fail "systemd-analyze verify of deploy/systemd warns: $out"

# The .deb of this machine.
debarch=$(dpkg --print-architecture)
deb=$(ls "$dist"/${pkg}_*_"$debarch".deb 2>/dev/null) || fail "no .deb for $debarch"
installed=1
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i failed"; }
for f in /usr/bin/memfrag_exporter /usr/lib/systemd/system/$pkg.service /etc/default/$pkg \
  /usr/share/$pkg/remediation.conf; do
  [ -f "$f" ] || fail "$f not installed"
done
cmp -s /usr/lib/systemd/system/$pkg.service deploy/systemd/$pkg.service || fail "installed unit differs from deploy/systemd"
conffiles=$(dpkg-query -W -f='${Conffiles}' $pkg)
grep -q "/etc/default/$pkg" <<<"$conffiles" || fail "/etc/default/$pkg is not a conffile: $conffiles"
ls /etc/systemd/system/*.wants/$pkg.service >/dev/null 2>&1 && fail "the package enabled the unit"
if [ -d /run/systemd/system ] && systemctl is-active --quiet $pkg; then fail "the package started the unit"; fi

out=$(systemd-analyze verify /usr/lib/systemd/system/$pkg.service 2>&1) || fail "installed unit does not verify: $out"
[ -z "$out" ] || fail "installed unit verifies with warnings: $out"
cp /usr/lib/systemd/system/$pkg.service "$vdir/$pkg.service"
cp /usr/share/$pkg/remediation.conf "$vdir/$pkg.service.d/remediation.conf"
out=$(systemd-analyze verify "$vdir/$pkg.service" 2>&1) || fail "installed unit with the remediation drop-in does not verify: $out"
[ -z "$out" ] || fail "installed unit with the remediation drop-in warns: $out"

v=$(/usr/bin/memfrag_exporter --version 2>&1) || fail "memfrag_exporter --version failed: $v"
grep -q "version $version" <<<"$v" || fail "--version does not report $version: $v"
grep -q "revision: $revision" <<<"$v" || fail "--version does not report revision $revision: $v"
root=collector/testdata/seed-before
rc=0
js=$(/usr/bin/memfrag_exporter inspect --output=json --path.procfs=$root/proc --path.sysfs=$root/sys) || rc=$?
[ $rc -le 1 ] || fail "installed inspect exited $rc"
grep -q '"Normal"' <<<"$js" || fail "installed inspect printed no Normal zone: $js"

# An edited conffile survives a reinstall; purge removes everything.
echo 'MEMFRAG_EXPORTER_OPTS="--log.format=json"' >>/etc/default/$pkg
dpkg -i --force-confold "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "reinstall failed"; }
grep -q -- '--log.format=json' /etc/default/$pkg || fail "reinstall overwrote the edited conffile"
files=$(dpkg-query -L $pkg | while read -r f; do [ -d "$f" ] || echo "$f"; done)
dpkg --purge $pkg >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg --purge failed"; }
installed=
dpkg-query -W -f='${Status}' $pkg 2>/dev/null | grep -q installed && fail "$pkg still installed after purge"
for f in $files /etc/default/$pkg /var/lib/$pkg; do
  [ ! -e "$f" ] || fail "$f left after purge"
done
[ ! -e /usr/share/$pkg ] || fail "/usr/share/$pkg left after purge"
echo "OK 80-packages: $(ls "$dist" | wc -l) artifacts, .deb round trip on $debarch, $(( $(date +%s) - start )) s"
