#!/usr/bin/env bash
# Landing page and inspect end to end. Serves a fixture tree (two NUMA nodes;
# node 0 zone Normal failing for fragmentation, node 1 failing for low
# memory), then:
#  - renders the page in headless Chromium: a screenshot whose pixels must
#    show the chart colours, and the browser's DOM, whose chart elements and
#    values must match the fixture;
#  - checks the page is live (rewritten buddyinfo shows on the next request),
#    the ?refresh header, and that it sits behind the same basic auth as
#    /metrics when --web.config.file asks for it, and that it judges at
#    --remediate.order / --remediate.unusable-threshold;
#  - runs the inspect command on the fixtures (--fail-on, the threshold flag)
#    and on this machine.
# Nothing is kept: the screenshot lives in a temp dir removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL 60-page: $*" >&2; exit 1; }
command -v chromium >/dev/null || fail "chromium not installed (it is in .ci/apt-packages)"
command -v curl >/dev/null || fail "curl not installed"
[ -x ./memfrag_exporter ] || fail "./memfrag_exporter missing: run make build first"

tmp=$(mktemp -d /tmp/memfrag-page.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

cp -r report/testdata/two-nodes-failing "$tmp/fixture"
proc=$tmp/fixture/proc sys=$tmp/fixture/sys
port=19767 authport=19768 critport=19769
url=http://127.0.0.1:$port

start() { # port log [flags...]
  local p=$1 log=$2; shift 2
  ./memfrag_exporter --web.listen-address=127.0.0.1:$p --path.procfs="$proc" --path.sysfs="$sys" "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/-/ready" || true)
    [ "$code" = 200 ] || [ "$code" = 401 ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log" >&2; fail "exporter on port $p exited"; }
    sleep 0.2
  done
  cat "$log" >&2; fail "exporter on port $p not ready within 10 s"
}
start $port "$tmp/exporter.log"

chrome() { # chromium with a fresh profile, no network but loopback traffic
  timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$(mktemp -d "$tmp/profile.XXXX")" "$@"
}

# --- the browser's view -----------------------------------------------------
echo "rendering $url/ in headless Chromium"
chrome --window-size=1280,3400 --screenshot="$tmp/page.png" "$url/" >"$tmp/chrome-shot.log" 2>&1 \
  || { tail -20 "$tmp/chrome-shot.log" >&2; fail "chromium --screenshot failed"; }
[ -s "$tmp/page.png" ] || fail "no screenshot written"
chrome --dump-dom "$url/" >"$tmp/dom.html" 2>"$tmp/chrome-dom.log" \
  || { tail -20 "$tmp/chrome-dom.log" >&2; fail "chromium --dump-dom failed"; }

count() { grep -o -- "$1" "$2" | wc -l; }
want_count() { # pattern file n what
  local n; n=$(count "$1" "$2")
  [ "$n" -eq "$3" ] || fail "$4: found $n, want $3"
}
want() { grep -q -- "$1" "$2" || fail "$3 (no '$1' in $2)"; }

dom=$tmp/dom.html
want '<h1>Memory fragmentation exporter</h1>' "$dom" "exporter-toolkit header missing"
want 'href="/metrics"' "$dom" "link to /metrics missing"
# 4 zones x 11 orders, in the free-bytes chart and the unusable-index chart.
want_count '<svg class="chart free-bytes"' "$dom" 4 "free-bytes charts"
want_count '<svg class="chart unusable-index"' "$dom" 4 "unusable-index charts"
want_count '<svg class="chart compaction-score"' "$dom" 2 "compaction-score charts (one per node)"
want_count '<rect class="bar ' "$dom" 88 "bars"
want_count '<rect class="bar [a-z-]*"[^>]*><title>' "$dom" 88 "bars with a <title>"
want_count 'class="axis-title"' "$dom" 18 "axis titles (2 per zone chart + 1 per score chart)"
# Values straight from the fixture's buddyinfo and the kernel formulas.
want 'data-order="0" data-free-blocks="181022" data-free-bytes="741466112"' "$dom" "node 0 Normal order-0 bar"
want '<title>order 0 (4 KiB blocks): 181022 free, 707.1 MiB</title>' "$dom" "node 0 Normal order-0 tooltip"
want 'data-order="2" data-free-blocks="1" data-free-bytes="16384"' "$dom" "node 1 Normal order-2 bar"
want 'data-order="4" data-unusable-index="0.985"' "$dom" "node 0 DMA32 order-4 unusable index"
want 'data-zone="Normal" data-verdict="failing_fragmentation" data-largest-free-order="3"' "$dom" "node 0 Normal verdict"
want 'data-zone="Normal" data-verdict="failing_low_memory"' "$dom" "node 1 Normal verdict"
want 'data-zone="DMA32" data-verdict="at_risk" data-largest-free-order="4"' "$dom" "node 0 DMA32 verdict"
want 'data-numa-node="1" data-score="99"' "$dom" "node 1 compaction score"
want 'data-verdict="failing_fragmentation">Worst zone for order-4 allocations' "$dom" "machine verdict line"
want 'proactive compaction is off' "$dom" "score sentence"

# The screenshot must show the charts: count pixels of each palette colour.
cat >"$tmp/pixels.go" <<'GO'
// Counts pixels near the page's Okabe-Ito colours in a PNG.
package main

import (
	"fmt"
	"image/png"
	"os"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	img, err := png.Decode(f)
	if err != nil {
		panic(err)
	}
	colours := []struct {
		name    string
		r, g, b int
	}{{"blue", 0x00, 0x72, 0xB2}, {"orange", 0xE6, 0x9F, 0x00}, {"vermillion", 0xD5, 0x5E, 0x00}, {"green", 0x00, 0x9E, 0x73}, {"header", 0xE6, 0x52, 0x2C}}
	counts := make([]int, len(colours))
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			for i, c := range colours {
				if near(int(r>>8), c.r) && near(int(g>>8), c.g) && near(int(b>>8), c.b) {
					counts[i]++
				}
			}
		}
	}
	fmt.Printf("size %dx%d", bnd.Dx(), bnd.Dy())
	for i, c := range colours {
		fmt.Printf(" %s=%d", c.name, counts[i])
	}
	fmt.Println()
}

func near(a, b int) bool { return a-b <= 8 && b-a <= 8 }
GO
pixels=$(cd "$tmp" && GOFLAGS= go run ./pixels.go page.png) || fail "cannot read the screenshot as PNG"
echo "screenshot: $pixels"
px() { echo "$pixels" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
case "$pixels" in "size 1280x3400 "*) ;; *) fail "screenshot size: $pixels" ;; esac
[ "$(px header)" -gt 50000 ] || fail "exporter-toolkit's orange header not in the screenshot ($pixels)"
[ "$(px blue)" -gt 3000 ] || fail "too few blue (usable / below 0.9) bar pixels ($pixels)"
[ "$(px orange)" -gt 3000 ] || fail "too few orange (too small for order 4) bar pixels ($pixels)"
[ "$(px vermillion)" -gt 3000 ] || fail "too few vermillion (at risk / failing) pixels ($pixels)"
[ "$(px green)" -gt 200 ] || fail "no green OK badge ($pixels)"

# --- live per request, refresh header --------------------------------------
curl -sf "$url/" >"$tmp/before.html" || fail "GET / failed"
want 'data-free-blocks="181022"' "$tmp/before.html" "first read"
# Rewrite in place (as the kernel does): same inode, new content.
sed 's/181022/9/' "$proc/buddyinfo" >"$tmp/buddyinfo.new"
cat "$tmp/buddyinfo.new" >"$proc/buddyinfo"
curl -sf "$url/" >"$tmp/after.html" || fail "GET / failed after rewrite"
want 'data-order="0" data-free-blocks="9" ' "$tmp/after.html" "the page did not pick up the new buddyinfo (not live)"
headers=$(curl -sf -D - -o /dev/null "$url/?refresh=30&order=9") || fail "GET /?refresh=30 failed"
echo "$headers" | grep -qi '^Refresh: 30' || fail "no Refresh: 30 header for ?refresh=30: $headers"
echo "$headers" | grep -qi '^Cache-Control: no-store' || fail "page may be cached: $headers"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/nope")
[ "$code" = 404 ] || fail "GET /nope: $code, want 404"

# --- same auth as /metrics -------------------------------------------------
# user "e2e", password "fragmented" (bcrypt, cost 10).
cat >"$tmp/web.yml" <<'YML'
basic_auth_users:
  e2e: $2a$10$mLyFylxtUuLFJmGqP.5JiOJ7VD7MW6TVMUoR4eVGJQ/XbkS2NJQom
YML
start $authport "$tmp/exporter-auth.log" --web.config.file="$tmp/web.yml"
for path in / /metrics; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$authport$path")
  [ "$code" = 401 ] || fail "GET $path without credentials: $code, want 401"
  code=$(curl -s -o /dev/null -w '%{http_code}' -u e2e:wrong "http://127.0.0.1:$authport$path")
  [ "$code" = 401 ] || fail "GET $path with a wrong password: $code, want 401"
done
curl -sf -u e2e:fragmented "http://127.0.0.1:$authport/" >"$tmp/auth.html" || fail "GET / with credentials failed"
want 'class="chart free-bytes"' "$tmp/auth.html" "authenticated page lacks the charts"

# --- the alert criterion flags reach the page -----------------------------
start $critport "$tmp/exporter-crit.log" --remediate.order=2 --remediate.unusable-threshold=0.99
curl -sf "http://127.0.0.1:$critport/" >"$tmp/crit.html" || fail "GET / with --remediate.order=2 failed"
want '<section id="fragmentation" data-order="2"' "$tmp/crit.html" "page does not judge --remediate.order=2 by default"
want 'class="at-risk-threshold">0.99<' "$tmp/crit.html" "page hint does not name --remediate.unusable-threshold=0.99"
want_count '<line class="threshold" data-unusable-index="0.990"' "$tmp/crit.html" 4 "at-risk lines at 0.99"
st=0; timeout 10 ./memfrag_exporter --web.listen-address=127.0.0.1:$critport --remediate.unusable-threshold=2 >"$tmp/bad.log" 2>&1 || st=$?
[ $st = 1 ] && grep -q 'not in 0..1' "$tmp/bad.log" || { cat "$tmp/bad.log" >&2; fail "--remediate.unusable-threshold=2: exit $st, want 1 with a message"; }

# --- inspect ---------------------------------------------------------------
# On the pristine fixture (the copy above was rewritten).
proc=report/testdata/two-nodes-failing/proc sys=report/testdata/two-nodes-failing/sys
set +e
./memfrag_exporter inspect --path.procfs="$proc" --path.sysfs="$sys" >"$tmp/inspect.txt" 2>&1; st=$?
./memfrag_exporter inspect --order=2 --output=json --path.procfs="$proc" --path.sysfs="$sys" >"$tmp/inspect2.json" 2>&1; st2=$?
./memfrag_exporter inspect --path.procfs="$tmp/nowhere" >/dev/null 2>&1; st3=$?
./memfrag_exporter inspect --order=3 >"$tmp/inspect-live.txt" 2>&1; st4=$?
# The seed's fragmented node: at risk at order 4, not failing.
seed=report/testdata/seed-before
./memfrag_exporter inspect --path.procfs=$seed/proc --path.sysfs=$seed/sys >"$tmp/seed.txt" 2>&1; st5=$?
./memfrag_exporter inspect --fail-on=at-risk --path.procfs=$seed/proc --path.sysfs=$seed/sys >"$tmp/seed-atrisk.txt" 2>&1; st6=$?
./memfrag_exporter inspect --fail-on=at-risk --remediate.unusable-threshold=0.999 --path.procfs=$seed/proc --path.sysfs=$seed/sys >"$tmp/seed-999.txt" 2>&1; st7=$?
set -e
[ $st = 1 ] || { cat "$tmp/inspect.txt" >&2; fail "inspect --order=4 on the failing fixture exited $st, want 1"; }
want 'worst zone for order-4 allocations: failing for fragmentation: node 0 zone Normal' "$tmp/inspect.txt" "inspect summary"
[ $st2 = 0 ] || { cat "$tmp/inspect2.json" >&2; fail "inspect --order=2 exited $st2, want 0"; }
want '"verdict": "at_risk"' "$tmp/inspect2.json" "inspect JSON verdict"
[ $st3 = 2 ] || fail "inspect without buddyinfo exited $st3, want 2"
[ $st5 = 0 ] || { cat "$tmp/seed.txt" >&2; fail "inspect on seed-before (at risk, not failing) exited $st5, want 0"; }
want 'order-4 allocations: at risk: node 0 zone Normal' "$tmp/seed.txt" "seed-before summary"
[ $st6 = 1 ] || { cat "$tmp/seed-atrisk.txt" >&2; fail "inspect --fail-on=at-risk on seed-before exited $st6, want 1"; }
[ $st7 = 0 ] || { cat "$tmp/seed-999.txt" >&2; fail "inspect --fail-on=at-risk at threshold 0.999 (Normal reads 0.996) exited $st7, want 0"; }
case $st4 in 0|1) ;; *) cat "$tmp/inspect-live.txt" >&2; fail "inspect on this machine exited $st4" ;; esac
echo "inspect on this machine: $(head -n1 "$tmp/inspect-live.txt") (exit $st4)"
echo "PASS 60-page"
