#!/usr/bin/env bash
# Sustained ingest: pre-signed ~1 KiB events over HTTP, fsync'd group commit.
# A fresh release daemon (fresh data dir) for each connection count.
#
#   bench/ingest.sh                 # 200,000 events, 64 then 256 connections
#   EVENTS=50000 bench/ingest.sh 16 64
#   BATCH=1000 bench/ingest.sh 8    # POST /v1/events:batch, 1,000 events per request
#   VERIFY=1 ...                    # then `intentproof store verify` on the data dir
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
    "$BIN/loadgen" ingest --data-dir "$dir" --events "$EVENTS" --concurrency "$c" --batch "$BATCH" --prefix "ingest-c$c"
    stop_daemon
    if [[ -n "${VERIFY:-}" ]]; then
        "$BIN/intentproof" store verify --data-dir "$dir"
    fi
    rm -rf "$dir"
done
