#!/usr/bin/env bash
# HTTP API proxy on one long task: every call carries the same correlation
# id, so the chain grows by one event per call. Per-call cost must stay flat
# as it grows (the proxy looks up the correlation's open plan on each call).
# Needs `wrk` (apt-get install wrk).
#
# Usage: bench/http_proxy_chain.sh [RUNS]   (default 4 back-to-back runs)
# Knobs: DURATION (seconds per run, default 5), SKIP_BUILD=1,
#        BIN_FROM=DIR (DIR/intentproof instead of target/release; the
#        upstream is target/release/examples/http_upstream).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${1:-4}
DURATION=${DURATION:-5}
start_pay_proxy
machine_note
for run in $(seq "$RUNS"); do
    wrk -t1 -c1 -d"${DURATION}s" --latency -H "X-IntentProof-Token: $TOKEN" \
        -H "X-IntentProof-Correlation-Id: one-long-task" "http://$GW/proxy/pay/v1/refunds/re_1" |
        awk -v run="$run" '/Requests\/sec/{r=$2} $1=="50%"{p=$2} $1=="99%"{q=$2} END{print "run " run ": req/s " r " p50 " p " p99 " q}'
done
sleep 1
echo "daemon RSS after the runs: $(rss_mib "$DAEMON_PID") MiB"
# The whole chain in one answer (streamed): its time, and what it costs the
# daemon's memory.
SECONDS_TAKEN=$(curl -s -o "$WORK/chain.json" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" "http://$GW/v1/chains/one-long-task")
EVENTS=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["events"]))' "$WORK/chain.json")
echo "GET /v1/chains/one-long-task: $EVENTS events, $(stat -c %s "$WORK/chain.json") bytes in ${SECONDS_TAKEN}s"
stop_daemon
