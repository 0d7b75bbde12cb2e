# Sourced by the e2e scripts that run within a time budget: $BUDGET seconds
# from when this file is sourced. The script defines fail.
t0=$(date +%s)
elapsed() { echo $(($(date +%s) - t0)); }
log() { echo "[$(elapsed)s] $*"; }

# wait_for DESCRIPTION COMMAND...: retry COMMAND every ${WAIT_POLL:-0.5} s
# until it succeeds, within the run's budget.
wait_for() {
	local what=$1
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(elapsed)" -lt "$BUDGET" ] || fail "timed out waiting for: $what"
		sleep "${WAIT_POLL:-0.5}"
	done
	log "ok: $what"
}
