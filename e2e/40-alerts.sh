#!/usr/bin/env bash
# Checks the shipped alerting: promtool check/test rules on alerts/, the
# example Alertmanager configuration with an amtool new enough for its
# templated webhook URL (>= 0.31, built from the Go module proxy once and
# cached in $(go env GOPATH)/bin), its routing tree, and that every alert has
# a severity, summary, description, a runbook section that exists, and both
# a firing and a not-firing unit test.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=e2e/lib/alertmanager.sh
source e2e/lib/alertmanager.sh
rules=alerts/memfrag.rules.yml
tests=alerts/memfrag.rules.test.yml
amcfg=alerts/alertmanager.yml
runbook=alerts/runbook.md

fail() { echo "FAIL: $*" >&2; exit 1; }

command -v promtool >/dev/null || fail "promtool not found (Debian package prometheus, see .ci/apt-packages)"

ensure_alertmanager
amtool="$(go env GOPATH)/bin/amtool"

echo "-- promtool check rules"
promtool check rules "$rules"
echo "-- promtool test rules"
promtool test rules "$tests"

echo "-- amtool check-config ($AM_VERSION)"
"$amtool" check-config "$amcfg"

echo "-- routing"
# route_is LABELS... EXPECTED: the receivers an alert with LABELS reaches.
route_is() {
	local want="${*: -1}" got
	got=$("$amtool" config routes test --config.file="$amcfg" "${@:1:$#-1}")
	[ "$got" = "$want" ] || fail "alert {${*:1:$#-1}} routes to '$got', want '$want'"
	echo "ok: {${*:1:$#-1}} -> $got"
}
route_is alertname=MemFragHighOrderMemoryLow severity=warning remediate=drop_caches_then_compact instance=10.0.0.5:19710 memfrag-remediate,humans
route_is alertname=MemFragHighOrderMemoryExhausted severity=critical remediate=drop_caches_then_compact instance=10.0.0.5:19710 memfrag-remediate,humans-critical
route_is alertname=MemFragHugePageMemoryLow severity=warning instance=10.0.0.5:19710 humans
route_is alertname=MemFragExporterDown severity=warning instance=10.0.0.5:19710 humans
# Info alerts (the exporter's own cost) reach humans, never the pager.
route_is alertname=MemFragPagetypeinfoSlow severity=info instance=10.0.0.5:19710 humans
# A remediate label naming no action reaches humans only.
route_is alertname=X severity=warning remediate=reboot humans

echo "-- alert metadata, runbook sections and test coverage"
alerts=$(awk '$1 == "-" && $2 == "alert:" { print $3 }' "$rules")
[ -n "$alerts" ] || fail "no alerts found in $rules"
# Anchors as GitHub derives them from "## Heading": lower case, spaces to -.
anchors=$(awk '/^## / { sub(/^## /, ""); s = tolower($0); gsub(/ /, "-", s); gsub(/[^a-z0-9_-]/, "", s); print s }' "$runbook")
# Split the rules file into one block per alert to check its fields.
n=0
for a in $alerts; do
	n=$((n + 1))
	block=$(awk -v a="$a" '$1 == "-" && ($2 == "alert:" || $2 == "record:") { on = ($2 == "alert:" && $3 == a) } on' "$rules")
	sev=$(sed -n 's/^ *severity: *//p' <<<"$block")
	case "$sev" in info | warning | critical) ;; *) fail "$a: severity '$sev', want info, warning or critical" ;; esac
	for f in summary description runbook_url; do
		grep -q "^ *$f:" <<<"$block" || fail "$a: no $f annotation"
	done
	url=$(sed -n 's/^ *runbook_url: *//p' <<<"$block")
	anchor=${url##*#}
	[ "$url" = "https://github.com/memfrag/memfrag_exporter/blob/main/$runbook#$anchor" ] || fail "$a: runbook_url $url does not point into $runbook"
	[ "$anchor" = "$(tr '[:upper:]' '[:lower:]' <<<"$a")" ] || fail "$a: runbook anchor #$anchor is not the alert's own section"
	grep -qx "$anchor" <<<"$anchors" || fail "$a: $runbook has no section '## $a' (#$anchor)"
	if grep -q '^ *remediate:' <<<"$block"; then
		act=$(sed -n 's/^ *remediate: *//p' <<<"$block")
		case "$act" in drop_caches | compact | drop_caches_then_compact) ;; *) fail "$a: remediate=$act is no receiver action" ;; esac
	fi
	# In the test file: an alert_rule_test for this alert with exp_alerts: []
	# (not firing) and one with a non-empty exp_alerts (firing).
	cov=$(awk -v a="$a" '
		$1 == "alertname:" { cur = $2 }
		$1 == "exp_alerts:" && cur == a { if ($2 == "[]") quiet++; else loud++ }
		END { print quiet + 0, loud + 0 }' "$tests")
	read -r quiet loud <<<"$cov"
	[ "$quiet" -gt 0 ] || fail "$a: no not-firing test (exp_alerts: []) in $tests"
	[ "$loud" -gt 0 ] || fail "$a: no firing test in $tests"
	echo "ok: $a ($sev, #$anchor, tests: $loud firing, $quiet not firing)"
done
# Links between runbook sections must land too.
for l in $(grep -o '](#[a-z0-9_-]*)' "$runbook" | sed 's/^](#//; s/)$//' | sort -u); do
	grep -qx "$l" <<<"$anchors" || fail "$runbook links to #$l, which is no section"
done
echo "40-alerts: $n alerts checked"
