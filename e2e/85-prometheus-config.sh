#!/usr/bin/env bash
# The Prometheus configuration shipped for setups without the Operator
# (deploy/prometheus/): promtool accepts it with the rules and target files
# laid out as its comments say, and a real Prometheus started with it
# scrapes an exporter through both the static and the file_sd job, with the
# node label the remediation receiver matches. Also that the dashboard still
# asks for the datasource variable the README names.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL 85-prometheus-config: $*" >&2; exit 1; }
for c in promtool prometheus curl jq; do command -v $c >/dev/null || fail "$c not installed (see .ci/apt-packages)"; done
[ -x ./memfrag_exporter ] || fail "./memfrag_exporter missing: run make build first"

tmp=$(mktemp -d /tmp/memfrag-promcfg.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# As the README says: the config, rules/ and targets/ side by side.
mkdir -p "$tmp/etc/rules" "$tmp/etc/targets"
cp deploy/prometheus/prometheus.yml "$tmp/etc/"
cp alerts/memfrag.rules.yml "$tmp/etc/rules/"
cp deploy/prometheus/targets/memfrag.yml "$tmp/etc/targets/"
promtool check config "$tmp/etc/prometheus.yml" >"$tmp/check.log" 2>&1 ||
  { cat "$tmp/check.log" >&2; fail "promtool check config rejects deploy/prometheus/prometheus.yml"; }

[ "$(jq -r '.templating.list[0].name + "/" + .templating.list[0].query' dashboards/memfrag.json)" = "datasource/prometheus" ] ||
  fail "dashboards/memfrag.json's first variable is no longer the Prometheus datasource variable 'datasource' the README names"

# A real Prometheus, the example hosts replaced by a local exporter.
eport=19781 pport=19782
root=collector/testdata/seed-before
./memfrag_exporter --web.listen-address=127.0.0.1:$eport --path.procfs=$root/proc --path.sysfs="$tmp" >"$tmp/exporter.log" 2>&1 &
pids+=($!)
sed -i "s/node-a.example.org:19710/localhost:$eport/; /node-b.example.org/d" "$tmp/etc/prometheus.yml"
sed -i "s/scrape_interval: 30s/scrape_interval: 1s/" "$tmp/etc/prometheus.yml"
printf -- '- targets: ["127.0.0.1:%s"]\n  labels: {rack: r12}\n' $eport >"$tmp/etc/targets/memfrag.yml"
prometheus --config.file="$tmp/etc/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address=127.0.0.1:$pport >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
q() { curl -sf "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[] | .metric.job + " " + .metric.node + " " + .value[1]' | sort; }
want=$'memfrag localhost 1\nmemfrag-file-sd 127.0.0.1 1'
got=
for _ in $(seq 60); do
  got=$(q 'up{job=~".*memfrag.*"}' 2>/dev/null || true)
  [ "$got" = "$want" ] && break
  sleep 0.5
done
[ "$got" = "$want" ] || { tail -5 "$tmp/prometheus.log" >&2; fail "targets up with node labels: got '$got', want '$want'"; }
rules=$(curl -sf "http://127.0.0.1:$pport/api/v1/rules" | jq '[.data.groups[].rules[]] | length')
[ "$rules" -gt 0 ] || fail "Prometheus loaded no rules from rules/memfrag.rules.yml"
echo "OK 85-prometheus-config: static and file_sd targets up with node labels, $rules rules loaded"
