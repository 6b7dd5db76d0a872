#!/usr/bin/env bash
# capacity.sh: issue 5's capacity targets, measured on real node processes.
#
#   "a node's resident memory stays under 200 MB with 5 million records
#    stored (state on disk, not in maps); a restarted node with 5 million
#    records serves again within 3 s, replaying nothing it had applied"
#
# usage: scripts/capacity.sh [records]        (default 5000000)
#
# What it does, on a local 3-node cluster (weir cluster start) in a home of
# its own under /root/capacity-*:
#
#  1. weir bench produce --records N --record-size 1024 --producers 4
#     --batch 100 --partitions 4 --output json against the three nodes.
#     Meanwhile every $SAMPLE_EVERY s (5) it samples each node process:
#     VmRSS, RssAnon, RssFile (/proc/PID/status), the Go heap (live after
#     the last GC and the GC goal, from GODEBUG=gctrace=1 lines in the node
#     log), and the data dir on disk (allocated) split into raft.db,
#     state.db, state.db.segments/ and snapshots/. Every second it asks each node's /v1/health
#     for its applied index, to place write stalls in time.
#  2. Prints the produce result, the Raft snapshots each node took (from the
#     raft log lines, with durations), and every stretch of >= 2 s in which
#     a node applied nothing while the produce ran, with the snapshots that
#     overlapped it.
#  3. Restarts one follower, then the leader, each after kill -9 and after a
#     graceful stop (SIGTERM, as "weir cluster stop" does), with
#     "weir cluster start" (which starts the recorded cluster's stopped
#     nodes with the same command line). It measures from the exec to
#       (a) /v1/health says serving,
#       (b) the last record of partition 0 read from that node (default
#           consistency: the node's own store), and
#       (c) the same read with consistency=strong through that node (a
#           follower answers it with a redirect to the leader, followed),
#     reads the stopped node's files (state store's applied index, Raft
#     log's first and last index, newest snapshot) to say what Raft hands
#     the state machine again on start, and reports RSS right after the
#     restart and after reading partition 0 from offset 0 through it.
#  4. Stops the cluster, kills what it started, deletes the data (tens of
#     GB for 5 M records). Results stay in /root/capacity-results-*.
#
# Reading the restart figures: the page cache decides them. Three nodes'
# data (about 55 GB for 5 M records) is more than most machines cache, so a
# node's first restart reads its files from disk and a second one mostly
# does not. The node logs' gctrace lines (GODEBUG=gctrace=1 is set for the
# nodes) show the start-up phases: the state store's open (bbolt rebuilding
# its freelist: the heap grows to tens of MB, then drops) and raft.NewRaft's
# scan of the log after the newest snapshot, up to "initial configuration".
#
# Environment: WEIR (binary, default ./bin/weir from "make build"),
# SAMPLE_EVERY (5), MIN_FREE_GB (10: the produce is stopped when the disk
# gets this full), KEEP_DATA=1 (keep the data dirs), CAPACITY_DIR and
# CAPACITY_RESULTS (where data and results go). The nodes inherit the
# environment, so WEIR_RAFT_TRAILING_LOGS=N sets their --raft-trailing-logs.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$PWD"
export LC_ALL=C
export PATH="$PATH:/usr/local/go/bin"

RECORDS="${1:-5000000}"
[[ "$RECORDS" =~ ^[0-9]+$ && "$RECORDS" -gt 0 ]] || { echo "usage: $0 [records]" >&2; exit 2; }
WEIR="${WEIR:-./bin/weir}"
[[ -x "$WEIR" ]] || { echo "capacity: $WEIR is not an executable (make build, or set WEIR=)" >&2; exit 1; }
WEIR="$(realpath "$WEIR")"
RECORD_SIZE=1024
PRODUCERS=4
BATCH=100
PARTITIONS=4
TOPIC=capacity
SAMPLE_EVERY="${SAMPLE_EVERY:-5}"
MIN_FREE_GB="${MIN_FREE_GB:-10}"
KEEP_DATA="${KEEP_DATA:-0}"
RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
SCRATCH="${CAPACITY_DIR:-/root/capacity-$RUN_ID}"
RESULTS="${CAPACITY_RESULTS:-/root/capacity-results-$RUN_ID}"

export WEIR_HOME="$SCRATCH/home"
unset WEIR_ADDR GODEBUG

mkdir -p "$SCRATCH" "$RESULTS"
exec > >(tee "$RESULTS/report.txt") 2>&1

CLUSTER_JSON="$WEIR_HOME/local/cluster.json"
SAMPLES="$RESULTS/samples.tsv"  # t_ms phase node pid rss anon file heap_live heap_goal raft state snaps raft_rss state_rss (KiB; heap MB)
PROBES="$RESULTS/probes.tsv"    # t_ms node applied_index (or -1: no answer within 1 s)
SNAPS="$RESULTS/snapshots.tsv"  # node start_ms end_ms index
PHASE_FILE="$SCRATCH/phase"
ALL_PIDS="$SCRATCH/node-pids"   # every node pid seen, for the cleanup
STOP_FLAG="$SCRATCH/disk-low"
BG_PIDS=()
BENCH_PID=""

now_ms() { date +%s%3N; }
say() { printf '\n## %s\n' "$*"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
free_gb() { df --output=avail -B1G "$SCRATCH" | tail -1 | tr -d ' '; }

# --- the local cluster's record -----------------------------------------
node_ids() { jq -r '.nodes[].id' "$CLUSTER_JSON"; }
node_field() { jq -r --arg id "$1" --arg f "$2" '.nodes[] | select(.id == $id) | .[$f]' "$CLUSTER_JSON"; }
all_addrs() { jq -r '[.nodes[].api_addr] | join(",")' "$CLUSTER_JSON"; }
remember_pids() {
	[[ -f "$CLUSTER_JSON" ]] || return 0
	jq -r '.nodes[] | "\(.pid) \(.id)"' "$CLUSTER_JSON" >>"$ALL_PIDS"
}
# alive PID ID: the process runs node ID (not a zombie, not a reused pid).
alive() {
	local pid="$1" id="$2"
	[[ "$pid" -gt 0 && -r /proc/$pid/cmdline ]] || return 1
	[[ "$(awk '{ print $3 }' /proc/$pid/stat 2>/dev/null)" != Z ]] || return 1
	local cmd
	cmd="$(tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null)" || return 1
	[[ "$cmd" == *"--id $id "* ]]
}

health() { curl -sf --max-time "${2:-1}" "http://$1/v1/health"; }
status() { curl -sf --max-time 2 "http://$(node_field "$1" api_addr)/v1/status"; }
leader_id() { # [EXCLUDE]: the leader a running node other than EXCLUDE knows
	local id st l
	for id in $(node_ids); do
		[[ "$id" != "${1:-}" ]] || continue
		st="$(status "$id")" || continue
		l="$(jq -r .leader <<<"$st")"
		if [[ -n "$l" && "$l" != "${1:-}" ]]; then
			echo "$l"
			return 0
		fi
	done
	return 1
}
hwm() { # ADDR PARTITION
	curl -sf --max-time 5 "http://$1/v1/topics/$TOPIC" | jq -r --argjson p "$2" '.partitions[] | select(.partition == $p) | .high_watermark'
}
phase() { # the phase the samples are labelled with (written whole: the sampler reads it concurrently)
	echo "$1" >"$PHASE_FILE.tmp" && mv "$PHASE_FILE.tmp" "$PHASE_FILE"
}

# --- process memory and disk -------------------------------------------
proc_kib() { # PID FIELD -> KiB from /proc/PID/status (0 when gone)
	local v=""
	[[ -r /proc/$1/status ]] && v="$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null)"
	echo "${v:-0}"
}
# go_heap LOG: "live goal" in MB after the last GC of the node's current
# process (GODEBUG=gctrace=1), "- -" when none was logged yet.
go_heap() {
	tail -c 400000 "$1" 2>/dev/null | awk '
		/^=== / { live = "-"; goal = "-" }
		/^gc [0-9]+ @/ && / MB goal/ {
			for (i = 1; i <= NF; i++) {
				if ($i ~ /->.*->/ && $(i+1) ~ /^MB/) { n = split($i, a, "->"); live = a[n] }
				if ($(i+1) == "MB" && $(i+2) ~ /^goal/) goal = $i
			}
		}
		END { print (live == "" ? "-" : live), (goal == "" ? "-" : goal) }'
}
# mapped_kib PID: "raft state" KiB of raft.db and state.db resident in the
# process's mappings (/proc/PID/smaps): RssFile split by file.
mapped_kib() {
	awk '/^[0-9a-f]+-[0-9a-f]+ / { f = $6 } /^Rss:/ { if (f ~ /\/raft\.db$/) r += $2; if (f ~ /\/state\.db$/) s += $2 }
		END { printf "%d %d\n", r, s }' "/proc/$1/smaps" 2>/dev/null || echo "0 0"
}
disk_kib() { du -sk "$1" 2>/dev/null | cut -f1 || echo 0; }
# store_kib DIR: the state store, its index (state.db) and its segment files.
store_kib() { du -skc "$1/state.db" "$1/state.db.segments" 2>/dev/null | tail -1 | cut -f1 || echo 0; }
# snaps_kib DIR: what the snapshots hold beyond the segment files they link
# (du counts a file with several links once, under the first argument).
snaps_kib() { du -sk "$1/state.db.segments" "$1/snapshots" 2>/dev/null | tail -1 | cut -f1 || echo 0; }

sample_once() {
	local t phase id pid dir log
	t="$(now_ms)"
	phase="$(cat "$PHASE_FILE" 2>/dev/null || echo -)"
	for id in $(node_ids); do
		pid="$(node_field "$id" pid)"
		dir="$(node_field "$id" data_dir)"
		log="$(node_field "$id" log)"
		if alive "$pid" "$id"; then
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$phase" "$id" "$pid" \
				"$(proc_kib "$pid" VmRSS)" "$(proc_kib "$pid" RssAnon)" "$(proc_kib "$pid" RssFile)" \
				"$(go_heap "$log" | tr ' ' '\t')" \
				"$(disk_kib "$dir/raft.db")" "$(store_kib "$dir")" "$(snaps_kib "$dir")" \
				"$(mapped_kib "$pid" | tr ' ' '\t')"
		else
			printf '%s\t%s\t%s\t-\t0\t0\t0\t-\t-\t%s\t%s\t%s\t0\t0\n' "$t" "$phase" "$id" \
				"$(disk_kib "$dir/raft.db")" "$(store_kib "$dir")" "$(snaps_kib "$dir")"
		fi
	done >>"$SAMPLES"
	if [[ "$(free_gb)" -lt "$MIN_FREE_GB" && ! -e "$STOP_FLAG" ]]; then
		echo "$t free disk below ${MIN_FREE_GB} GB" >"$STOP_FLAG"
	fi
}

sampler() {
	while :; do
		sample_once || true
		sleep "$SAMPLE_EVERY"
	done
}

prober() {
	local id addr a t
	while :; do
		for id in $(node_ids); do
			addr="$(node_field "$id" api_addr)"
			t="$(now_ms)"
			if a="$(health "$addr" 1 | jq -r .applied_index)"; then :; else a=-1; fi
			printf '%s\t%s\t%s\n' "$t" "$id" "$a"
		done >>"$PROBES"
		sleep 1
	done
}

# --- reading a stopped node's files --------------------------------------
# A small Go program (the repo's go.mod, so the module cache has what it
# needs) that opens state.db and raft.db read-only.
HELPER="$SCRATCH/helper/raftidx"
build_helper() {
	mkdir -p "$SCRATCH/helper"
	cp "$REPO/go.mod" "$REPO/go.sum" "$SCRATCH/helper/"
	cat >"$SCRATCH/helper/main.go" <<'EOF'
// raftidx prints a stopped node's indexes: the state store's applied index
// and the Raft log's first and last index.
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

func open(path string) *bolt.DB {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return db
}

func main() {
	var applied, first, last uint64
	st := open(os.Args[1])
	_ = st.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("meta")); b != nil {
			if v := b.Get([]byte("applied_index")); len(v) == 8 {
				applied = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	st.Close()
	rf := open(os.Args[2])
	_ = rf.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("logs")); b != nil {
			c := b.Cursor()
			if k, _ := c.First(); len(k) == 8 {
				first = binary.BigEndian.Uint64(k)
			}
			if k, _ := c.Last(); len(k) == 8 {
				last = binary.BigEndian.Uint64(k)
			}
		}
		return nil
	})
	rf.Close()
	fmt.Println(applied, first, last)
}
EOF
	(cd "$SCRATCH/helper" && go build -o raftidx .)
}
# newest_snapshot DATA_DIR -> "index size_bytes" of the newest snapshot, or "0 0"
# (raft's FileSnapshotStore keeps them in snapshots/snapshots/TERM-INDEX-MS/.)
snapshot_metas() { find "$1/snapshots" -name meta.json -exec cat {} + 2>/dev/null | jq -s -c 'sort_by(.Index) | .[]'; }
newest_snapshot() {
	snapshot_metas "$1" | jq -r -s 'if length == 0 then "0 0" else (last | "\(.Index) \(.Size)") end'
}

# --- snapshots from the node logs ----------------------------------------
log_ms() { date -d "$1" +%s%3N; }
collect_snapshots() {
	local id log line ts idx start
	: >"$SNAPS"
	for id in $(node_ids); do
		log="$(node_field "$id" log)"
		start=""
		while IFS= read -r line; do
			# the timestamp, not the first field: GODEBUG=gctrace writes to the
			# same file and can run into a log line
			ts="$(grep -a -o -E '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z' <<<"$line" | tail -n 1)"
			idx="$(sed -n 's/.*index=\([0-9]*\).*/\1/p' <<<"$line")"
			case "$line" in
			*"starting snapshot up to"*) start="$(log_ms "$ts") $idx" ;;
			*"snapshot complete up to"*)
				if [[ -n "$start" ]]; then
					printf '%s\t%s\t%s\t%s\n' "$id" "${start%% *}" "$(log_ms "$ts")" "$idx" >>"$SNAPS"
				fi
				start=""
				;;
			*"failed to take snapshot"* | *"failed to persist snapshot"*)
				printf '%s\t%s\t%s\tFAILED:%s\n' "$id" "${start%% *}" "$(log_ms "$ts")" "${start##* }" >>"$SNAPS"
				start=""
				;;
			esac
		done < <(grep -a -E 'starting snapshot up to|snapshot complete up to|failed to take snapshot|failed to persist snapshot' "$log" || true)
		if [[ -n "$start" ]]; then
			printf '%s\t%s\t-\tUNFINISHED:%s\n' "$id" "${start%% *}" "${start##* }" >>"$SNAPS"
		fi
	done
}

# --- cleanup ---------------------------------------------------------------
cleanup() {
	local rc=$? pid id
	trap - EXIT INT TERM
	set +e
	say "cleanup"
	for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
	if [[ -n "$BENCH_PID" ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
		kill "$BENCH_PID"
		wait "$BENCH_PID" 2>/dev/null
	fi
	if [[ -f "$CLUSTER_JSON" ]]; then
		remember_pids
		for id in $(node_ids); do cp "$(node_field "$id" log)" "$RESULTS/$id.log" 2>/dev/null; done
		"$WEIR" cluster stop >/dev/null 2>&1
	fi
	if [[ -f "$ALL_PIDS" ]]; then
		sort -u "$ALL_PIDS" | while read -r pid id; do
			if alive "$pid" "$id"; then
				echo "killing leftover $id (pid $pid)"
				kill -9 "$pid"
			fi
		done
	fi
	if [[ "$KEEP_DATA" == 1 ]]; then
		echo "data kept in $SCRATCH (KEEP_DATA=1); remove it with: rm -rf $SCRATCH"
	else
		rm -rf "$SCRATCH"
		echo "deleted $SCRATCH"
	fi
	echo "results (report, samples, probes, node logs) in $RESULTS"
	df -h / | tail -1
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 0. preconditions ----------------------------------------------------
say "capacity run $RUN_ID: $RECORDS records of $RECORD_SIZE B, $PRODUCERS producers, batch $BATCH, $PARTITIONS partitions"
echo "raft trailing logs: ${WEIR_RAFT_TRAILING_LOGS:-default}"
echo "binary: $WEIR ($("$WEIR" --version 2>&1)); checkout HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') (the binary may be older)"
echo "machine: $(nproc) CPUs, $(free -g | awk '/^Mem/ { print $2 }') GiB RAM, $(uname -r)"
echo "data: $SCRATCH   results: $RESULTS"
df -h / | sed 's/^/  /'
# Per node: the state store (~1.15x the payload: one bbolt value per
# partition per request), up to three snapshot copies of it while a new
# one is written before the oldest is reaped, and the Raft log's trailing
# entries: about 4x the payload per node.
need_gb=$(awk -v n="$RECORDS" -v s="$RECORD_SIZE" 'BEGIN { printf "%d", n * s * 3 * 4 / 1e9 + 0.999 }')
have_gb="$(free_gb)"
echo "free: ${have_gb} GB; estimated need: ${need_gb} GB + ${MIN_FREE_GB} GB margin"
if ((have_gb < need_gb + MIN_FREE_GB)); then
	echo "capacity: not enough free disk for $RECORDS records; pass fewer (e.g. $((RECORDS * (have_gb - MIN_FREE_GB) / (need_gb + 1))))" >&2
	exit 1
fi
build_helper

# --- 1. cluster, topic, produce with sampling ----------------------------
say "1. local cluster and produce"
phase start
GODEBUG=gctrace=1 "$WEIR" cluster start --data-dir "$SCRATCH/nodes"
remember_pids
ADDRS="$(all_addrs)"
"$WEIR" --addr "$ADDRS" topic create "$TOPIC" -p "$PARTITIONS"

sampler &
BG_PIDS+=($!)
prober &
BG_PIDS+=($!)

phase produce
# --duration 24h: the CLI's --duration defaults to 30s even with --records,
# and the run ends at whichever comes first.
BENCH_CMD=("$WEIR" bench produce --addr "$ADDRS" --topic "$TOPIC" --records "$RECORDS" --record-size "$RECORD_SIZE"
	--producers "$PRODUCERS" --batch "$BATCH" --partitions "$PARTITIONS" --duration 24h --output json)
echo "\$ ${BENCH_CMD[*]}"
T_PROD_START="$(now_ms)"
"${BENCH_CMD[@]}" >"$RESULTS/bench.json" 2>"$RESULTS/bench.err" &
BENCH_PID=$!
while kill -0 "$BENCH_PID" 2>/dev/null; do
	if [[ -e "$STOP_FLAG" ]]; then
		echo "capacity: $(cat "$STOP_FLAG"); stopping the produce (SIGINT: it prints what it measured)"
		kill -INT "$BENCH_PID"
		break
	fi
	sleep 1
done
BENCH_RC=0
wait "$BENCH_PID" || BENCH_RC=$?
BENCH_PID=""
T_PROD_END="$(now_ms)"
phase idle
echo "produce exited $BENCH_RC after $(((T_PROD_END - T_PROD_START) / 1000)) s"
[[ -s "$RESULTS/bench.err" ]] && sed 's/^/  bench stderr: /' "$RESULTS/bench.err" | tail -20
sleep "$SAMPLE_EVERY" # one sample after the produce

# --- 2. results of the produce -------------------------------------------
say "2. produce result"
if jq -e . "$RESULTS/bench.json" >/dev/null 2>&1; then
	jq -r '"records \(.records) in \(.requests) requests, \(.elapsed_ns / 1e9 | floor) s: \(.records_per_sec | floor) records/s (\(.mb_per_sec * 100 | floor / 100) MB/s); latency p50 \(.latency_p50_ns / 1e6 | floor) ms, p99 \(.latency_p99_ns / 1e6 | floor) ms, p99.9 \(.latency_p999_ns / 1e6 | floor) ms, max \(.latency_max_ns / 1e6 | floor) ms; \(.errors) errors"' "$RESULTS/bench.json"
else
	echo "no JSON result from the bench (exit $BENCH_RC)"
fi

say "samples (t: s since the produce began; rss = anon + file (+shmem), MiB; file split into the raft.db and state.db mappings; heap: Go heap live/goal MB after the last GC; disk: MiB allocated: raft.db, the state store (state.db and its segment files), what snapshots hold beyond the segments they link)"
print_samples() {
	sort -n -k1,1 -k3,3 "$SAMPLES" | awk -F'\t' -v t0="$T_PROD_START" -v from="${1:-0}" '
		BEGIN { printf "%7s %-9s %-6s %6s %6s %6s %13s %9s | %8s %8s %8s\n", "t", "phase", "node", "rss", "anon", "file", "file:raft/st", "heap", "raft.db", "store", "snaps+" }
		$1 >= from {
			printf "%7.1f %-9s %-6s %6.0f %6.0f %6.0f %13s %9s | %8.0f %8.0f %8.0f\n", ($1 - t0) / 1000, $2, $3, $5 / 1024, $6 / 1024, $7 / 1024,
				sprintf("%.0f/%.0f", $13 / 1024, $14 / 1024), $8 "/" $9, $10 / 1024, $11 / 1024, $12 / 1024
		}'
}
print_samples

say "apply rate per sample interval (from the 1 s health probes; records/s = applied entries x $BATCH)"
awk -F'\t' -v t0="$T_PROD_START" -v t1="$T_PROD_END" -v every="$SAMPLE_EVERY" -v batch="$BATCH" '
	$1 >= t0 && $1 <= t1 + 1000 * every && $3 >= 0 {
		b = int(($1 - t0) / (1000 * every))
		if (!((b, $2) in first)) first[b, $2] = $3
		last[b, $2] = $3
		nodes[$2] = 1
		if (b > maxb) maxb = b
	}
	END {
		printf "%7s", "t"
		for (n in nodes) printf " %10s", n
		print ""
		for (b = 0; b <= maxb; b++) {
			printf "%7d", b * every
			for (n in nodes) {
				if ((b, n) in first) printf " %10.0f", (last[b, n] - first[b, n]) * batch / every
				else printf " %10s", "-"
			}
			print ""
		}
	}' "$PROBES"

collect_snapshots
say "Raft snapshots (t: s since the produce began)"
awk -F'\t' -v t0="$T_PROD_START" '
	BEGIN { printf "%-6s %9s %9s %9s %10s\n", "node", "start", "end", "duration", "index" }
	{ printf "%-6s %9.1f %9s %9s %10s\n", $1, ($2 - t0) / 1000, ($3 == "-" ? "-" : sprintf("%.1f", ($3 - t0) / 1000)), ($3 == "-" ? "-" : sprintf("%.1fs", ($3 - $2) / 1000)), $4 }' "$SNAPS"
for id in $(node_ids); do
	printf '%s snapshots kept: ' "$id"
	snapshot_metas "$(node_field "$id" data_dir)" | jq -j '"index \(.Index) (\(.Size / 1048576 | floor) MiB); "'
	echo
done

say "write stalls: >= 2 s in which a node's applied index did not move, or its /v1/health did not answer within 1 s, while the produce ran"
awk -F'\t' -v t0="$T_PROD_START" -v t1="$T_PROD_END" -v snaps="$SNAPS" '
	BEGIN {
		while ((getline line < snaps) > 0) {
			split(line, f, "\t"); ns++; sn[ns] = f[1]; ss[ns] = f[2]; se[ns] = (f[3] == "-" ? 9e15 : f[3])
		}
	}
	function report(node, a, b, why,   i, o) {
		if (b - a < 2000) return
		o = ""
		for (i = 1; i <= ns; i++) if (ss[i] < b && se[i] > a) o = o sprintf(" %s snapshot %.1f-%.1f;", sn[i], (ss[i] - t0) / 1000, (se[i] - t0) / 1000)
		printf "%-6s %7.1f - %7.1f s (%4.1f s) %s; overlapping:%s\n", node, (a - t0) / 1000, (b - t0) / 1000, (b - a) / 1000, why, (o == "" ? " none" : o)
		found = 1
	}
	$1 >= t0 && $1 <= t1 {
		n = $2
		if ($3 < 0) { if (!(n in down)) down[n] = $1; next }
		if (n in down) { report(n, down[n], $1, "no health answer"); delete down[n] }
		if (n in val && $3 == val[n]) { if (!(n in since)) since[n] = at[n] }
		else if (n in since) { report(n, since[n], $1, "applied nothing"); delete since[n] }
		val[n] = $3; at[n] = $1
	}
	END {
		for (n in since) report(n, since[n], t1, "applied nothing (until the produce ended)")
		for (n in down) report(n, down[n], t1, "no health answer (until the produce ended)")
		if (!found) print "none"
	}' "$PROBES"

# --- 3. restarts -------------------------------------------------------------
say "3. restarts (times from the exec of \"weir cluster start\"; the cluster is idle)"
P0_HWM="$(hwm "$(node_field node1 api_addr)" 0)"
echo "partition 0 high watermark: $P0_HWM; reading offset $((P0_HWM - 1))"
RESTARTS="$RESULTS/restarts.tsv"
printf 'case\tnode\tstop_ms\tapplied_before\tsnapshot_index\traft_first\traft_last\treread_on_start\tapplied_on_start\traft_ms\tready_ms\tlocal_read_ms\tstrong_read_ms\trss_mib\tanon_mib\tfile_mib\tcatchup_s\tcatchup_records\trss_after_mib\tanon_after_mib\tfile_after_mib\n' >"$RESTARTS"

# read_last ADDR EXTRA_QUERY [-L]: the last record of partition 0, once.
read_last() {
	local hdr
	hdr="$(curl -s ${3:-} --max-time 2 -o /dev/null -D - -H 'Accept: application/vnd.weir.records' \
		"http://$1/v1/topics/$TOPIC/partitions/0/records?offset=$((P0_HWM - 1))&max_records=1$2")" || return 1
	grep -qi '^HTTP/[0-9.]* 200' <<<"$(grep -i '^HTTP/' <<<"$hdr" | tail -1)" &&
		grep -qi '^weir-record-count: 1' <<<"$hdr"
}

# catch_up ADDR: read partition 0 from offset 0 to P0_HWM through one node.
catch_up() {
	local off=0 next hdr n=0
	while ((off < P0_HWM)); do
		hdr="$(curl -sf --max-time 30 -o /dev/null -D - -H 'Accept: application/vnd.weir.records' \
			"http://$1/v1/topics/$TOPIC/partitions/0/records?offset=$off&max_records=100000&max_bytes=8388608")"
		next="$(awk -F': ' 'tolower($1) == "weir-next-offset" { print $2 + 0 }' <<<"$hdr")"
		((next > off)) || { echo "catch-up stuck at offset $off" >&2; return 1; }
		n=$((n + next - off))
		off=$next
	done
	echo "$n"
}

# read_last_everywhere WHEN: the last record of partition 0 through every node, once each.
read_last_everywhere() {
	local id
	for id in $(node_ids); do
		if read_last "$(node_field "$id" api_addr)" "" -L; then
			echo "$id: last record of partition 0 (offset $((P0_HWM - 1))) read after the $1"
		else
			echo "$id: last record of partition 0 NOT readable after the $1"
		fi
	done
}

wait_leader() { # [EXCLUDE]: wait until a leader other than EXCLUDE is known; prints its id
	local i l
	for i in $(seq 1 300); do
		if l="$(leader_id "${1:-}")"; then echo "$l"; return 0; fi
		sleep 0.1
	done
	return 1
}

restart_case() { # ROLE(follower|leader) MODE(kill9|graceful)
	local role="$1" mode="$2" id leader pid api dir t0 t1 stop_ms before idx first last snap
	phase "restart-$role-$mode"
	leader="$(wait_leader)"
	if [[ "$role" == leader ]]; then
		id="$leader"
	else
		id="$(node_ids | grep -vx "$leader" | head -1)"
	fi
	pid="$(node_field "$id" pid)"
	api="$(node_field "$id" api_addr)"
	dir="$(node_field "$id" data_dir)"
	before="$(health "$api" 2 | jq -r .applied_index)"
	printf '\n### %s %s: %s (pid %s), applied index %s\n' "$role" "$mode" "$id" "$pid" "$before"
	t0="$(now_ms)"
	if [[ "$mode" == kill9 ]]; then kill -9 "$pid"; else kill -TERM "$pid"; fi
	while alive "$pid" "$id"; do
		if (($(now_ms) - t0 > 60000)); then
			echo "still running 60 s after SIGTERM; kill -9"
			kill -9 "$pid"
		fi
		sleep 0.02
	done
	t1="$(now_ms)"
	stop_ms=$((t1 - t0))
	echo "stopped in $stop_ms ms"
	read -r idx first last < <("$HELPER" "$dir/state.db" "$dir/raft.db")
	read -r snap _ < <(newest_snapshot "$dir")
	echo "on disk: state store applied $idx; raft log $first..$last; newest snapshot $snap"
	echo "  on start Raft reads entries $((snap + 1))..$last again (NewRaft scans them for configuration changes; lastApplied starts at the snapshot's index, so $((snap + 1))..$idx go to the state machine again, which skips them: index <= applied)"
	local others
	others="$(wait_leader "$id")" || { echo "no leader among the other nodes"; return 1; }
	echo "leader while $id is down: $others"

	local start ready="" lread="" sread="" now
	start="$(now_ms)"
	GODEBUG=gctrace=1 "$WEIR" cluster start >"$RESULTS/restart-$role-$mode.out" 2>&1 &
	local cs=$!
	while :; do
		now="$(now_ms)"
		if [[ -z "$ready" ]] && health "$api" 1 2>/dev/null | jq -e .serving >/dev/null 2>&1; then ready=$((now - start)); fi
		if [[ -z "$lread" ]] && read_last "$api" ""; then lread=$(($(now_ms) - start)); fi
		if [[ -z "$sread" ]] && read_last "$api" "&consistency=strong" -L; then sread=$(($(now_ms) - start)); fi
		[[ -n "$ready" && -n "$lread" && -n "$sread" ]] && break
		((now - start < 60000)) || { echo "not serving within 60 s"; break; }
		sleep 0.02
	done
	local csrc=0
	wait "$cs" || csrc=$?
	[[ $csrc == 0 ]] || { echo "weir cluster start exited $csrc:"; cat "$RESULTS/restart-$role-$mode.out"; }
	remember_pids
	pid="$(node_field "$id" pid)"
	local h after rss anon file
	h="$(health "$api" 2)"
	after="$(jq -r .applied_index <<<"$h")"
	rss="$(mib "$(proc_kib "$pid" VmRSS)")"
	anon="$(mib "$(proc_kib "$pid" RssAnon)")"
	file="$(mib "$(proc_kib "$pid" RssFile)")"
	local lg cfg_ms started_ms
	lg="$(node_field "$id" log)"
	cfg_ms="$(log_ms "$(grep -a 'initial configuration' "$lg" | tail -1 | cut -d' ' -f1)")"
	started_ms="$(log_ms "$(grep -a 'node started' "$lg" | tail -1 | cut -d' ' -f1)")"
	echo "raft.NewRaft returned (\"initial configuration\") after $((cfg_ms - start)) ms; \"node started\" after $((started_ms - start)) ms"
	echo "serving after ${ready:-?} ms; last record of partition 0 read from $id after ${lread:-?} ms, strong read through it after ${sread:-?} ms"
	echo "applied index now $after (was $idx on disk): $((after - idx)) entries applied on start (new entries of the running cluster, not replays)"
	echo "RSS right after: $rss MiB (anon $anon, file $file; of it raft.db/state.db KiB: $(mapped_kib "$pid" | tr ' ' /)); Go heap live/goal MB: $(go_heap "$(node_field "$id" log)" | tr ' ' /)"
	local c0 c1 n
	c0="$(now_ms)"
	n="$(catch_up "$api")"
	c1="$(now_ms)"
	local rss2 anon2 file2
	rss2="$(mib "$(proc_kib "$pid" VmRSS)")"
	anon2="$(mib "$(proc_kib "$pid" RssAnon)")"
	file2="$(mib "$(proc_kib "$pid" RssFile)")"
	echo "catch-up of partition 0 ($n records) through $id in $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", (b - a) / 1000 }') s; RSS after: $rss2 MiB (anon $anon2, file $file2; of it raft.db/state.db KiB: $(mapped_kib "$pid" | tr ' ' /))"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$role-$mode" "$id" "$stop_ms" "$idx" "$snap" "$first" "$last" \
		"$((last - snap))" "$((after - idx))" "$((cfg_ms - start))" "${ready:-}" "${lread:-}" "${sread:-}" "$rss" "$anon" "$file" \
		"$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')" "$n" "$rss2" "$anon2" "$file2" >>"$RESTARTS"
	sample_once
}

T_RESTART_START="$(now_ms)"
restart_case follower kill9
restart_case follower graceful
restart_case leader kill9
restart_case leader graceful
phase idle
sample_once

say "restart summary (ms from exec; memory MiB)"
column -t -s $'\t' "$RESTARTS"

say "samples during the restarts"
print_samples "$T_RESTART_START"

say "snapshots during the restarts, and the restarted nodes' start-up lines"
collect_snapshots
awk -F'\t' -v t0="$T_RESTART_START" '$2 >= t0' "$SNAPS"
for id in $(node_ids); do
	grep -a -E 'state store is behind|restoring|starting restore|initial configuration|node started' "$(node_field "$id" log)" | tail -4 | sed "s/^/  $id: /"
done

say "4. the upgrade path at $RECORDS records: cluster shutdown (each node drains and writes its pre-upgrade backup) and cluster resume on the same binary"
phase lifecycle
T_LIFECYCLE_START="$(now_ms)"
t0="$(now_ms)"
if "$WEIR" cluster shutdown >"$RESULTS/shutdown.txt" 2>&1; then rc=0; else rc=$?; fi
t1="$(now_ms)"
echo "cluster shutdown exited $rc after $((t1 - t0)) ms:"
sed 's/^/  /' "$RESULTS/shutdown.txt"
for id in $(node_ids); do
	f="$(node_field "$id" data_dir)/backups/pre-upgrade"
	if [[ -d "$f" ]]; then
		echo "$id: pre-upgrade backup $(du -m --apparent-size -s "$f" | cut -f1) MiB in $(find "$f" -type f | wc -l) files, $(find "$f" -type f -links +1 | wc -l) of them links (no copy), written $(date -u -r "$f" +%H:%M:%S.%3N)"
	else
		echo "$id: no pre-upgrade backup"
	fi
done
t0="$(now_ms)"
if "$WEIR" cluster resume >"$RESULTS/resume.txt" 2>&1; then rc=0; else rc=$?; fi
t1="$(now_ms)"
echo "cluster resume exited $rc after $((t1 - t0)) ms:"
sed 's/^/  /' "$RESULTS/resume.txt"
remember_pids
read_last_everywhere "resume"
sample_once
print_samples "$T_LIFECYCLE_START"

say "5. restore at $RECORDS records from node1's pre-upgrade backup: weir cluster stop, weir cluster restore --from it (node1 seeded, the others join and receive the state), weir cluster resume"
phase restore
T_RESTORE_START="$(now_ms)"
BACKUP="$(node_field node1 data_dir)/backups/pre-upgrade"
"$WEIR" cluster stop >/dev/null 2>&1 || true
t0="$(now_ms)"
if "$WEIR" cluster restore --from "$BACKUP" >"$RESULTS/restore.txt" 2>&1; then rc=0; else rc=$?; fi
t1="$(now_ms)"
echo "cluster restore exited $rc after $((t1 - t0)) ms:"
sed 's/^/  /' "$RESULTS/restore.txt"
remember_pids
t0="$(now_ms)"
if "$WEIR" cluster resume >"$RESULTS/resume-after-restore.txt" 2>&1; then rc=0; else rc=$?; fi
t1="$(now_ms)"
echo "cluster resume exited $rc after $((t1 - t0)) ms"
read_last_everywhere "restore"
sample_once
print_samples "$T_RESTORE_START"

say "6. done"
