#!/usr/bin/env bash
# demo.sh: the Weir flow in one minute on a local cluster of 3 node processes.
# Uses bin/weir (make build), or the binary named by $WEIR, and $WEIR_HOME
# (default ~/.weir) for the local cluster's state.
set -euo pipefail

cd "$(dirname "$0")/.."
WEIR="${WEIR:-bin/weir}"
if [[ ! -x "$WEIR" ]]; then
	echo "demo: $WEIR is not an executable; build it with \"make build\" or set WEIR=/path/to/weir" >&2
	exit 1
fi

# step prints a command, then runs it.
step() {
	printf '\n$ %s\n' "$*"
	"$@"
}

step "$WEIR" cluster start
step "$WEIR" topic create demo -p 3
printf '\n$ seq -f "record %%g" 1 10 | %s produce demo\n' "$WEIR"
seq -f "record %g" 1 10 | "$WEIR" produce demo
step "$WEIR" consume demo -B -d
step "$WEIR" cluster status

cat <<MSG

The cluster keeps running. When you are done:
  $WEIR cluster stop      # stop the nodes; the data stays
  $WEIR cluster delete    # stop the nodes and delete the data
MSG
