# Sourced by the e2e scripts. The script defines fail and repo.

# require_tools TOOL...: fail unless every TOOL is on PATH.
require_tools() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || fail "$tool not found (see .ci/apt-packages)"
	done
}

# exporter_binary: set exporter_bin to $MEMFRAG_EXPORTER, or build the
# tree's (make build) and use that.
exporter_binary() {
	exporter_bin=${MEMFRAG_EXPORTER:-}
	if [ -z "$exporter_bin" ]; then
		make -s build
		exporter_bin=$repo/memfrag_exporter
	fi
}
