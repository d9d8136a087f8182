#!/usr/bin/env bash
# Query latency on a large store: fill it with 10-event chains (default
# 1,000,000 events = 100,000 correlations), restart the daemon, then time
# GET /v1/chains/{id} and GET /v1/events?correlation= (2,000 each).
#
#   bench/query.sh
#   FILL=200000 QUERIES=500 bench/query.sh
#   BENCH_DIR=/tmp/q SKIP_FILL=1 bench/query.sh   # re-query a kept store
#   FILL_BATCH=1000 bench/query.sh  # fill with POST /v1/events:batch, 8 connections (faster)
source "$(dirname "$0")/lib.sh"

FILL=${FILL:-1000000}
QUERIES=${QUERIES:-2000}
CORRELATIONS=$((FILL / 10))

build
machine_note
dir="$WORK/query"
if [[ -z "${SKIP_FILL:-}" ]]; then
    echo "== fill: $FILL events"
    start_daemon "$dir"
    start=$SECONDS
    if [[ -n "${FILL_BATCH:-}" ]]; then
        "$BIN/loadgen" ingest --data-dir "$dir" --events "$FILL" --chunk 200000 --concurrency 8 --batch "$FILL_BATCH" --prefix fill
    else
        "$BIN/loadgen" ingest --data-dir "$dir" --events "$FILL" --chunk 200000 --concurrency 64 --prefix fill
    fi
    echo "fill took $((SECONDS - start)) s"
    stop_daemon
fi
echo "== restart on the filled store ($(du -sh "$dir" | cut -f1); journal $(du -sh "$dir/journal" | cut -f1), index $(du -sh "$dir/index" | cut -f1))"
start=$SECONDS
start_daemon "$dir"
echo "daemon RSS after start: $(rss_mib "$DAEMON_PID") MiB"
echo "start-up took ~$((SECONDS - start)) s (includes 1 s settle)"
echo "== queries: $QUERIES of each kind, one client"
"$BIN/loadgen" query --data-dir "$dir" --prefix fill --correlations "$CORRELATIONS" --queries "$QUERIES"
echo "== queries again, 8 concurrent clients"
"$BIN/loadgen" query --data-dir "$dir" --prefix fill --correlations "$CORRELATIONS" --queries "$QUERIES" --concurrency 8 --seed 2
stop_daemon
