#!/usr/bin/env bash
# GET /v1/findings on a large store. Fills a daemon with FILL envelope
# events through `POST /v1/events:batch` (BATCH lines per request), in
# correlations of 10 events: every other one declares a plan (two steps),
# makes 8 calls (one failing, some off-plan) and closes it; the others make
# 10 gateway calls with no plan (one answered by a task handle that never
# finishes). All events are in the past, so every plan is closed and every
# plan-less correlation idle: the most findings the store can hold.
# Then it times REQUESTS requests of each kind, one client, with curl's
# time_total: the first page (default limit 500), the same with `since=`
# the current generation (nothing changed), a page in the middle (cursor),
# and the first page of /v1/plans; prints p50/p99 and the daemon's RSS.
# Then it restarts the daemon on the filled store: findings are derived
# state, rebuilt from the journal at start (the log's "findings rebuilt"
# line says how long), and times the first page again.
# Target: p99 <= 20 ms for the first page with 1,000,000 events.
#
#   bench/findings.sh                                       # release build, 1,000,000 events
#   BIN_FROM=target/debug FILL=20000 REQUESTS=50 bench/findings.sh   # quick check, debug build
#
# Knobs: FILL (1000000, a multiple of 10), REQUESTS (200), BATCH (1000),
# BIN_FROM=DIR (use DIR/intentproof, no build), SKIP_BUILD=1 (use
# target/release's), BENCH_DIR / KEEP (see bench/README.md).
source "$(dirname "$0")/lib.sh"

FILL=${FILL:-1000000}
REQUESTS=${REQUESTS:-200}
BATCH=${BATCH:-1000}

command -v curl >/dev/null || { echo "curl is not installed" >&2; exit 1; }
if ((FILL % 10 != 0)); then
    echo "FILL must be a multiple of 10 (correlations of 10 events)" >&2
    exit 1
fi
mkdir -p "$BIN"
if [[ -n "${BIN_FROM:-}" ]]; then
    cp "$BIN_FROM/intentproof" "$BIN/"
else
    [[ -n "${SKIP_BUILD:-}" ]] || (cd "$ROOT" && cargo build --release -p intentproof-cli --bin intentproof)
    cp "$ROOT/target/release/intentproof" "$BIN/"
fi

machine_note
dir="$WORK/findings"
start_daemon "$dir"
listen=$(sed -e 's/.*"listen":"\([^"]*\)".*/\1/' "$dir/daemon.json")
token=$(cat "$dir/token")
auth="authorization: Bearer $token"

# The batches, written before the clock starts. Plan declarations and
# closes are reserved actions: the daemon token authenticates them.
batches="$WORK/batches"
mkdir -p "$batches"
awk -v n="$FILL" -v batch="$BATCH" -v out="$batches" '
function at(i,    h, m, s, ms) {
    h = int(i / 3600000); m = int(i / 60000) % 60; s = int(i / 1000) % 60; ms = i % 1000
    return sprintf("2026-01-01T%02d:%02d:%02d.%03dZ", h, m, s, ms)
}
function event(i, c, action, inputs, status, output, attributes,    t) {
    t = at(i)
    return sprintf("{\"intentproof\":\"1\",\"event\":{\"id\":\"fb-%d\",\"correlationId\":\"fb-c-%d\",\"intent\":\"Refund order %d\",\"action\":\"%s\",\"inputs\":%s,\"status\":\"%s\",\"output\":%s,\"startedAt\":\"%s\",\"completedAt\":\"%s\",\"durationMs\":0%s}}", i, c, c, action, inputs, status, output, t, t, attributes)
}
BEGIN {
    for (i = 0; i < n; i++) {
        c = int(i / 10); k = i % 10
        if (c % 2 == 0) {
            if (k == 0) line = event(i, c, "intentproof.plan.declare", sprintf("{\"intent\":\"Refund order %d\",\"steps\":[{\"action\":\"mcp.pay.refund\"},{\"action\":\"mcp.pay.receipt\"}]}", c), "ok", sprintf("{\"plan_id\":\"plan-%d\"}", c), "")
            else if (k == 9) line = event(i, c, "intentproof.plan.close", sprintf("{\"plan_id\":\"plan-%d\"}", c), "ok", "{}", "")
            else if (k == 1) line = event(i, c, "mcp.pay.refund", "{\"order\":1}", "error", "{}", "")
            else if (k % 3 == 0) line = event(i, c, "mcp.pay.refund", "{\"order\":1}", "ok", "{\"ok\":true}", "")
            else line = event(i, c, "mcp.pay.lookup", "{\"order\":1}", "ok", "{\"ok\":true}", "")
        } else if (k == 5) {
            line = event(i, c, "mcp.pay.export", "{}", "ok", "{}", sprintf(",\"attributes\":{\"mcp.task.id\":\"t-%d\"}", c))
        } else {
            line = event(i, c, "mcp.pay.lookup", "{\"order\":1}", "ok", "{\"ok\":true}", "")
        }
        file = sprintf("%s/%08d.ndjson", out, int(i / batch))
        print line > file
        if (i % batch == batch - 1) close(file)
    }
}'

echo "== fill: $FILL events in $((FILL / 10)) correlations, $BATCH per request"
start=$SECONDS
stored=0
for file in "$batches"/*.ndjson; do
    answer=$(curl -sS --fail-with-body -H 'content-type: application/x-ndjson' -H "$auth" \
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
done
echo "stored $stored events in $((SECONDS - start)) s; daemon RSS $(rss_mib "$DAEMON_PID") MiB"

# time_one URL: seconds of one request (curl's time_total), the body to $WORK/body.
time_one() {
    curl -sS --fail-with-body -o "$WORK/body" -w '%{time_total}\n' -H "$auth" "$1"
}

# series NAME URL: REQUESTS timed requests; prints p50, p99, max (ms) and the answer's size.
series() {
    local name=$1 url=$2 times="$WORK/times"
    : >"$times"
    for ((r = 0; r < REQUESTS; r++)); do
        time_one "$url" >>"$times"
    done
    sort -g "$times" | awk -v name="$name" -v n="$REQUESTS" -v bytes="$(wc -c <"$WORK/body")" '
        { t[NR] = $1 * 1000 }
        END {
            p50 = t[int((n - 1) * 0.50) + 1]; p99 = t[int((n - 1) * 0.99) + 1]
            printf "%-34s p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms  (%d bytes)\n", name, p50, p99, t[n], bytes
        }'
}

queries() {
    local base="http://$listen"
    echo "first request (settles every idle deadline): $(awk '{printf "%.1f ms", $1 * 1000}' <<<"$(time_one "$base/v1/findings")")"
    local total generation cursor
    total=$(sed -n 's/.*"total":\([0-9]*\).*/\1/p' "$WORK/body")
    generation=$(sed -n 's/.*"generation":\([0-9]*\).*/\1/p' "$WORK/body")
    echo "findings in all: $total (generation $generation)"
    # A cursor from the middle: page through half the findings once.
    cursor=""
    for ((p = 0; p < total / 500 / 2; p++)); do
        time_one "$base/v1/findings?limit=500${cursor:+&cursor=$cursor}" >/dev/null
        cursor=$(sed -n 's/.*"next_cursor":"\([0-9a-f]*\)".*/\1/p' "$WORK/body")
    done
    series "GET /v1/findings (first 500)" "$base/v1/findings"
    series "GET /v1/findings?since=<current>" "$base/v1/findings?since=$generation"
    if [[ -n "$cursor" ]]; then
        series "GET /v1/findings?cursor=<middle>" "$base/v1/findings?cursor=$cursor"
    fi
    series "GET /v1/plans (first 500)" "$base/v1/plans"
    echo "daemon RSS $(rss_mib "$DAEMON_PID") MiB"
}

echo "== queries: $REQUESTS of each kind, one client"
queries
stop_daemon

echo "== restart on the filled store ($(du -sh "$dir" | cut -f1))"
start=$SECONDS
start_daemon "$dir"
listen=$(sed -e 's/.*"listen":"\([^"]*\)".*/\1/' "$dir/daemon.json")
echo "start-up took ~$((SECONDS - start)) s (includes 1 s settle); findings rebuilt from the journal in $(grep 'findings rebuilt' "$dir.log" | grep -o 'millis=[0-9]*' | tail -1 | cut -d= -f2) ms"
echo "== queries after the restart"
queries
stop_daemon
