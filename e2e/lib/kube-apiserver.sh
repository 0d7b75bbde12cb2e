# shellcheck shell=bash
# A real Kubernetes control plane on loopback for the e2e scripts: Debian's
# etcd-server as the store and kube-apiserver built from the Go module proxy
# (e2e/kube-apiserver, k8s.io/kubernetes v1.37.2). Source this file, then:
#
#   kube_apiserver_build           # once per machine; cached outside the checkout
#   kube_apiserver_start DIR PORT  # etcd + apiserver; waits for /readyz
#   kube_apiserver_stop            # stops both (also call it from your trap)
#   kube_apiserver_stop_api        # stops only the apiserver (fail-closed tests)
#   kube_apiserver_restart_api     # starts it again on the same etcd
#   kube_curl ARGS...              # curl as the admin token against the server
#
# After start: KUBE_URL (https://127.0.0.1:PORT), KUBE_CA (serving CA file),
# KUBE_ADMIN_TOKEN, KUBE_DIR. Ports: PORT for the apiserver, PORT+1/PORT+2
# for etcd's client/peer URLs, all on 127.0.0.1.

KUBE_VERSION=v1.37.2
KUBE_CACHE=${MEMFRAG_CI_CACHE:-/var/cache/memfrag-ci}/kube-apiserver-$KUBE_VERSION
KUBE_APISERVER_BIN=$KUBE_CACHE/kube-apiserver

# kube_apiserver_build builds the apiserver into the cache unless it is there.
# The module's go.mod is copied to a scratch dir in the cache, so `go mod tidy`
# never writes into the checkout.
kube_apiserver_build() {
	if [ -x "$KUBE_APISERVER_BIN" ] && "$KUBE_APISERVER_BIN" --version 2>/dev/null | grep -q "$KUBE_VERSION"; then
		return 0
	fi
	local src here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../kube-apiserver" && pwd)
	mkdir -p "$KUBE_CACHE"
	src=$(mktemp -d "$KUBE_CACHE/src.XXXXXX")
	cp "$here/go.mod" "$here/main.go" "$src/"
	local t0=$SECONDS
	echo "building kube-apiserver $KUBE_VERSION into $KUBE_CACHE (once; minutes)" >&2
	(
		cd "$src" &&
			GOFLAGS=-mod=mod nice -n 10 go mod tidy &&
			GOFLAGS=-mod=mod nice -n 10 go build -trimpath \
				-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" \
				-o "$src/kube-apiserver" .
	) || {
		rm -rf "$src"
		echo "kube-apiserver build failed" >&2
		return 1
	}
	mv "$src/kube-apiserver" "$KUBE_APISERVER_BIN"
	rm -rf "$src"
	echo "built kube-apiserver in $((SECONDS - t0))s" >&2
}

KUBE_ETCD_PID= KUBE_API_PID=

# kube_apiserver_start DIR PORT
kube_apiserver_start() {
	KUBE_DIR=$1
	local port=$2
	KUBE_PORT=$port
	command -v etcd >/dev/null || {
		echo "etcd not found (etcd-server in .ci/apt-packages)" >&2
		return 1
	}
	command -v openssl >/dev/null || {
		echo "openssl not found" >&2
		return 1
	}
	local p
	for p in "$port" $((port + 1)) $((port + 2)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "127.0.0.1:$p is already in use" >&2
			return 1
		fi
	done
	mkdir -p "$KUBE_DIR/etcd"
	chmod 700 "$KUBE_DIR/etcd"
	# Serving CA and certificate for 127.0.0.1, and the service-account key.
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=memfrag-test-ca \
		-keyout "$KUBE_DIR/ca.key" -out "$KUBE_DIR/ca.crt" 2>/dev/null || return 1
	openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
		-keyout "$KUBE_DIR/serving.key" -out "$KUBE_DIR/serving.csr" 2>/dev/null || return 1
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >"$KUBE_DIR/san.ext"
	openssl x509 -req -in "$KUBE_DIR/serving.csr" -CA "$KUBE_DIR/ca.crt" -CAkey "$KUBE_DIR/ca.key" \
		-CAcreateserial -days 2 -extfile "$KUBE_DIR/san.ext" -out "$KUBE_DIR/serving.crt" 2>/dev/null || return 1
	openssl genrsa -out "$KUBE_DIR/sa.key" 2048 2>/dev/null || return 1
	openssl rsa -in "$KUBE_DIR/sa.key" -pubout -out "$KUBE_DIR/sa.pub" 2>/dev/null || return 1
	KUBE_ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	printf '%s,admin,admin-uid,system:masters\n' "$KUBE_ADMIN_TOKEN" >"$KUBE_DIR/tokens.csv"
	KUBE_CA=$KUBE_DIR/ca.crt
	KUBE_URL=https://127.0.0.1:$port

	etcd --name memfrag-test --data-dir "$KUBE_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$((port + 1))" \
		--advertise-client-urls "http://127.0.0.1:$((port + 1))" \
		--listen-peer-urls "http://127.0.0.1:$((port + 2))" \
		--initial-advertise-peer-urls "http://127.0.0.1:$((port + 2))" \
		--initial-cluster "memfrag-test=http://127.0.0.1:$((port + 2))" \
		>"$KUBE_DIR/etcd.log" 2>&1 &
	KUBE_ETCD_PID=$!
	kube_apiserver_restart_api
}

# kube_apiserver_restart_api starts the apiserver (again) and waits for /readyz.
kube_apiserver_restart_api() {
	"$KUBE_APISERVER_BIN" \
		--etcd-servers "http://127.0.0.1:$((KUBE_PORT + 1))" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$KUBE_PORT" \
		--tls-cert-file "$KUBE_DIR/serving.crt" --tls-private-key-file "$KUBE_DIR/serving.key" \
		--client-ca-file "$KUBE_DIR/ca.crt" \
		--token-auth-file "$KUBE_DIR/tokens.csv" \
		--authorization-mode RBAC \
		--service-account-issuer https://kubernetes.default.svc \
		--service-account-key-file "$KUBE_DIR/sa.pub" \
		--service-account-signing-key-file "$KUBE_DIR/sa.key" \
		--service-cluster-ip-range 10.96.0.0/24 \
		--cert-dir "$KUBE_DIR/certs" \
		--enable-priority-and-fairness=false \
		--endpoint-reconciler-type none \
		--allow-privileged=true \
		>>"$KUBE_DIR/kube-apiserver.log" 2>&1 &
	KUBE_API_PID=$!
	local deadline=$((SECONDS + 120))
	until curl -sf --cacert "$KUBE_CA" -H "Authorization: Bearer $KUBE_ADMIN_TOKEN" "$KUBE_URL/readyz" >/dev/null 2>&1; do
		if ! kill -0 "$KUBE_API_PID" 2>/dev/null; then
			echo "kube-apiserver exited; last lines of its log:" >&2
			tail -n 30 "$KUBE_DIR/kube-apiserver.log" >&2
			return 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "kube-apiserver not ready after 120s" >&2
			tail -n 30 "$KUBE_DIR/kube-apiserver.log" >&2
			return 1
		fi
		sleep 0.5
	done
}

# kube_stop_pid PID: SIGTERM, then SIGKILL after 10 s (the apiserver's
# graceful shutdown waits on its clients).
kube_stop_pid() {
	local pid=$1 n=0
	kill "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

kube_apiserver_stop_api() {
	if [ -n "$KUBE_API_PID" ]; then
		kube_stop_pid "$KUBE_API_PID"
		KUBE_API_PID=
	fi
}

kube_apiserver_stop() {
	kube_apiserver_stop_api
	if [ -n "$KUBE_ETCD_PID" ]; then
		kube_stop_pid "$KUBE_ETCD_PID"
		KUBE_ETCD_PID=
	fi
}

kube_curl() {
	curl -sS --cacert "$KUBE_CA" -H "Authorization: Bearer $KUBE_ADMIN_TOKEN" "$@"
}
