#!/usr/bin/env bash
# demo.sh: Weir's reason to exist, in about a minute: a local cluster of 3
# node processes upgraded across two real builds without losing a record.
#
#   build bin/weir-0.1.0 and bin/weir (0.2.0) with make
#   start on 0.1.0, produce a file, shut down
#   upgrade to 0.2.0 (plan, then mark), resume node by node
#   consume and compare with what was produced
#
# Each command is printed, then run, with its output. The demo runs in a
# home of its own, $WEIR_DEMO_HOME (default ~/.weir-demo), so that it never
# touches the cluster under $WEIR_HOME; a demo cluster left there by an
# earlier run is deleted first. It leaves the upgraded cluster running and
# says how to stop it.
set -euo pipefail

cd "$(dirname "$0")/.."
OLD_VERSION="${OLD_VERSION:-0.1.0}"
NEW_VERSION="${NEW_VERSION:-0.2.0}"
OLD="bin/weir-$OLD_VERSION"
NEW="bin/weir"
RECORDS="${RECORDS:-2000}"
export LC_ALL=C

# The home the Makefile's demo target started a cluster in (it runs
# `bin/weir cluster start` before this script), and the demo's own.
user_home="${WEIR_HOME:-$HOME/.weir}"
export WEIR_HOME="${WEIR_DEMO_HOME:-$HOME/.weir-demo}"
unset WEIR_ADDR

# step prints a command, then runs it; the demo stops at the first failure.
step() {
	printf '\n$ %s\n' "$*"
	"$@"
}

# say prints a comment between the steps.
say() {
	printf '\n# %s\n' "$*"
}

# compare reads the topic back with binary $1 and compares the sorted
# records with the sorted lines of the files produced ($2...).
compare() {
	local bin="$1"
	shift
	printf '\n$ %s consume events -B -d | sort | sha256sum      # and: cat %s | sort | sha256sum\n' "$bin" "$*"
	local got want n
	got="$("$bin" consume events -B -d | sort | sha256sum | cut -d' ' -f1)"
	want="$(cat "$@" | sort | sha256sum | cut -d' ' -f1)"
	n="$(cat "$@" | wc -l | tr -d ' ')"
	echo "read back: $got"
	echo "produced:  $want"
	if [[ "$got" != "$want" ]]; then
		echo "demo: the records read back differ from those produced" >&2
		exit 1
	fi
	echo "identical: all $n records read back"
}

say "build two releases of the same source: $OLD ($OLD_VERSION) and $NEW ($NEW_VERSION)"
# MAKEFLAGS is cleared so that a VERSION given to `make demo` does not
# override the two versions built here.
step env MAKEFLAGS= make --no-print-directory build VERSION="$OLD_VERSION" BIN="$OLD"
step env MAKEFLAGS= make --no-print-directory build VERSION="$NEW_VERSION" BIN="$NEW"

say "the demo's own home: WEIR_HOME=$WEIR_HOME"
if [[ -f "$WEIR_HOME/local/cluster.json" ]]; then
	step "$NEW" cluster delete --force
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
first="$workdir/before-upgrade.txt"
second="$workdir/after-upgrade.txt"
head -c $((RECORDS * 45)) /dev/urandom | base64 -w 60 | head -n "$RECORDS" >"$first"
head -c $((RECORDS * 45)) /dev/urandom | base64 -w 60 | head -n "$RECORDS" >"$second"

say "start a 3-node cluster on $OLD_VERSION and produce $RECORDS random records"
step "$OLD" cluster start
step "$OLD" topic create events -p 3
step "$OLD" produce events --file "$first"
compare "$OLD" "$first"

say "shut down: every node closes its data plane, drains, writes its pre-upgrade backup; the processes stop"
step "$OLD" cluster shutdown
step "$OLD" cluster status

say "with the new binary: the plan first (it starts the nodes on $NEW_VERSION; the data plane stays closed)"
step "$NEW" cluster upgrade --dry-run
say "then the consensus-committed upgrade mark"
step "$NEW" cluster upgrade --yes

say "resume: node by node, health-gated, followers first, the leader last; then the version is final"
step "$NEW" cluster resume
step "$NEW" cluster status

say "everything produced on $OLD_VERSION reads back on $NEW_VERSION"
compare "$NEW" "$first"
say "new records append to the same topic"
step "$NEW" produce events --file "$second"
compare "$NEW" "$first" "$second"
step "$NEW" cluster history

cat <<MSG

The demo cluster (weir $NEW_VERSION) keeps running under $WEIR_HOME. When you are done:
  WEIR_HOME=$WEIR_HOME $NEW cluster stop      # stop the nodes; the data stays
  WEIR_HOME=$WEIR_HOME $NEW cluster delete    # stop the nodes and delete the data
MSG
if [[ -n "${MAKELEVEL:-}" && -f "$user_home/local/cluster.json" ]]; then
	cat <<MSG

Note: the Makefile's demo target also ran "bin/weir cluster start" in $user_home before this
script; that cluster is not the demo's. Stop it with:
  WEIR_HOME=$user_home $NEW cluster stop
MSG
fi
