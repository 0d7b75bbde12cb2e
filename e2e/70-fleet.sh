#!/usr/bin/env bash
# The fleet budget on a real control plane: at most N nodes remediate at once.
#
# A kube-apiserver (built from the Go module proxy, e2e/lib/kube-apiserver.sh)
# on Debian's etcd, with the remediation overlay's ServiceAccount, Role and
# RoleBinding applied server-side from the rendered kustomization. Four
# exporters play four nodes (fleet-1 … fleet-4), each on its own fixture
# procfs/sysfs tree in need of the cure, each with its own service-account
# token from the TokenRequest API. Their /proc/sys/vm/drop_caches is a FIFO:
# the receiver's write blocks in open(2) until this script's reader for that
# node opens the other end, so an action lasts as long as the test says. The
# reader sees the write start in the kernel (a thread of the exporter waits
# in wait_for_partner), which measures concurrency independently of what the
# exporters report. A real Alertmanager with the shipped config (timings
# shortened) delivers the alerts to every node at once.
#
# Asserted, with the figures printed:
#   1. concurrent actions never exceed N=2 and reach it; every node gets its
#      turn within --remediate.fleet.wait;
#   2. a holder killed with SIGKILL mid-action keeps its slot until the Lease
#      expires (renewTime + 6s), and a waiting node takes it then;
#   3. with the API server stopped, no node acts (fleet_unavailable).
# Before that, the Go tests of remediate/fleet and the receiver's fleet tests
# (remediate/fleetslot_test.go) run against the same server.
#
# A fifth exporter runs the same action without the budget, and the script
# prints both resident set sizes: the Lease client's memory cost.
# Ports 29861-29863 (apiserver, etcd) and 29871-29876 on 127.0.0.1.
# MEMFRAG_EXPORTER=path runs a prebuilt exporter instead of `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=e2e/lib/tools.sh
source e2e/lib/tools.sh
# shellcheck source=e2e/lib/kube-apiserver.sh
source e2e/lib/kube-apiserver.sh

# shellcheck source=e2e/lib/alertmanager.sh
source e2e/lib/alertmanager.sh
N=2 NODES=4 LEASE=6 HOLD=3
PORT_API=29861 PORT_AM=29876
port_of() { echo $((29870 + $1)); }
BUDGET=240 # seconds for the run, start-up included, builds excluded

# shellcheck source=e2e/lib/budget.sh
source e2e/lib/budget.sh
WAIT_POLL=0.2
exec 8>&2
fail() {
	echo "FAIL e2e/70-fleet.sh [$(elapsed)s]: $*" >&8
	exit 1
}

work=$(mktemp -d /tmp/memfrag-fleet.XXXXXX)
pids=()
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	kube_apiserver_stop
	if [ "$rc" -ne 0 ]; then
		for f in "$work"/*.log "$work"/kube/kube-apiserver.log; do
			[ -e "$f" ] || continue
			echo "---- last lines of $(basename "$f")"
			tail -n 20 "$f"
		done
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT INT TERM

require_tools curl jq go etcd openssl

# ---- builds (cached; not counted in the budget) ------------------------------
b0=$SECONDS
kube_apiserver_build || fail "cannot build kube-apiserver"
build_api=$((SECONDS - b0))
gobin="$(go env GOPATH)/bin"
ensure_alertmanager
exporter_binary
(cd deploy/kubernetes/manifest_test && go run ./cmd/render ../remediation) >"$work/remediation.jsonl" ||
	fail "cannot render deploy/kubernetes/remediation"
t0=$(date +%s)

# ---- control plane -------------------------------------------------------------
s0=$SECONDS
kube_apiserver_start "$work/kube" "$PORT_API" || fail "kube-apiserver did not become ready"
start_api=$((SECONDS - s0))
log "ok: kube-apiserver ready in ${start_api}s (build step ${build_api}s)"

log "Go tests of remediate/fleet and of the receiver's fleet budget against it"
MEMFRAG_REQUIRE_KUBE=1 MEMFRAG_KUBE_URL=$KUBE_URL MEMFRAG_KUBE_CA=$KUBE_CA MEMFRAG_KUBE_ADMIN_TOKEN=$KUBE_ADMIN_TOKEN \
	nice -n 10 go test -count=1 -v -run '^(TestBudget|TestClient|TestStatus|TestFleet)' ./remediate/fleet/ ./remediate/ 2>&1 |
	tee "$work/gotest.log" | grep -E '^(--- |ok|FAIL)|_test.go:' || true
[ "$(grep -c '^ok' "$work/gotest.log")" = 2 ] || fail "the Go tests against the apiserver failed (above)"

# apply OBJECT-JSON: server-side apply as the admin.
apply() {
	local obj=$1 kind name ns path
	kind=$(jq -r .kind <<<"$obj")
	name=$(jq -r .metadata.name <<<"$obj")
	ns=$(jq -r '.metadata.namespace // "monitoring"' <<<"$obj")
	case $kind in
	ServiceAccount) path=/api/v1/namespaces/$ns/serviceaccounts/$name ;;
	Role) path=/apis/rbac.authorization.k8s.io/v1/namespaces/$ns/roles/$name ;;
	RoleBinding) path=/apis/rbac.authorization.k8s.io/v1/namespaces/$ns/rolebindings/$name ;;
	*) fail "apply: unexpected kind $kind" ;;
	esac
	local code
	code=$(kube_curl -o "$work/apply.out" -w '%{http_code}' -X PATCH -H 'Content-Type: application/apply-patch+yaml' \
		--data-binary "$obj" "$KUBE_URL$path?fieldManager=memfrag-e2e&fieldValidation=Strict")
	[ "$code" = 200 ] || [ "$code" = 201 ] || fail "applying $kind/$name answered $code: $(cat "$work/apply.out")"
}
kube_curl -o /dev/null -X POST -H 'Content-Type: application/json' \
	--data '{"metadata":{"name":"monitoring"}}' "$KUBE_URL/api/v1/namespaces"
while read -r obj; do
	case $(jq -r .kind <<<"$obj") in
	ServiceAccount | Role | RoleBinding) apply "$obj" ;;
	esac
done <"$work/remediation.jsonl"
log "ok: the overlay's ServiceAccount, Role and RoleBinding applied server-side"

# ---- nodes ---------------------------------------------------------------------
webhook_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$webhook_token" >"$work/webhook-token"
chmod 600 "$work/webhook-token"

make_tree() {
	local root=$1
	mkdir -p "$root/proc/sys/vm" "$root/sys/devices/system/node/node0"
	cp remediate/testdata/buddyinfo-fragmented "$root/proc/buddyinfo"
	cp remediate/testdata/zoneinfo "$root/proc/zoneinfo"
	mkfifo "$root/proc/sys/vm/drop_caches"
	: >"$root/proc/sys/vm/compact_memory"
	: >"$root/sys/devices/system/node/node0/compact"
}

sa_token() {
	kube_curl -X POST -H 'Content-Type: application/json' --data '{"spec":{"expirationSeconds":3600}}' \
		"$KUBE_URL/api/v1/namespaces/monitoring/serviceaccounts/memfrag-exporter/token" | jq -er .status.token
}

declare -A pid_of
start_node() {
	local i=$1
	"$exporter_bin" --web.listen-address="127.0.0.1:$(port_of "$i")" \
		--path.procfs="$work/n$i/proc" --path.sysfs="$work/n$i/sys" \
		--remediate.enable --remediate.token-file="$work/webhook-token" \
		--remediate.node-name="fleet-$i" --no-remediate.sync --remediate.cooldown=1s --remediate.timeout=90s \
		--remediate.fleet.max-concurrent=$N --remediate.fleet.namespace=monitoring \
		--remediate.fleet.lease-duration=${LEASE}s --remediate.fleet.wait=90s \
		--remediate.fleet.api-server="$KUBE_URL" --remediate.fleet.ca-file="$KUBE_CA" \
		--remediate.fleet.token-file="$work/sa-token-$i" >"$work/node-$i.log" 2>&1 &
	pid_of[$i]=$!
	pids+=($!)
}

# drain I: node I's kernel. When a thread of the exporter waits in open(2)
# on its drop_caches FIFO, an action's write has started: record it, hold it
# for the seconds in hold-I (re-read while holding), then open the other end
# so the write completes, and record the end.
drain() {
	local i=$1 pid=${pid_of[$1]} fifo=$work/n$1/proc/sys/vm/drop_caches start
	while kill -0 "$pid" 2>/dev/null; do
		if grep -qs wait_for_partner /proc/"$pid"/task/*/wchan; then
			start=$(date +%s.%N)
			echo "$i start $start" >>"$work/events"
			while kill -0 "$pid" 2>/dev/null &&
				awk -v s="$start" -v h="$(cat "$work/hold-$i")" -v now="$(date +%s.%N)" 'BEGIN { exit !(now - s < h) }'; do
				sleep 0.1
			done
			kill -0 "$pid" 2>/dev/null || break
			cat "$fifo" >/dev/null
			echo "$i end $(date +%s.%N)" >>"$work/events"
		else
			sleep 0.05
		fi
	done
}

: >"$work/events"
for i in $(seq 1 $NODES); do
	(exec 3<>"/dev/tcp/127.0.0.1/$(port_of "$i")") 2>/dev/null && fail "127.0.0.1:$(port_of "$i") is already in use"
	make_tree "$work/n$i"
	sa_token >"$work/sa-token-$i" || fail "TokenRequest for memfrag-exporter failed"
	echo "$HOLD" >"$work/hold-$i"
	start_node "$i"
done
# fleet-5: the same exporter and action without the fleet budget, for the
# resident-memory comparison; its drop_caches is a plain file.
make_tree "$work/n5"
rm "$work/n5/proc/sys/vm/drop_caches"
: >"$work/n5/proc/sys/vm/drop_caches"
"$exporter_bin" --web.listen-address="127.0.0.1:$(port_of 5)" \
	--path.procfs="$work/n5/proc" --path.sysfs="$work/n5/sys" \
	--remediate.enable --remediate.token-file="$work/webhook-token" \
	--remediate.node-name=fleet-5 --no-remediate.sync --remediate.cooldown=1s >"$work/node-5.log" 2>&1 &
pid_of[5]=$!
pids+=($!)
node_ready() {
	kill -0 "${pid_of[$1]}" 2>/dev/null || fail "fleet-$1 exited: $(tail -n 3 "$work/node-$1.log")"
	curl -sf "http://127.0.0.1:$(port_of "$1")/-/ready"
}
for i in $(seq 1 $NODES); do
	wait_for "node fleet-$i ready" node_ready "$i"
	drain "$i" &
	pids+=($!)
done
wait_for "node fleet-5 (no fleet budget) ready" node_ready 5

# ---- Alertmanager with the shipped config ---------------------------------------
human_sink="http://127.0.0.1:$(port_of $NODES)/-/healthy" # never killed
sed -e "s#http://alert-gateway.example.internal:8080/alerts#$human_sink#" \
	-e "s#http://alert-gateway.example.internal:8080/page#$human_sink#" \
	-e "s#credentials_file: .*#credentials_file: $work/webhook-token#" \
	-e 's/group_wait: 30s/group_wait: 1s/' \
	-e 's/group_interval: 5m/group_interval: 2s/' \
	alerts/alertmanager.yml >"$work/alertmanager.yml"
grep -q "url: 'http://{{ .GroupLabels.instance }}/remediate'" "$work/alertmanager.yml" ||
	fail "the shipped alertmanager.yml no longer has the templated remediation URL"
"$gobin/amtool" check-config "$work/alertmanager.yml" >/dev/null
"$gobin/alertmanager" --config.file="$work/alertmanager.yml" --storage.path="$work/am" \
	--web.listen-address="127.0.0.1:$PORT_AM" --cluster.listen-address= >"$work/alertmanager.log" 2>&1 &
pids+=($!)
wait_for "alertmanager ready" curl -sf "http://127.0.0.1:$PORT_AM/-/ready"

# fire PHASE NODE...: the alert the shipped rules raise for each node, as
# Prometheus would send it (phase makes each round a new alert).
fire() {
	local phase=$1 body='[' sep='' i
	shift
	for i in "$@"; do
		body+="$sep{\"labels\":{\"alertname\":\"MemFragHighOrderMemoryLow\",\"instance\":\"127.0.0.1:$(port_of "$i")\",\"node\":\"fleet-$i\",\"numa_node\":\"0\",\"zone\":\"Normal\",\"order\":\"4\",\"remediate\":\"drop_caches_then_compact\",\"severity\":\"warning\",\"phase\":\"$phase\"}}"
		sep=,
	done
	curl -sf -X POST -H 'Content-Type: application/json' --data "$body]" "http://127.0.0.1:$PORT_AM/api/v2/alerts" >/dev/null ||
		fail "posting alerts to alertmanager failed"
}
metric() {
	curl -sf "http://127.0.0.1:$(port_of "$1")/metrics" | awk -v m="$2" '$1 == m { print $2; f = 1 } END { exit !f }'
}
runs() { metric "$1" 'memfrag_remediation_runs_total{action="drop_caches_then_compact",result="success"}'; }
skips() { metric "$1" "memfrag_remediation_skipped_total{action=\"drop_caches_then_compact\",reason=\"$2\"}"; }
skipped_more() { [ "$(skips "$1" "$2")" -gt "$3" ]; }
runs_are() { [ "$(runs "$1")" = "$2" ]; }
idle() {
	local i
	for i in "$@"; do
		[ "$(metric "$i" memfrag_remediation_in_progress)" = 0 ] && [ "$(metric "$i" memfrag_remediation_fleet_slot_held)" = 0 ] || return 1
	done
}
# peak: the most actions in the kernel at once, from the reader's events.
peak() {
	sort -k3 -n "$work/events" | awk '$2 == "start" { c++; if (c > m) m = c } $2 == "end" { c-- } END { print m + 0 }'
}
lease() {
	kube_curl "$KUBE_URL/apis/coordination.k8s.io/v1/namespaces/monitoring/leases/memfrag-remediation-$1"
}

# ---- 1. the budget holds and every node gets its turn ----------------------------
log "phase 1: $NODES nodes, budget $N, each action held ${HOLD}s in the kernel"
p1=$(date +%s.%N)
fire 1 $(seq 1 $NODES) 5
for i in $(seq 1 $NODES); do
	wait_for "fleet-$i acted (runs_total success 1)" runs_are "$i" 1
done
wait_for "fleet-5 (no budget) acted" runs_are 5 1
peak1=$(peak)
rss() { awk '/^VmRSS:/ { print $2 }' /proc/"${pid_of[$1]}"/status; }
for i in $(seq 1 5); do curl -sf "http://127.0.0.1:$(port_of "$i")/metrics" >/dev/null; done
rss_fleet=$(for i in $(seq 1 $NODES); do rss "$i"; done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
rss_plain=$(rss 5)
log "figures: VmRSS after one action and a scrape: with the fleet budget (median of $NODES) ${rss_fleet} KiB, without ${rss_plain} KiB, difference $((rss_fleet - rss_plain)) KiB"
first=$(awk '$2 == "start" { print $3; exit }' "$work/events")
log "figures: peak concurrent actions $peak1 (budget $N); action starts after the first, by node:"
awk -v f="$first" '$2 == "start" { printf "  fleet-%s +%.1fs\n", $1, $3 - f }' "$work/events"
[ "$peak1" -le "$N" ] || fail "$peak1 actions ran at once; the budget is $N"
[ "$peak1" -eq "$N" ] || fail "at most $peak1 actions ran at once; the budget $N was never reached"
for i in $(seq 1 $NODES); do
	[ "$(skips "$i" fleet_busy)" = 0 ] || fail "fleet-$i gave up waiting (fleet_busy) within a 90s wait"
	[ "$(skips "$i" fleet_unavailable)" = 0 ] || fail "fleet-$i found the fleet unavailable"
done
wait_for "all nodes idle, slots released" idle $(seq 1 $NODES)
for s in $(seq 0 $((N - 1))); do
	[ "$(lease "$s" | jq -r '.spec.holderIdentity // ""')" = "" ] || fail "slot $s still held after every action ended"
done
page=$(curl -sf "http://127.0.0.1:$(port_of 1)/")
grep -q 'id="fleet-budget"' <<<"$page" && grep -q 'memfrag-remediation-1' <<<"$page" ||
	fail "the landing page does not show the fleet budget's slots"
log "ok: landing page shows the budget and its slots"

# ---- 2. a holder killed mid-action frees its slot at Lease expiry ----------------
log "phase 2: fleet-1 holds a slot and is killed mid-action"
: >"$work/events"
echo 1000 >"$work/hold-1"
echo 1000 >"$work/hold-2"
fire 2 1
wait_for "fleet-1's write is in the kernel" grep -q '^1 start' "$work/events"
fire 2 2
wait_for "fleet-2's write is in the kernel" grep -q '^2 start' "$work/events"
fire 2 3
waiting() { [ "$(metric "$1" memfrag_remediation_in_progress)" = 1 ] && [ "$(metric "$1" memfrag_remediation_fleet_slot_held)" = 0 ]; }
wait_for "fleet-3 accepted its alert and waits for a slot" waiting 3
dead_slot=
for s in $(seq 0 $((N - 1))); do
	[ "$(lease "$s" | jq -r .spec.holderIdentity)" = fleet-1 ] && dead_slot=$s
done
[ -n "$dead_slot" ] || fail "no slot names fleet-1 while it acts"
sleep $((LEASE / 3 + 1)) # let a renewal happen, so the kill interrupts a live holder
kill -KILL "${pid_of[1]}"
killed=$(date +%s.%N)
echo "1 end $killed" >>"$work/events" # its write ended with the process
last_renew=$(lease "$dead_slot" | jq -r .spec.renewTime)
last_renew_s=$(date -d "$last_renew" +%s.%N)
taken=
while [ -z "$taken" ]; do
	[ "$(elapsed)" -lt "$BUDGET" ] || fail "the dead holder's slot was never taken over"
	h=$(lease "$dead_slot" | jq -r '.spec.holderIdentity // ""')
	if [ "$h" != fleet-1 ]; then
		taken=$(date +%s.%N)
		taker=$h
	else
		sleep 0.1
	fi
done
freed=$(awk -v a="$taken" -v b="$last_renew_s" 'BEGIN { printf "%.2f", a - b }')
after_kill=$(awk -v a="$taken" -v b="$killed" 'BEGIN { printf "%.2f", a - b }')
log "figures: dead holder's slot taken by $taker ${freed}s after its last renewal (${after_kill}s after SIGKILL); lease duration ${LEASE}s"
[ "$taker" = fleet-3 ] || fail "slot taken by '$taker', want the waiting fleet-3"
awk -v f="$freed" -v l="$LEASE" 'BEGIN { exit !(f >= l) }' || fail "slot taken ${freed}s after the last renewal, before the ${LEASE}s lease expired"
awk -v f="$freed" -v l="$LEASE" 'BEGIN { exit !(f <= 2 * l + 2) }' || fail "slot taken only ${freed}s after the last renewal (lease ${LEASE}s)"
echo 0 >"$work/hold-2"
echo 0 >"$work/hold-3"
wait_for "fleet-2 finished" runs_are 2 2
wait_for "fleet-3 finished" runs_are 3 2
[ "$(peak)" -le "$N" ] || fail "$(peak) actions at once in phase 2"
pid_of[1]=

# ---- 3. without the API server, nobody acts ----------------------------------------
wait_for "nodes idle" idle 2 3 4
log "phase 3: the API server is stopped"
kube_apiserver_stop_api
: >"$work/events"
before=()
for i in 2 3 4; do before[i]=$(skips "$i" fleet_unavailable); done
fire 3 2 3 4
for i in 2 3 4; do
	wait_for "fleet-$i skipped with fleet_unavailable" skipped_more "$i" fleet_unavailable "${before[i]}"
done
sleep 1
[ ! -s "$work/events" ] || fail "an action reached the kernel with the API server down: $(cat "$work/events")"
for i in 2 3 4; do
	[ "$(runs "$i")" = "$([ "$i" = 4 ] && echo 1 || echo 2)" ] || fail "fleet-$i ran an action with the API server down"
	grep -q 'fleet budget unavailable: not acting' "$work/node-$i.log" || fail "fleet-$i did not log why it did not act"
	[ "$(metric "$i" 'memfrag_remediation_fleet_errors_total{kind="unreachable"}')" -ge 1 ] ||
		fail "fleet-$i did not count the unreachable API server"
done
log "ok: with the API server down no node acted; each said fleet_unavailable"
log "figures: peak concurrency $peak1/$N; dead slot freed ${freed}s after last renewal (lease ${LEASE}s); apiserver warm start ${start_api}s"
echo "PASS e2e/70-fleet.sh"
