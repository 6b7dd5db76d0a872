#!/usr/bin/env bash
# chaos.sh: run Weir's fault tests (test/chaos) against docker compose
# clusters of the FROM-scratch image, and tear the cluster down whatever
# happens (the Go tests do it too; this trap covers a killed `go test`).
#
#   scripts/chaos.sh [short|long|lifecycle|all] [go test flags...]
#
#   short      TestChaos_Short: ~2 min of kill/pause/partition faults (as in make test)
#   long       TestChaos_Long: 10 min of every fault, a new seed each run
#   lifecycle  TestChaos_Lifecycle: shutdown → image swap → upgrade → resume under faults
#   all        the three (default)
#
# Environment (docs/chaos.md): WEIR_CHAOS_SEED, WEIR_CHAOS_NODES (3|5),
# WEIR_CHAOS_FAULTS, WEIR_CHAOS_DURATION, WEIR_CHAOS_IMAGE, WEIR_CHAOS_ARTIFACTS.
# Host needs: a Docker engine, docker compose or docker-compose, and for
# network faults iptables + nsenter (apt-get install -y iptables util-linux
# iproute2); run as root.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="${PATH}:/usr/local/go/bin"

mode="${1:-all}"
[[ $# -gt 0 ]] && shift
case "$mode" in
short) run='^TestChaos_Short$' ;;
long) run='^TestChaos_Long$'; export WEIR_CHAOS_LONG=1 ;;
lifecycle) run='^TestChaos_Lifecycle$'; export WEIR_CHAOS_LIFECYCLE=1 ;;
all) run='^TestChaos_'; export WEIR_CHAOS_LONG=1 ;;
*)
	echo "chaos.sh: unknown mode \"$mode\"; use short, long, lifecycle or all" >&2
	exit 2
	;;
esac

if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
else
	compose=(docker-compose)
fi

teardown() {
	# The harness names its containers weirchaos-weirN; unpause before removing.
	for c in $(docker ps -aq --filter name=weirchaos-weir 2>/dev/null); do
		docker unpause "$c" >/dev/null 2>&1 || true
	done
	local dir
	dir="$(ls -1dt test/chaos/artifacts/*/ 2>/dev/null | head -1 || true)"
	if [[ -n "$dir" && -f "$dir/docker-compose.yml" ]]; then
		"${compose[@]}" -p weirchaos -f "$dir/docker-compose.yml" down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
	fi
	docker rm -f $(docker ps -aq --filter name=weirchaos-weir 2>/dev/null) >/dev/null 2>&1 || true
}
trap teardown EXIT INT TERM

echo "chaos: go test -run '$run' ./test/chaos/ (artifacts under test/chaos/artifacts/)"
go test -count=1 -timeout 90m -v -run "$run" "$@" ./test/chaos/
