#!/usr/bin/env bash
# The Kubernetes manifests judged by a real API server (kube-apiserver built
# from the module proxy, e2e/lib/kube-apiserver.sh), not only by our own
# decoder (e2e/25-manifests.sh):
#   1. deploy/kubernetes/base and remediation, rendered by kustomize, pass
#      server-side apply with strict field validation, with the
#      prometheus-operator CRDs installed (ServiceMonitor, PrometheusRule; the
#      CRD files come from the operator's module in the Go module proxy);
#      base as a dry run, remediation for real (the RBAC check needs it);
#   2. RBAC, asked with the service account's own token (SelfSubjectAccess-
#      Review, then real requests): its Leases in its namespace, yes; delete,
#      pods, secrets, other namespaces' Leases, no;
#   3. Pod Security admission: in a namespace enforcing baseline the pods
#      of both DaemonSets are rejected (hostPath volumes; remediation also
#      privileged); enforcing privileged admits them.
# The apiserver runs with --allow-privileged=true, as kubeadm and managed
# clusters do; without it the remediation DaemonSet is refused outright.
# Ports 29881-29883 on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/lib/tools.sh
source e2e/lib/tools.sh
# shellcheck source=e2e/lib/kube-apiserver.sh
source e2e/lib/kube-apiserver.sh

PO_VERSION=v0.85.0 # prometheus-operator module with example/prometheus-operator-crd
t0=$SECONDS
log() { echo "[$((SECONDS - t0))s] $*"; }
fail() {
	echo "FAIL e2e/72-apiserver-manifests.sh: $*" >&2
	exit 1
}
work=$(mktemp -d /tmp/memfrag-apiserver-manifests.XXXXXX)
cleanup() {
	local rc=$?
	kube_apiserver_stop
	[ "$rc" -eq 0 ] || tail -n 20 "$work/kube/kube-apiserver.log" 2>/dev/null || true
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT INT TERM
require_tools curl jq go etcd openssl

kube_apiserver_build || fail "cannot build kube-apiserver"
crd_dir=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PO_VERSION" | jq -er .Dir)/example/prometheus-operator-crd
for k in servicemonitors prometheusrules; do
	[ -f "$crd_dir/monitoring.coreos.com_$k.yaml" ] || fail "no $k CRD in $crd_dir"
done
for v in base remediation; do
	(cd deploy/kubernetes/manifest_test && go run ./cmd/render "../$v") >"$work/$v.jsonl" || fail "cannot render $v"
done
kube_apiserver_start "$work/kube" 29881 || fail "kube-apiserver did not start"
log "kube-apiserver ready"

# path_of OBJECT-JSON [NAMESPACE]: the object's REST path.
path_of() {
	local kind name ns
	kind=$(jq -r .kind <<<"$1")
	name=$(jq -r .metadata.name <<<"$1")
	ns=${2:-$(jq -r '.metadata.namespace // ""' <<<"$1")}
	case $kind in
	CustomResourceDefinition) echo "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name" ;;
	Namespace) echo "/api/v1/namespaces/$name" ;;
	ServiceAccount) echo "/api/v1/namespaces/$ns/serviceaccounts/$name" ;;
	Service) echo "/api/v1/namespaces/$ns/services/$name" ;;
	DaemonSet) echo "/apis/apps/v1/namespaces/$ns/daemonsets/$name" ;;
	Role) echo "/apis/rbac.authorization.k8s.io/v1/namespaces/$ns/roles/$name" ;;
	RoleBinding) echo "/apis/rbac.authorization.k8s.io/v1/namespaces/$ns/rolebindings/$name" ;;
	ServiceMonitor) echo "/apis/monitoring.coreos.com/v1/namespaces/$ns/servicemonitors/$name" ;;
	PrometheusRule) echo "/apis/monitoring.coreos.com/v1/namespaces/$ns/prometheusrules/$name" ;;
	*) fail "no REST path known for kind $kind" ;;
	esac
}

# ssa BODY PATH [QUERY]: server-side apply; prints the HTTP status, the
# answer in $work/out, response headers in $work/headers.
ssa() {
	kube_curl -o "$work/out" -D "$work/headers" -w '%{http_code}' -X PATCH \
		-H 'Content-Type: application/apply-patch+yaml' --data-binary "$1" \
		"$KUBE_URL$2?fieldManager=memfrag-e2e&fieldValidation=Strict&force=true${3:-}"
}

# ---- 1. server-side apply ------------------------------------------------------
for k in servicemonitors prometheusrules; do
	code=$(ssa "$(cat "$crd_dir/monitoring.coreos.com_$k.yaml")" "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$k.monitoring.coreos.com")
	case $code in 200 | 201) ;; *) fail "CRD $k: $code $(head -c 400 "$work/out")" ;; esac
done
established() {
	kube_curl "$KUBE_URL/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$1.monitoring.coreos.com" |
		jq -e '.status.conditions[] | select(.type == "Established" and .status == "True")' >/dev/null
}
for k in servicemonitors prometheusrules; do
	n=0
	until established "$k"; do
		n=$((n + 1))
		[ $n -lt 100 ] || fail "CRD $k not established"
		sleep 0.2
	done
done
log "ok: prometheus-operator $PO_VERSION CRDs (ServiceMonitor, PrometheusRule) established"
code=$(ssa '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"monitoring"}}' /api/v1/namespaces/monitoring)
[ "$code" = 201 ] || [ "$code" = 200 ] || fail "namespace monitoring: $code"

declare -A result
for v in base remediation; do
	query=
	[ "$v" = base ] && query='&dryRun=All'
	kinds=()
	while read -r obj; do
		kind=$(jq -r .kind <<<"$obj")
		code=$(ssa "$obj" "$(path_of "$obj")" "$query")
		case $code in
		200 | 201) ;;
		*) fail "$v: server-side apply of $kind/$(jq -r .metadata.name <<<"$obj") answered $code: $(jq -r .message "$work/out" 2>/dev/null || cat "$work/out")" ;;
		esac
		if grep -qi '^warning:' "$work/headers"; then
			fail "$v: $kind drew warnings from the API server: $(grep -i '^warning:' "$work/headers")"
		fi
		if [ "$kind" = DaemonSet ]; then
			# What the server defaulted is what the kubelet will run.
			jq -r '"    DaemonSet defaulted by the server: updateStrategy " + .spec.updateStrategy.type + ", dnsPolicy " + .spec.template.spec.dnsPolicy + ", restartPolicy " + .spec.template.spec.restartPolicy + ", revisionHistoryLimit " + (.spec.revisionHistoryLimit | tostring)' "$work/out"
		fi
		kinds+=("$kind")
	done <"$work/$v.jsonl"
	result[$v]="${#kinds[@]} objects (${kinds[*]})"
	log "ok: $v: server-side apply$([ "$v" = base ] && echo ' (dry run)') accepted ${result[$v]}, no warnings"
done

# ---- 2. RBAC with the service account's own token ---------------------------------
sa_token=$(kube_curl -X POST -H 'Content-Type: application/json' --data '{"spec":{"expirationSeconds":600}}' \
	"$KUBE_URL/api/v1/namespaces/monitoring/serviceaccounts/memfrag-exporter/token" | jq -er .status.token) ||
	fail "TokenRequest for monitoring/memfrag-exporter failed"
as_sa() { curl -sS --cacert "$KUBE_CA" -H "Authorization: Bearer $sa_token" "$@"; }
# can NAMESPACE VERB GROUP RESOURCE: the SA asks the server about itself.
can() {
	as_sa -X POST -H 'Content-Type: application/json' "$KUBE_URL/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" \
		--data "{\"apiVersion\":\"authorization.k8s.io/v1\",\"kind\":\"SelfSubjectAccessReview\",\"spec\":{\"resourceAttributes\":{\"namespace\":\"$1\",\"verb\":\"$2\",\"group\":\"$3\",\"resource\":\"$4\"}}}" |
		jq -er .status.allowed
}
for verb in get list watch create update patch; do
	[ "$(can monitoring "$verb" coordination.k8s.io leases)" = true ] || fail "the service account may not $verb its Leases"
done
for denied in "monitoring delete coordination.k8s.io leases" "monitoring deletecollection coordination.k8s.io leases" \
	"kube-system get coordination.k8s.io leases" "default create coordination.k8s.io leases" \
	"monitoring get '' secrets" "monitoring list '' pods" "monitoring get '' configmaps" "monitoring patch apps daemonsets"; do
	# shellcheck disable=SC2086
	set -- $denied
	[ "$(can "$1" "$2" "${3//\'/}" "$4")" = false ] || fail "the service account may $2 $4 in $1"
done
log "ok: SelfSubjectAccessReview: leases get/list/watch/create/update/patch in monitoring only; no delete, secrets, pods, configmaps, daemonsets, other namespaces"
status() { as_sa -o /dev/null -w '%{http_code}' "$@"; }
lease='{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"memfrag-remediation-0"},"spec":{"holderIdentity":"rbac-check","leaseDurationSeconds":30}}'
[ "$(status -X POST -H 'Content-Type: application/json' --data "$lease" "$KUBE_URL/apis/coordination.k8s.io/v1/namespaces/monitoring/leases")" = 201 ] ||
	fail "the service account cannot create a slot Lease"
[ "$(status -X DELETE "$KUBE_URL/apis/coordination.k8s.io/v1/namespaces/monitoring/leases/memfrag-remediation-0")" = 403 ] ||
	fail "the service account may delete a Lease"
[ "$(status "$KUBE_URL/api/v1/namespaces/monitoring/secrets")" = 403 ] || fail "the service account may list secrets"
[ "$(status "$KUBE_URL/api/v1/pods")" = 403 ] || fail "the service account may list pods"
[ "$(status -X POST -H 'Content-Type: application/json' --data "$lease" "$KUBE_URL/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")" = 403 ] ||
	fail "the service account may create Leases in kube-system"
log "ok: real requests with the token: create Lease 201; delete Lease, list secrets, list pods, Lease in kube-system: 403"

# ---- 3. Pod Security admission --------------------------------------------------------
# Enforcement applies to pods, not to the DaemonSet object (the DaemonSet
# controller's pod creations are what fail), so each variant's pod template
# is submitted as the pod the controller would create.
psa_ns() {
	ssa "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$1\",\"labels\":{\"pod-security.kubernetes.io/enforce\":\"$2\",\"pod-security.kubernetes.io/warn\":\"$2\"}}}" "/api/v1/namespaces/$1" >/dev/null
}
psa_ns psa-baseline baseline
psa_ns psa-privileged privileged
for ns in psa-baseline psa-privileged; do
	sa=$(jq -c --arg ns "$ns" 'select(.kind == "ServiceAccount") | .metadata.namespace = $ns' "$work/base.jsonl")
	code=$(ssa "$sa" "$(path_of "$sa" "$ns")")
	[ "$code" = 201 ] || fail "service account in $ns: $code"
done
psa_results=()
for v in base remediation; do
	ds=$(jq -c 'select(.kind == "DaemonSet")' "$work/$v.jsonl")
	pod=$(jq -c '{apiVersion: "v1", kind: "Pod", metadata: {name: "psa-check", labels: .spec.template.metadata.labels}, spec: (.spec.template.spec + {nodeName: "node-1"})}' <<<"$ds")
	for ns in psa-baseline psa-privileged; do
		code=$(kube_curl -o "$work/out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data "$pod" \
			"$KUBE_URL/api/v1/namespaces/$ns/pods?dryRun=All")
		case $ns:$code in
		psa-baseline:403)
			why=$(jq -r .message "$work/out")
			grep -q 'violates PodSecurity "baseline' <<<"$why" || fail "$v in $ns: 403 but not from Pod Security: $why"
			psa_results+=("$v under baseline: rejected (${why#*: })")
			;;
		psa-privileged:201) psa_results+=("$v under privileged: admitted") ;;
		*) fail "$v pod in $ns answered $code: $(jq -r .message "$work/out" 2>/dev/null)" ;;
		esac
	done
	# The DaemonSet itself is stored under baseline, with a warning naming
	# what its pods will be refused for.
	ds=$(jq -c '.metadata.namespace = "psa-baseline"' <<<"$ds")
	code=$(ssa "$ds" "$(path_of "$ds")" '&dryRun=All')
	[ "$code" = 201 ] || [ "$code" = 200 ] || fail "$v DaemonSet in psa-baseline: $code"
	warn=$(grep -i '^warning:.*violate PodSecurity.*baseline' "$work/headers" | tr -d '\r') ||
		fail "$v DaemonSet in psa-baseline drew no Pod Security warning"
	psa_results+=("$v DaemonSet under baseline: stored, with ${warn#*- }")
done
log "ok: Pod Security admission:"
printf '    %s\n' "${psa_results[@]}"
echo "PASS e2e/72-apiserver-manifests.sh: base ${result[base]}; remediation ${result[remediation]}"
