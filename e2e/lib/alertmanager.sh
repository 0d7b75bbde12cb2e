# Sourced by the e2e scripts that run Alertmanager or amtool.
# AM_VERSION: the first releases with templated webhook URLs; v0.32+ need a
# UI build to compile.
AM_VERSION=v0.31.1

# ensure_alertmanager builds alertmanager and amtool at $AM_VERSION into
# $(go env GOPATH)/bin unless the cached binaries already are that version.
ensure_alertmanager() {
	local bin
	bin="$(go env GOPATH)/bin"
	if go version -m "$bin/amtool" 2>/dev/null | grep -q "github.com/prometheus/alertmanager[[:space:]]*$AM_VERSION" &&
		go version -m "$bin/alertmanager" 2>/dev/null | grep -q "github.com/prometheus/alertmanager[[:space:]]*$AM_VERSION"; then
		return
	fi
	echo "building alertmanager and amtool $AM_VERSION (once; cached in $bin)" >&2
	go install "github.com/prometheus/alertmanager/cmd/alertmanager@$AM_VERSION" \
		"github.com/prometheus/alertmanager/cmd/amtool@$AM_VERSION"
}
