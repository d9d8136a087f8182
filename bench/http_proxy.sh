#!/usr/bin/env bash
# HTTP API proxy: added latency and throughput of /proxy/<route>/... vs calling
# the same upstream directly, interleaved (direct, proxied, direct, ...) so
# that drift on the machine hits both alike. Needs `wrk` (apt-get install wrk).
#
# Usage: bench/http_proxy.sh [ROUNDS]     (default 3 rounds)
# Knobs: DURATION (seconds per run, default 10), CONNS (throughput runs,
#        default 32), SKIP_BUILD=1, BIN_FROM=DIR (DIR/intentproof instead of
#        target/release's), KEEP=1 / BENCH_DIR=/path (keep scratch).
#
# Runs per round and mode: GET 1 connection (latency), GET CONNS connections
# (throughput), POST of a 150-byte JSON body with CONNS connections.
# Every proxied call is recorded (sealed, journaled with fsync); the script
# checks at the end that the journal holds one record per proxied request.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
start_pay_proxy
machine_note
echo "upstream http://$UP (1 worker thread); daemon http://$GW (pid $DAEMON_PID); $ROUNDS rounds of ${DURATION}s runs"

DIRECT_BASE="http://$UP/api"
PROXY_BASE="http://$GW/proxy/pay"
PROXIED_REQUESTS=0

# run MODE KIND: one wrk run; prints a RESULT line.
run() {
    local mode=$1 kind=$2 base conns=$CONNS args=()
    if [[ $mode == direct ]]; then base=$DIRECT_BASE; else base=$PROXY_BASE; args=(-H "X-IntentProof-Token: $TOKEN"); fi
    case $kind in
        get1) conns=1; url="$base/v1/refunds/re_1" ;;
        getN) url="$base/v1/refunds/re_1" ;;
        postN) url="$base/v1/refunds"; args+=(-s "$ROOT/bench/http_proxy_post.lua") ;;
    esac
    local out
    out=$(wrk -t1 -c"$conns" -d"${DURATION}s" --latency "${args[@]}" "$url")
    local rps p50 p99 total errors
    rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    total=$(awk '/requests in/{print $1}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/{print}' <<<"$out" | tr '\n' ' ')
    [[ $mode == proxied ]] && PROXIED_REQUESTS=$((PROXIED_REQUESTS + total))
    echo "RESULT $kind $mode conns=$conns req/s=$rps p50=$p50 p99=$p99 requests=$total ${errors}daemon_rss=$(rss_mib "$DAEMON_PID")MiB"
}

# Warm up both paths (connections, the daemon's chain heads).
wrk -t1 -c4 -d2s "$DIRECT_BASE/v1/refunds/re_1" >/dev/null
wrk -t1 -c4 -d2s -H "X-IntentProof-Token: $TOKEN" "$PROXY_BASE/v1/refunds/re_1" >/tmp/http_proxy_warm.$$ && PROXIED_REQUESTS=$(awk '/requests in/{print $1}' /tmp/http_proxy_warm.$$) && rm -f /tmp/http_proxy_warm.$$

for round in $(seq "$ROUNDS"); do
    for kind in get1 getN postN; do
        run direct "$kind"
        run proxied "$kind"
    done
done

# Every proxied request is in the journal once the writer drained.
sleep 2
RECORDS=$(curl -s -H "Authorization: Bearer $TOKEN" "http://$GW/metrics" | awk '/^intentproof_journal_records /{print $2}')
# wrk does not count requests still in flight when a run ends; the proxy
# records those too (as ClientAborted when wrk hung up first).
echo "proxied requests completed: $PROXIED_REQUESTS; journal records: $RECORDS"
((RECORDS >= PROXIED_REQUESTS)) || echo "WARNING: fewer records than proxied requests"
stop_daemon
