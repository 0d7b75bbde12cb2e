#!/usr/bin/env bash
# bench/compare.sh: memfrag_exporter side by side with node_exporter v1.12.1.
#
# A developer tool, NOT run by CI: it builds node_exporter from the Go module
# proxy (cached after the first time) and loads three exporters with
# RUNS x N scrapes, which takes a few minutes.
#
# It serves, on loopback only,
#   ne3   node_exporter --collector.disable-defaults --collector.buddyinfo
#         --collector.zoneinfo --collector.vmstat   (the baseline)
#   ne1   node_exporter with buddyinfo only          (for reference)
#   ours  ./memfrag_exporter with its default collectors
# and loads each with the same client (bench/scrapeload) in the same run:
# N keep-alive scrapes with Accept-Encoding: gzip, RUNS times, median over
# runs; within a run the exporters take turns in blocks of 20 scrapes, so
# background load on the machine hits all three alike. It prints p50/p99
# latency, CPU seconds per 1,000 scrapes (the threads' run times in
# /proc/<pid>/task/*/schedstat, in nanoseconds: a clock tick of utime+stime
# is 15 of our scrapes), VmRSS after the load, series count, the ratios
# ours/ne3 (p50 and CPU: the median of the runs' own ratios) with PASS/FAIL
# against the targets (p50 <= 0.3x, CPU <= 0.2x, RSS <= 0.7x), and the sum
# of our collectors' duration metrics
# against the kernel read floor for the files they read (<= 2x). The floor
# is measured twice: hot, the files read back to back thousands of times
# (information: no read inside a scrape is that warm), and at scrape
# cadence, one pass over the files right after a scrape of ours (extra,
# untimed scrapes after each block), which is
# what the check uses. Exit status 1 when a target is missed.
#
# Usage: bench/compare.sh
# Environment:
#   N=2000 RUNS=5            load size
#   BASE_PORT=19171          ports BASE_PORT..BASE_PORT+3 on 127.0.0.1
#   OURS_ENV="GOMAXPROCS=1 GOGC=50 GOMEMLIMIT=16MiB"   environment of our exporter
#   OURS_FLAGS="--no-collector.sysctl"                 extra flags for our exporter
#   OURS_BIN=/path/to/memfrag_exporter                 load this binary instead of
#                                                      building the tree (to try a patch)
#   ALT_BIN=/path/to/memfrag_exporter ALT_ENV=... ALT_FLAGS=...
#                            also serve and load this build as "alt" in the
#                            same run (port BASE_PORT+3), checked for
#                            information; the exit status stays ours'
#   CACHE_DIR=~/.cache/memfrag-bench                   where node_exporter is kept
#   VERBOSE=1                print every run
#   SCALE="8:32 64:256"      scaling mode instead: for each NODES:CPUS,
#                            synthesize a machine (bench/gentree: every node
#                            a copy of this one's node 0, a pageset per CPU),
#                            serve ne3 and ours on that tree and check CPU
#                            per scrape <= 0.05x and RSS <= 0.6x; then print
#                            our RSS growth per series between the sizes.
#                            N defaults to 300 there.
set -euo pipefail

NE_VERSION=v1.12.1
N_SET=${N:-}
N=${N:-2000}
RUNS=${RUNS:-5}
BASE_PORT=${BASE_PORT:-19171}
OURS_ENV=${OURS_ENV:-}
OURS_FLAGS=${OURS_FLAGS:-}
CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/memfrag-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "compare.sh: $*" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# node_exporter from the module proxy, built once and kept.
NE="$CACHE_DIR/node_exporter-$NE_VERSION"
if [ ! -x "$NE" ]; then
	echo "== building node_exporter $NE_VERSION from the Go module proxy (once)"
	mkdir -p "$CACHE_DIR"
	(cd "$WORK" && GOFLAGS=-trimpath GOBIN="$WORK/bin" CGO_ENABLED=0 \
		go install -ldflags "-s -w -X github.com/prometheus/common/version.Version=${NE_VERSION#v}" \
		"github.com/prometheus/node_exporter@$NE_VERSION") || die "cannot build node_exporter $NE_VERSION"
	mv "$WORK/bin/node_exporter" "$NE"
fi
go version -m "$NE" | grep -q "mod[[:space:]]*github.com/prometheus/node_exporter[[:space:]]*$NE_VERSION" ||
	die "$NE is not node_exporter $NE_VERSION; delete it to rebuild"

if [ -n "${OURS_BIN:-}" ]; then
	[ -x "$OURS_BIN" ] || die "OURS_BIN=$OURS_BIN is not an executable"
	OURS=$OURS_BIN
else
	echo "== building memfrag_exporter (make build)"
	make -s -C "$ROOT" build >/dev/null
	OURS="$ROOT/memfrag_exporter"
fi
echo "== building the load client"
go build -C "$ROOT" -o "$WORK/scrapeload" ./bench/scrapeload

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

if [ -n "${SCALE:-}" ]; then
	go build -C "$ROOT" -o "$WORK/gentree" ./bench/gentree
	N=${N_SET:-300}
	status=0
	prev_rss="" prev_series=""
	for spec in $SCALE; do
		nodes=${spec%%:*} cpus=${spec##*:}
		tree="$WORK/tree-$nodes"
		"$WORK/gentree" -nodes "$nodes" -cpus "$cpus" -out "$tree" || die "gentree $spec failed"
		for i in 0 1; do
			port_free $((BASE_PORT + i)) || die "port $((BASE_PORT + i)) is in use; set BASE_PORT"
		done
		P_NE3=$BASE_PORT P_OURS=$((BASE_PORT + 1))
		"$NE" --web.listen-address="127.0.0.1:$P_NE3" --log.level=warn --path.procfs="$tree/proc" --path.sysfs="$tree/sys" \
			--collector.disable-defaults --collector.buddyinfo --collector.zoneinfo --collector.vmstat >"$WORK/ne3-$nodes.log" 2>&1 &
		PIDS+=($!) pid_ne3=$!
		# shellcheck disable=SC2086
		env $OURS_ENV "$OURS" --web.listen-address="127.0.0.1:$P_OURS" --log.level=warn \
			--path.procfs="$tree/proc" --path.sysfs="$tree/sys" $OURS_FLAGS >"$WORK/ours-$nodes.log" 2>&1 &
		PIDS+=($!) pid_ours=$!
		for p in $P_NE3 $P_OURS; do
			for _ in $(seq 1 100); do
				curl -sf -o /dev/null "http://127.0.0.1:$p/metrics" && break
				sleep 0.1
			done
		done
		floor=$(ls "$tree"/proc/{buddyinfo,zoneinfo,vmstat} "$tree"/proc/sys/vm/* "$tree"/sys/kernel/mm/transparent_hugepage/{enabled,defrag} 2>/dev/null | paste -sd, -)
		echo "== $nodes nodes x $cpus CPUs: loading $RUNS runs x $N scrapes"
		"$WORK/scrapeload" -n "$N" -runs "$RUNS" -baseline ne3 -subject ours -limit-cpu 0.05 -limit-rss 0.6 -limit-p50 1 \
			-clk-tck "$(getconf CLK_TCK)" -floor "$floor" ${VERBOSE:+-v} \
			-target "ne3=http://127.0.0.1:$P_NE3/metrics@$pid_ne3" \
			-target "ours=http://127.0.0.1:$P_OURS/metrics@$pid_ours" | tee "$WORK/scale-$nodes.txt" || status=1
		rss=$(awk '$1 == "ours" && NF >= 6 {print $5; exit}' "$WORK/scale-$nodes.txt")
		series=$(awk '$1 == "ours" && NF >= 6 {print $6; exit}' "$WORK/scale-$nodes.txt")
		if [ -n "$prev_rss" ] && [ -n "$rss" ] && [ "$series" != "$prev_series" ]; then
			awk -v a="$prev_rss" -v b="$rss" -v s="$prev_series" -v t="$series" \
				'BEGIN { printf "== ours RSS growth: %.0f bytes per series (%.1f -> %.1f MiB, %d -> %d series)\n", (b-a)*1048576/(t-s), a, b, s, t }'
		fi
		prev_rss=$rss prev_series=$series
		kill "$pid_ne3" "$pid_ours" 2>/dev/null || true
		wait "$pid_ne3" "$pid_ours" 2>/dev/null || true
	done
	exit "$status"
fi

for i in 0 1 2 3; do
	port_free $((BASE_PORT + i)) || die "port $((BASE_PORT + i)) is in use; set BASE_PORT"
done
P_NE3=$BASE_PORT P_NE1=$((BASE_PORT + 1)) P_OURS=$((BASE_PORT + 2)) P_ALT=$((BASE_PORT + 3))

# start NAME PORT CMD...: serve in the background, log to $WORK/NAME.log.
start() {
	local name=$1 port=$2
	shift 2
	"$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_$name=$!"
	local i
	for i in $(seq 1 100); do
		if curl -sf -o /dev/null "http://127.0.0.1:$port/metrics"; then
			return 0
		fi
		kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited"; }
		sleep 0.1
	done
	cat "$WORK/$name.log" >&2
	die "$name did not answer on 127.0.0.1:$port within 10s"
}

echo "== serving on 127.0.0.1:$P_NE3 (ne3), :$P_NE1 (ne1), :$P_OURS (ours${OURS_ENV:+, env $OURS_ENV})"
start ne3 "$P_NE3" "$NE" --web.listen-address="127.0.0.1:$P_NE3" --log.level=warn \
	--collector.disable-defaults --collector.buddyinfo --collector.zoneinfo --collector.vmstat
start ne1 "$P_NE1" "$NE" --web.listen-address="127.0.0.1:$P_NE1" --log.level=warn \
	--collector.disable-defaults --collector.buddyinfo
# shellcheck disable=SC2086 # OURS_ENV and OURS_FLAGS are word lists
start ours "$P_OURS" env $OURS_ENV "$OURS" --web.listen-address="127.0.0.1:$P_OURS" --log.level=warn $OURS_FLAGS
ALT_ARGS=()
if [ -n "${ALT_BIN:-}" ]; then
	[ -x "$ALT_BIN" ] || die "ALT_BIN=$ALT_BIN is not an executable"
	echo "== serving alt on 127.0.0.1:$P_ALT ($ALT_BIN${ALT_ENV:+, env $ALT_ENV})"
	# shellcheck disable=SC2086
	start alt "$P_ALT" env ${ALT_ENV:-} "$ALT_BIN" --web.listen-address="127.0.0.1:$P_ALT" --log.level=warn ${ALT_FLAGS:-}
	ALT_ARGS=(-also alt -target "alt=http://127.0.0.1:$P_ALT/metrics@$PID_alt")
fi

# The files our default collectors read on every scrape (each through a kept
# descriptor); compaction reads compaction_proactiveness a second time, which
# the floor counts once.
FLOOR=()
for f in /proc/buddyinfo /proc/zoneinfo /proc/vmstat \
	/proc/sys/vm/{compaction_proactiveness,extfrag_threshold,min_free_kbytes,watermark_scale_factor,watermark_boost_factor,defrag_mode} \
	/sys/kernel/mm/transparent_hugepage/{enabled,defrag}; do
	[ -r "$f" ] && FLOOR+=("$f")
done
FLOOR_LIST=$(IFS=,; echo "${FLOOR[*]}")

echo "== collectors: ours = $(curl -sf "http://127.0.0.1:$P_OURS/metrics" | sed -n 's/^memfrag_scrape_collector_success{collector="\([^"]*\)"}.*/\1/p' | paste -sd, -)"
echo "== loading: $RUNS runs x $N scrapes per exporter"
status=0
"$WORK/scrapeload" -n "$N" -runs "$RUNS" -baseline ne3 -subject ours \
	-clk-tck "$(getconf CLK_TCK)" -floor "$FLOOR_LIST" ${VERBOSE:+-v} \
	-target "ne3=http://127.0.0.1:$P_NE3/metrics@$PID_ne3" \
	-target "ne1=http://127.0.0.1:$P_NE1/metrics@$PID_ne1" \
	-target "ours=http://127.0.0.1:$P_OURS/metrics@$PID_ours" "${ALT_ARGS[@]}" || status=$?
exit "$status"
