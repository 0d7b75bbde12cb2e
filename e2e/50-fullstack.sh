#!/usr/bin/env bash
# The whole loop on real components, on loopback:
#   exporter -> Prometheus (the shipped rules) -> alert -> Alertmanager (the
#   shipped example config) -> templated webhook URL -> remediation receiver
#   -> write to the kernel file -> memfrag_remediation_runs_total.
#
# Two exporters play two nodes, each on its own temp procfs/sysfs tree in the
# seed's fragmented state (the first buddyinfo snapshot, Normal zone
# "127146 68215 1614 0 0 0 0 0 0 0 1") with writable stand-ins for
# /proc/sys/vm/drop_caches, /proc/sys/vm/compact_memory and
# /sys/devices/system/node/node0/compact. Node A remediates for real (on its
# temp tree); node B runs --remediate.dry-run. Prometheus labels each target
# with its node name, which is how each receiver recognizes its own alerts,
# so an alert delivered to the wrong node would be skipped as other_host and
# fail the test. Node A also reads a FIFO as its kernel log, into which the
# test writes an allocation-failure record, and runs the opt-in pagetypeinfo
# collector on a /proc/pagetypeinfo consistent with its buddyinfo.
#
# What differs from the shipped files, and only that: `for:` durations are
# 2s, Alertmanager's group_wait/group_interval are 1s/5s, and the example's
# chat gateway and token path point at loopback stand-ins (the exporter's
# /-/healthy answers 200 to the "human" notifications). At the end the
# dashboard test (dashboards/) runs every panel query against this
# Prometheus.
#
# Ports 29791-29794 on 127.0.0.1. Everything started is stopped on exit.
# MEMFRAG_EXPORTER=path runs a prebuilt exporter instead of `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# shellcheck source=e2e/lib/tools.sh
source e2e/lib/tools.sh
# shellcheck source=e2e/lib/alertmanager.sh
source e2e/lib/alertmanager.sh
PORT_A=29791 PORT_B=29792 PORT_PROM=29793 PORT_AM=29794
BUDGET=150 # seconds for the run, start-up included, builds excluded

# shellcheck source=e2e/lib/budget.sh
source e2e/lib/budget.sh

work=$(mktemp -d /tmp/memfrag-fullstack.XXXXXX)
pids=()
cleanup() {
	local rc=$?
	exec 9>&- 2>/dev/null || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "$rc" -ne 0 ]; then
		for f in "$work"/*.log; do
			[ -e "$f" ] || continue
			echo "---- last lines of $(basename "$f")"
			tail -n 25 "$f"
		done
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT INT TERM

# fail writes to the script's stderr (fd 8) even from a wait_for condition,
# whose output goes to /dev/null.
exec 8>&2
fail() {
	echo "FAIL [$(elapsed)s]: $*" >&8
	exit 1
}

require_tools curl jq promtool prometheus go
gobin="$(go env GOPATH)/bin"
ensure_alertmanager
exporter_binary
# The budget counts from here: one-time builds above are not the test.
t0=$(date +%s)
for p in $PORT_A $PORT_B $PORT_PROM $PORT_AM; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		fail "127.0.0.1:$p is already in use"
	fi
done

# ---- fixture trees ----------------------------------------------------------
make_tree() {
	local root=$1
	mkdir -p "$root/proc/sys/vm" "$root/sys/kernel/mm/transparent_hugepage" "$root/sys/devices/system/node/node0"
	cat >"$root/proc/buddyinfo" <<'EOF'
Node 0, zone      DMA      2      2      2      1      2      1      1      0      0      0      2
Node 0, zone    DMA32  32995   4377    762    211    157    108     68     23      3      0      0
Node 0, zone   Normal 127146  68215   1614      0      0      0      0      0      0      0      1
EOF
	# The same free lists by migrate type, as a 6.18 kernel prints them:
	# each order's counts sum to the buddyinfo row above, except Normal's
	# order-0 Movable list (118000 blocks), which the kernel stops counting
	# at its cap and prints as >100000.
	cat >"$root/proc/pagetypeinfo" <<'EOF'
Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 
Node    0, zone      DMA, type    Unmovable      2      2      2      1      2      1      1      0      0      0      0 
Node    0, zone      DMA, type      Movable      0      0      0      0      0      0      0      0      0      0      2 
Node    0, zone      DMA, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone    DMA32, type    Unmovable    412     96     31     12      9      4      2      0      0      0      0 
Node    0, zone    DMA32, type      Movable  32101   4190    711    195    145    102     66     23      3      0      0 
Node    0, zone    DMA32, type  Reclaimable    482     91     20      4      3      2      0      0      0      0      0 
Node    0, zone    DMA32, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone    DMA32, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone   Normal, type    Unmovable   6021   3310    402      0      0      0      0      0      0      0      0 
Node    0, zone   Normal, type      Movable >100000  62114   1050      0      0      0      0      0      0      0      1 
Node    0, zone   Normal, type  Reclaimable   3125   2791    162      0      0      0      0      0      0      0      0 
Node    0, zone   Normal, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone   Normal, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 

Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate 
Node 0, zone      DMA            1            7            0            0            0 
Node 0, zone    DMA32           24         2002           14            0            0 
Node 0, zone   Normal          612         6781          287            0            0 
EOF
	chmod 400 "$root/proc/pagetypeinfo"
	local zone free min low high pages
	: >"$root/proc/zoneinfo"
	while read -r zone free min low high pages; do
		cat >>"$root/proc/zoneinfo" <<EOF
Node 0, zone $(printf '%8s' "$zone")
  per-node stats
  pages free     $free
        boost    0
        min      $min
        low      $low
        high     $high
        promo    $((high + (high - low)))
        spanned  $pages
        present  $pages
        managed  $((pages - pages / 64))
        cma      0
        protection: (0, 0, 0, 0, 0)
      nr_free_pages $free
  pagesets
  node_unreclaimable:  0
  start_pfn:           4096
EOF
	done <<'EOF'
DMA 2198 19 24 30 3998
DMA32 60517 5222 6528 8034 1044480
Normal 271056 19660 24576 30247 3932160
EOF
	cat >"$root/proc/vmstat" <<'EOF'
nr_free_pages 333771
allocstall_dma 0
allocstall_dma32 12
allocstall_normal 48211
allocstall_movable 0
drop_pagecache 0
drop_slab 0
compact_migrate_scanned 981233
compact_free_scanned 4420174
compact_isolated 212331
compact_stall 5120
compact_fail 3961
compact_success 1159
compact_daemon_wake 721
compact_daemon_migrate_scanned 120931
compact_daemon_free_scanned 880121
thp_fault_alloc 31244
thp_fault_fallback 9120
thp_fault_fallback_charge 12
thp_collapse_alloc 2211
thp_collapse_alloc_failed 311
EOF
	echo 20 >"$root/proc/sys/vm/compaction_proactiveness"
	echo 500 >"$root/proc/sys/vm/extfrag_threshold"
	echo 67584 >"$root/proc/sys/vm/min_free_kbytes"
	echo 10 >"$root/proc/sys/vm/watermark_scale_factor"
	echo 15000 >"$root/proc/sys/vm/watermark_boost_factor"
	echo "always [madvise] never" >"$root/sys/kernel/mm/transparent_hugepage/enabled"
	echo "always defer defer+madvise [madvise] never" >"$root/sys/kernel/mm/transparent_hugepage/defrag"
	echo 2097152 >"$root/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
	# The write-only kernel triggers, empty until the receiver writes.
	: >"$root/proc/sys/vm/drop_caches"
	: >"$root/proc/sys/vm/compact_memory"
	: >"$root/sys/devices/system/node/node0/compact"
}
make_tree "$work/a"
make_tree "$work/b"
# Node a also counts the real kernel's fragmentation events: its sysfs tree
# holds the running kernel's extfrag tracepoint format (id and field
# offsets), so the BPF counter attaches to the real tracepoint. And it may
# ask kured for a reboot: the sentinel goes into its tree.
tp=events/kmem/mm_page_alloc_extfrag/format
[ -r "/sys/kernel/tracing/$tp" ] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
[ -r "/sys/kernel/tracing/$tp" ] || fail "no /sys/kernel/tracing/$tp: the extfrag collector needs tracefs (run as root)"
mkdir -p "$work/a/sys/kernel/tracing/$(dirname $tp)" "$work/a/proc/sys/kernel/random" "$work/a/run"
cp "/sys/kernel/tracing/$tp" "$work/a/sys/kernel/tracing/$tp"
cat /proc/sys/kernel/random/boot_id >"$work/a/proc/sys/kernel/random/boot_id"
# Node A's kernel log: a FIFO held open read-write here, so the exporter's
# open does not block and its reader never sees end of file.
mkfifo "$work/a/kmsg"
exec 9<>"$work/a/kmsg"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$token" >"$work/token"
chmod 600 "$work/token"

# ---- configs generated from the shipped files -------------------------------
sed -E 's/^( +for: ).*/\12s/' alerts/memfrag.rules.yml >"$work/rules.yml"
grep -q 'for: 2s' "$work/rules.yml" || fail "could not shorten for: in the rules copy"
promtool check rules "$work/rules.yml" >/dev/null

human_sink="http://127.0.0.1:$PORT_A/-/healthy"
sed -e "s#http://alert-gateway.example.internal:8080/alerts#$human_sink#" \
	-e "s#http://alert-gateway.example.internal:8080/page#$human_sink#" \
	-e "s#credentials_file: .*#credentials_file: $work/token#" \
	-e 's/group_wait: 30s/group_wait: 1s/' \
	-e 's/group_interval: 5m/group_interval: 5s/' \
	alerts/alertmanager.yml >"$work/alertmanager.yml"
grep -q "url: 'http://{{ .GroupLabels.instance }}/remediate'" "$work/alertmanager.yml" ||
	fail "the shipped alertmanager.yml no longer has the templated remediation URL"
echo "Alertmanager config: changes from the shipped example:"
diff alerts/alertmanager.yml "$work/alertmanager.yml" | grep '^[<>]' || true
"$gobin/amtool" check-config "$work/alertmanager.yml" >/dev/null

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [$work/rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$PORT_AM"]
scrape_configs:
  - job_name: memfrag
    static_configs:
      - targets: ["127.0.0.1:$PORT_A"]
        labels: {node: fullstack-a}
      - targets: ["127.0.0.1:$PORT_B"]
        labels: {node: fullstack-b}
EOF
promtool check config "$work/prometheus.yml" >/dev/null

# ---- start ------------------------------------------------------------------
start() {
	local name=$1
	shift
	"$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
}
exporter() {
	local name=$1 port=$2
	shift 2
	start "exporter-$name" "$exporter_bin" \
		--web.listen-address="127.0.0.1:$port" \
		--path.procfs="$work/$name/proc" --path.sysfs="$work/$name/sys" \
		--remediate.enable --remediate.token-file="$work/token" \
		--remediate.node-name="fullstack-$name" "$@"
}
exporter a $PORT_A --collector.kmsg --collector.kmsg.path="$work/a/kmsg" --collector.pagetypeinfo \
	--collector.extfrag --remediate.escalate.reboot-sentinel="$work/a/run/reboot-required"
exporter b $PORT_B --remediate.dry-run
start prometheus prometheus --config.file="$work/prometheus.yml" \
	--storage.tsdb.path="$work/prom" --web.listen-address="127.0.0.1:$PORT_PROM"
start alertmanager "$gobin/alertmanager" --config.file="$work/alertmanager.yml" \
	--storage.path="$work/am" --web.listen-address="127.0.0.1:$PORT_AM" \
	--cluster.listen-address= --enable-feature=receiver-name-in-metrics

wait_for "exporter a ready" curl -sf "http://127.0.0.1:$PORT_A/-/ready"
wait_for "exporter b ready" curl -sf "http://127.0.0.1:$PORT_B/-/ready"
wait_for "prometheus ready" curl -sf "http://127.0.0.1:$PORT_PROM/-/ready"
wait_for "alertmanager ready" curl -sf "http://127.0.0.1:$PORT_AM/-/ready"

# The kernel's words (mm/page_alloc.c warn_alloc), from the kernel
# (facility 0), stamped with the current uptime.
usec=$(awk '{ printf "%d", $1 * 1000000 }' /proc/uptime)
printf '4,1,%s,-;kworker/u8:2: page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null),cpuset=/,mems_allowed=0\n' "$usec" >&9

# ---- helpers ----------------------------------------------------------------
# prom EXPR: the first sample's value of an instant query, or fail.
prom() {
	curl -sfG "http://127.0.0.1:$PORT_PROM/api/v1/query" --data-urlencode "query=$1" |
		jq -er '.data.result[0].value[1]'
}
# prom_true EXPR: the query returns at least one series.
prom_true() { prom "$1" >/dev/null; }
# alert_firing NAME MATCHERS: a firing alert with these labels.
alert_firing() { prom_true "ALERTS{alertname=\"$1\", alertstate=\"firing\"$2}"; }
# metric PORT NAME{LABELS}: a sample's value from an exporter's /metrics.
metric() {
	curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2; found = 1 } END { exit !found }'
}
metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }

A="instance=\"127.0.0.1:$PORT_A\""
B="instance=\"127.0.0.1:$PORT_B\""
# The remediation alert's labels, one Alertmanager API filter each.
remediation_alert=(alertname=MemFragHighOrderMemoryLow numa_node=0 zone=Normal order=4 remediate=drop_caches_then_compact severity=warning)

# ---- 1. the alert fires in Prometheus ---------------------------------------
wait_for "targets up" prom_true "count(up{job=\"memfrag\"} == 1) == 2"
# The endpoint exists and checks the token: an empty body with the right
# token is malformed (400), without it unauthenticated (401). These two
# requests are also what MemFragRemediationRejected must fire on below; they
# come after the first scrape, since increase() cannot see a counter whose
# first sample already counts them.
for port in $PORT_A $PORT_B; do
	code=$(curl -s -o /dev/null -w "%{http_code}" -X POST -H "Authorization: Bearer $token" -H "Content-Type: application/json" --data "" "http://127.0.0.1:$port/remediate")
	[ "$code" = 400 ] || fail "POST /remediate on $port with the token and no body answered $code, want 400 (404: the receiver is not mounted)"
	code=$(curl -s -o /dev/null -w "%{http_code}" -X POST -H "Content-Type: application/json" --data "" "http://127.0.0.1:$port/remediate")
	[ "$code" = 401 ] || fail "POST /remediate on $port without a token answered $code, want 401"
done
log "ok: both exporters serve POST /remediate (400 without a body, 401 without the token)"
wait_for "MemFragHighOrderMemoryLow firing for node a" alert_firing MemFragHighOrderMemoryLow ", $A, node=\"fullstack-a\", numa_node=\"0\", zone=\"Normal\", remediate=\"drop_caches_then_compact\""
wait_for "MemFragHighOrderMemoryLow firing for node b" alert_firing MemFragHighOrderMemoryLow ", $B, node=\"fullstack-b\", numa_node=\"0\", zone=\"Normal\""
# The seed's DMA32 zone (unusable index 0.768 at order 4) must not fire.
if prom_true "ALERTS{alertname=\"MemFragHighOrderMemoryLow\", zone!=\"Normal\"}"; then
	fail "MemFragHighOrderMemoryLow fires for a zone other than Normal"
fi

# ---- 2. Alertmanager routes and delivers ------------------------------------
am_has_alert() {
	local f=(--data-urlencode "filter=node=\"fullstack-$1\"") l
	for l in "${remediation_alert[@]}"; do
		f+=(--data-urlencode "filter=${l%%=*}=\"${l#*=}\"")
	done
	curl -sfG "http://127.0.0.1:$PORT_AM/api/v2/alerts" "${f[@]}" |
		jq -e 'length == 1 and ([.[0].receivers[].name] | sort) == ["humans", "memfrag-remediate"]'
}
wait_for "alertmanager has node a's alert, for memfrag-remediate and humans" am_has_alert a
wait_for "alertmanager has node b's alert, for memfrag-remediate and humans" am_has_alert b
# am_sum NAME RECEIVER: an Alertmanager counter summed over the receiver's
# series (the failure counter has a reason label).
am_sum() {
	curl -sf "http://127.0.0.1:$PORT_AM/metrics" |
		awk -v n="$1{" -v r="receiver_name=\"$2\"" 'index($1, n) == 1 && index($1, r) { s += $2; f = 1 } END { print s + 0; exit !f }'
}
am_delivered() {
	local sent failed
	sent=$(am_sum alertmanager_notifications_total "$1")
	failed=$(am_sum alertmanager_notifications_failed_total "$1")
	[ "$sent" -ge "$2" ] && [ "$failed" -eq 0 ]
}
wait_for "alertmanager delivered to memfrag-remediate (both nodes, no failure)" am_delivered memfrag-remediate 2
wait_for "alertmanager notified humans too" am_delivered humans 1

# ---- 3. each receiver decides for its own alert -----------------------------
# accepted NODE: node's receiver accepted the remediation alert; an alert
# skipped as another node's means the webhook URL went to the wrong node.
accepted() {
	if grep -q 'msg="remediation decision".*reason=other_host' "$work/exporter-a.log" "$work/exporter-b.log"; then
		fail "a receiver got another node's alert: $(grep -h 'reason=other_host' "$work"/exporter-*.log | head -1)"
	fi
	grep -q 'msg="remediation decision" decision=accepted action=drop_caches_then_compact alertname=MemFragHighOrderMemoryLow' "$work/exporter-$1.log"
}
wait_for "receiver a accepted the alert" accepted a
wait_for "receiver b accepted the alert (dry run)" accepted b

# ---- 4. the kernel files receive the writes ---------------------------------
wait_for "node a: 3 written to proc/sys/vm/drop_caches" grep -qx 3 "$work/a/proc/sys/vm/drop_caches"
# buddyinfo does not change under a fake tree, so the re-measure after
# drop_caches still finds the zone fragmented and compacts NUMA node 0.
wait_for "node a: 1 written to sys/devices/system/node/node0/compact" grep -qx 1 "$work/a/sys/devices/system/node/node0/compact"
[ ! -s "$work/a/proc/sys/vm/compact_memory" ] || fail "node a: the global compact_memory was written; the alert named NUMA node 0"

# ---- 5. the runs show in the metrics ----------------------------------------
wait_for "node a: memfrag_remediation_runs_total{result=success} is 1" \
	metric_is $PORT_A 'memfrag_remediation_runs_total{action="drop_caches_then_compact",result="success"}' 1
wait_for "node b: memfrag_remediation_runs_total{result=dry_run} is 1" \
	metric_is $PORT_B 'memfrag_remediation_runs_total{action="drop_caches_then_compact",result="dry_run"}' 1
for f in proc/sys/vm/drop_caches proc/sys/vm/compact_memory sys/devices/system/node/node0/compact; do
	[ ! -s "$work/b/$f" ] || fail "node b (dry run) wrote $f"
done
for port in $PORT_A $PORT_B; do
	v=$(metric "$port" 'memfrag_remediation_skipped_total{action="drop_caches_then_compact",reason="other_host"}')
	[ "$v" = 0 ] || fail "exporter on $port skipped $v alerts as other_host: an alert went to the wrong node"
	v=$(metric "$port" 'memfrag_remediation_webhook_requests_total{code="401"}')
	[ "$v" = 1 ] || fail "exporter on $port refused $v requests as unauthenticated, want 1 (the probe's)"
	v=$(metric "$port" 'memfrag_remediation_webhook_requests_total{code="200"}')
	[ "$v" -ge 1 ] || fail "exporter on $port answered no webhook with 200"
done
wait_for "prometheus scraped node a's run" prom_true "memfrag_remediation_runs_total{$A, action=\"drop_caches_then_compact\", result=\"success\"} == 1"
wait_for "prometheus scraped node b's dry run" prom_true "memfrag_remediation_runs_total{$B, action=\"drop_caches_then_compact\", result=\"dry_run\"} == 1"

# ---- 6. the other rules on real exporter output -----------------------------
wait_for "node a: the kmsg collector saw the order-4 failure" prom_true "time() - memfrag_page_allocation_failure_last_timestamp_seconds{$A, order=\"4\"} < 60"
log "node a: memfrag_page_allocation_failures_total{order=4} = $(metric $PORT_A 'memfrag_page_allocation_failures_total{order="4"}')"
wait_for "MemFragPageAllocationFailures firing for node a" alert_firing MemFragPageAllocationFailures ", $A, order=\"4\""
wait_for "MemFragHugePageMemoryLow firing (Normal, order 9)" alert_firing MemFragHugePageMemoryLow ", $A, zone=\"Normal\", order=\"9\""
wait_for "MemFragCompactionScoreHigh firing (score above the high threshold 90)" alert_firing MemFragCompactionScoreHigh ", $A, numa_node=\"0\""
# A fake tree does not defragment: the run gained nothing.
wait_for "MemFragRemediationIneffective firing for node a" alert_firing MemFragRemediationIneffective ", $A, action=\"drop_caches_then_compact\""
# The probe's unauthenticated request.
wait_for "MemFragRemediationRejected firing for node b (HTTP 401)" alert_firing MemFragRemediationRejected ", $B, code=\"401\""
for quiet in MemFragExporterDown MemFragCollectorFailing MemFragHighOrderMemoryExhausted MemFragRemediationFailing \
	MemFragRemediationRefused MemFragRemediationTooFrequent MemFragPagetypeinfoSlow; do
	if prom_true "ALERTS{alertname=\"$quiet\"}"; then
		fail "$quiet fires: $(curl -sfG "http://127.0.0.1:$PORT_PROM/api/v1/query" --data-urlencode "query=ALERTS{alertname=\"$quiet\"}" | jq -c '.data.result[].metric')"
	fi
done
log "ok: no exporter-down, collector, exhausted, remediation-trouble or slow-pagetypeinfo alert fires"

# ---- 7. every dashboard query returns data ----------------------------------
# ... and every metric name the dashboard and the rules use is one these
# exporters serve (or a recording rule Prometheus evaluates).
log "running the dashboard's queries and the metric-name check against this Prometheus"
MEMFRAG_PROMETHEUS_URL="http://127.0.0.1:$PORT_PROM" MEMFRAG_DASHBOARD_INSTANCE="127.0.0.1:$PORT_A" \
	go test -count=1 -run 'TestDashboardQueriesLive|TestMetricNamesLive' -v ./dashboards/ >"$work/dashboard-test.log" 2>&1 ||
	{
		cat "$work/dashboard-test.log"
		fail "dashboard queries"
	}
for t in TestDashboardQueriesLive TestMetricNamesLive; do
	grep -q -- "--- PASS: $t" "$work/dashboard-test.log" || {
		cat "$work/dashboard-test.log"
		fail "the dashboard test $t did not run"
	}
done
sed -n 's/^ *dashboard_test.go:[0-9]*: /  /p' "$work/dashboard-test.log"
log "ok: $(grep -c ': [0-9]* series$' "$work/dashboard-test.log") dashboard queries returned data"
sed -n 's/^ *metricnames_test.go:[0-9]*: /  /p' "$work/dashboard-test.log"

log "50-fullstack: passed in $(elapsed)s"
