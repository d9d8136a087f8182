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
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
if [[ -z "${SKIP_BUILD:-}" ]]; then
    (cd "$ROOT" && cargo build --release -p intentproof-cli -p intentproof-gateway --bin intentproof --example http_upstream)
fi
mkdir -p "$BIN"
cp "${BIN_FROM:-$ROOT/target/release}/intentproof" "$ROOT/target/release/examples/http_upstream" "$BIN/"

"$BIN/http_upstream" >"$WORK/upstream.out" 2>&1 &
UPSTREAM_PID=$!
trap 'kill $UPSTREAM_PID 2>/dev/null || true; cleanup' EXIT
until grep -q '^listening ' "$WORK/upstream.out" 2>/dev/null; do sleep 0.05; done
UP=$(sed -n 's/^listening //p' "$WORK/upstream.out")
DATA="$WORK/data"
mkdir -p "$DATA"
cat >"$WORK/gateway.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$DATA"
[[http.routes]]
name = "pay"
upstream = "http://$UP/api"
action = ["/v1/refunds/{id}", "/v1/refunds"]
TOML
"$BIN/intentproof" serve --config "$WORK/gateway.toml" 2>>"$WORK/daemon.log" &
DAEMON_PID=$!
until [[ -f "$DATA/daemon.json" ]] && grep -q "\"pid\":$DAEMON_PID[,}]" "$DATA/daemon.json"; do
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon.log" >&2; exit 1; }
    sleep 0.05
done
GW=$(sed -e 's/.*"listen":"\([^"]*\)".*/\1/' "$DATA/daemon.json")
TOKEN=$(cat "$DATA/token")
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
