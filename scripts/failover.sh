#!/bin/bash
# scripts/failover.sh: issue 5's failover figure on real processes. Starts a
# local cluster, and three times: runs `weir bench produce` (12 s, 2000
# records/s, 4 producers, 10-record requests), kills the leader's process
# with kill -9 4 s in, and records the longest acknowledged-request latency
# (the write outage a client sees) and the election lines of the node logs.
# A different leader is killed each run. docs/performance.md ("Failover")
# has the figures this produced.
#
# usage: scripts/failover.sh [OUTDIR]     (WEIR=path to the binary, default ./bin/weir from `make build`)
# needs: jq
set -u
BIN=${WEIR:-./bin/weir}
OUT=${1:-failover-$(date -u +%Y%m%dT%H%M%SZ)}
export WEIR_HOME
WEIR_HOME=$(mktemp -d "${HOME}/.weir-failover.XXXXXX")
command -v jq >/dev/null || { echo "failover: needs jq (apt-get install jq)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "failover: no binary at $BIN; run make build or set WEIR" >&2; exit 1; }
mkdir -p "$OUT"
trap '"$BIN" cluster delete --force >/dev/null 2>&1 || "$BIN" cluster stop >/dev/null 2>&1; rm -rf "$WEIR_HOME"' EXIT
exec > >(tee "$OUT/run.log") 2>&1
"$BIN" cluster start > "$OUT/start.txt" 2>&1 || { cat "$OUT/start.txt"; exit 1; }
killed=" "
leader_now() { "$BIN" cluster status --output json 2>/dev/null | jq -r '.leader // empty'; }
for run in 1 2 3; do
  for try in $(seq 1 10); do
    for i in $(seq 1 100); do l=$(leader_now); [ -n "$l" ] && break; sleep 0.2; done
    # every node serving?
    serving=$("$BIN" cluster status --output json 2>/dev/null | jq '[.nodes[] | select(.serving==true and (.raft_state=="leader" or .raft_state=="follower"))] | length')
    if [ "$serving" != 3 ]; then sleep 0.5; continue; fi
    case "$killed" in *" $l "*) echo "leader $l already killed; restarting cluster" ; "$BIN" cluster stop >/dev/null 2>&1; "$BIN" cluster start >/dev/null 2>&1; continue;; esac
    break
  done
  pid=$(jq -r ".nodes[] | select(.id==\"$l\") | .pid" "$WEIR_HOME/local/cluster.json")
  echo "run $run: leader $l pid $pid"
  sleep 2
  "$BIN" bench produce --duration 12s --rate 2000 --producers 4 --batch 10 --output json > "$OUT/run$run.json" 2> "$OUT/run$run.err" &
  bp=$!
  sleep 4
  kill -9 "$pid"; echo "run $run: killed $l at $(date -u +%H:%M:%S.%N)"
  wait $bp
  jq -c '{killed: "'$l'", max_ms: (.latency_max_ns/1e6), p999_ms: (.latency_p999_ns/1e6), p99_ms: (.latency_p99_ns/1e6), errors, records}' "$OUT/run$run.json" || cat "$OUT/run$run.err"
  killed="$killed$l "
  sleep 1
  "$BIN" cluster start > /dev/null 2>&1
done
for f in "$WEIR_HOME"/local/node*/node.log; do echo "== $f"; grep -E "entering candidate state|election won|pre-vote campaign failed|entering leader state|heartbeat timeout reached" "$f" | tail -40; done > "$OUT/elections.txt"
