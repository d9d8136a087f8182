#!/usr/bin/env bash
# Does the daemon's memory come back after many correlations? Starts an
# empty daemon and reads its RSS, ingests CORRELATIONS envelope events, each
# in its own correlation (so the daemon seals a new chain per event: chain
# heads, chain tips and summaries all see one new chain per event), through
# `POST /v1/events:batch` (BATCH lines per request, application/x-ndjson),
# waits IDLE_SECS with no traffic, reads the RSS again, stops the daemon and
# runs `intentproof store verify` on the store. Target: the idle RSS after
# the load is within 1.5x of the empty daemon's.
#
#   bench/memory_correlations.sh                         # release build, 100,000 correlations, 180 s idle
#   BIN_FROM=target/debug CORRELATIONS=10000 IDLE_SECS=20 bench/memory_correlations.sh   # quick check, debug build
#
# Knobs: CORRELATIONS (100000), IDLE_SECS (180), BATCH (1000),
# SAMPLE_SECS (30: RSS printed this often while idle), BIN_FROM=DIR (use
# DIR/intentproof, no build), SKIP_BUILD=1 (use target/release's),
# BENCH_DIR / KEEP (see bench/README.md).
source "$(dirname "$0")/lib.sh"

CORRELATIONS=${CORRELATIONS:-100000}
IDLE_SECS=${IDLE_SECS:-180}
BATCH=${BATCH:-1000}
SAMPLE_SECS=${SAMPLE_SECS:-30}

command -v curl >/dev/null || { echo "curl is not installed" >&2; exit 1; }
mkdir -p "$BIN"
if [[ -n "${BIN_FROM:-}" ]]; then
    cp "$BIN_FROM/intentproof" "$BIN/"
else
    [[ -n "${SKIP_BUILD:-}" ]] || (cd "$ROOT" && cargo build --release -p intentproof-cli --bin intentproof)
    cp "$ROOT/target/release/intentproof" "$BIN/"
fi

machine_note
dir="$WORK/memory"
start_daemon "$dir"
listen=$(sed -e 's/.*"listen":"\([^"]*\)".*/\1/' "$dir/daemon.json")
empty_kib=$(awk '/VmRSS/{print $2}' "/proc/$DAEMON_PID/status")

# The batches, written before the clock starts: envelope events (the daemon
# seals them with its own key), one correlation each.
batches="$WORK/batches"
mkdir -p "$batches"
awk -v n="$CORRELATIONS" -v batch="$BATCH" -v out="$batches" 'BEGIN {
    for (i = 0; i < n; i++) {
        file = sprintf("%s/%08d.ndjson", out, int(i / batch))
        printf "{\"intentproof\":\"1\",\"event\":{\"id\":\"mem-%d\",\"correlationId\":\"mem-c-%d\",\"intent\":\"Memory bench %d\",\"action\":\"bench.memory\",\"inputs\":{\"n\":%d},\"status\":\"ok\",\"output\":{\"ok\":true},\"startedAt\":\"2026-01-01T00:00:00.000Z\",\"completedAt\":\"2026-01-01T00:00:00.001Z\",\"durationMs\":1}}\n", i, i, i, i > file
        if (i % batch == batch - 1) close(file)
    }
}'

echo "== ingest: $CORRELATIONS events, one correlation each, $BATCH per request"
start=$SECONDS
peak_kib=0
stored=0
for file in "$batches"/*.ndjson; do
    answer=$(curl -sS --fail-with-body -H 'content-type: application/x-ndjson' \
        --data-binary @"$file" "http://$listen/v1/events:batch") || {
        echo "batch $file refused: $answer" >&2
        exit 1
    }
    n=$(sed -n 's/.*"stored":\([0-9]*\).*/\1/p' <<<"$answer")
    lines=$(wc -l <"$file")
    if [[ "$n" != "$lines" ]]; then
        echo "batch $file: stored ${n:-?} of $lines: ${answer:0:400}" >&2
        exit 1
    fi
    stored=$((stored + n))
    now_kib=$(awk '/VmRSS/{print $2}' "/proc/$DAEMON_PID/status")
    ((now_kib > peak_kib)) && peak_kib=$now_kib
done
loaded_kib=$(awk '/VmRSS/{print $2}' "/proc/$DAEMON_PID/status")
echo "stored $stored events in $((SECONDS - start)) s; RSS right after: $((loaded_kib / 1024)) MiB (peak between batches $((peak_kib / 1024)) MiB)"

echo "== idle: $IDLE_SECS s"
waited=0
while ((waited < IDLE_SECS)); do
    step=$((IDLE_SECS - waited < SAMPLE_SECS ? IDLE_SECS - waited : SAMPLE_SECS))
    sleep "$step"
    waited=$((waited + step))
    echo "  after ${waited} s idle: RSS $(rss_mib "$DAEMON_PID") MiB"
done
idle_kib=$(awk '/VmRSS/{print $2}' "/proc/$DAEMON_PID/status")
stop_daemon

echo "== store verify"
"$BIN/intentproof" store verify --data-dir "$dir" | tail -n 3

ratio=$(awk -v a="$idle_kib" -v b="$empty_kib" 'BEGIN { printf "%.2f", a / b }')
verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.5 ? "met" : "NOT met") }')
echo "RESULT memory: empty $((empty_kib / 1024)) MiB, after $stored correlations $((loaded_kib / 1024)) MiB (peak $((peak_kib / 1024)) MiB), after ${IDLE_SECS} s idle $((idle_kib / 1024)) MiB = ${ratio}x the empty daemon's; target <= 1.5x: $verdict"
