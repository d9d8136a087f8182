#!/usr/bin/env bash
# Sustained ingest: pre-signed ~1 KiB events over HTTP, fsync'd group commit.
# A fresh release daemon (fresh data dir) for each connection count.
#
#   bench/ingest.sh                 # 200,000 events, 64 then 256 connections
#   EVENTS=50000 bench/ingest.sh 16 64
#   BATCH=1000 bench/ingest.sh 8    # POST /v1/events:batch, 1,000 events per request
#   VERIFY=1 ...                    # then `intentproof store verify` on the data dir
#   IDLE_SECS=30 ...                # RSS read again after this long with no traffic (default 20)
#
# Besides the load generator's figures it prints the daemon's peak RSS over
# the run (VmHWM), its RSS once idle, its CPU time per event, and the sizes
# of the sled index and of the journal.
source "$(dirname "$0")/lib.sh"

EVENTS=${EVENTS:-200000}
BATCH=${BATCH:-1}
CONCURRENCY=("$@")
[[ ${#CONCURRENCY[@]} -gt 0 ]] || CONCURRENCY=(64 256)

build
machine_note
for c in "${CONCURRENCY[@]}"; do
    dir="$WORK/ingest-c$c"
    echo "== ingest: $EVENTS events, $c connections, $BATCH per request"
    start_daemon "$dir"
    cpu_before=$(cpu_ticks "$DAEMON_PID")
    "$BIN/loadgen" ingest --data-dir "$dir" --events "$EVENTS" --concurrency "$c" --batch "$BATCH" --prefix "ingest-c$c"
    cpu_after=$(cpu_ticks "$DAEMON_PID")
    echo "daemon peak RSS over the run (VmHWM): $(awk '/VmHWM/{printf "%.1f", $2/1024}' "/proc/$DAEMON_PID/status") MiB"
    awk -v t=$((cpu_after - cpu_before)) -v hz="$(getconf CLK_TCK)" -v n="$EVENTS" \
        'BEGIN { printf "daemon CPU: %.1f s, %.1f us per event\n", t / hz, t / hz / n * 1e6 }'
    sleep "${IDLE_SECS:-20}"
    echo "daemon RSS after ${IDLE_SECS:-20} s idle: $(rss_mib "$DAEMON_PID") MiB"
    stop_daemon
    index_bytes=$(du -sb --exclude=leaves "$dir/index" | cut -f1)
    journal_bytes=$(du -sb "$dir/journal" | cut -f1)
    leaves_bytes=$(stat -c %s "$dir/index/leaves")
    awk -v i="$index_bytes" -v j="$journal_bytes" -v l="$leaves_bytes" -v n="$EVENTS" 'BEGIN {
        printf "on disk: sled index %.1f MiB (%.0f B/event), journal %.1f MiB; index/journal %.2f; Merkle leaves %.1f MiB\n",
            i / 1048576, i / n, j / 1048576, i / j, l / 1048576 }'

    if [[ -n "${VERIFY:-}" ]]; then
        "$BIN/intentproof" store verify --data-dir "$dir"
    fi
    rm -rf "$dir"
done
