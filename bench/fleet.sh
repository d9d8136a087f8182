#!/usr/bin/env bash
# Fleet replication end to end: a release daemon with [fleet] replicating
# into a real PostgreSQL (system packages, fsync on, started by
# replication_bench's `pg` mode), under a batched ingest burst; then the
# same burst on a daemon without [fleet], side by side.
#
#   bench/fleet.sh                  # 100,000 pre-signed ~1 KiB events, 8 x 500 per request
#   EVENTS=200000 bench/fleet.sh
#
# Prints the load generator's figures for both daemons and, with [fleet],
# the seconds from the end of the burst until intentproof_fleet_lag_records
# reads 0 on /metrics (polled every 50 ms), and the rows in PostgreSQL.
source "$(dirname "$0")/lib.sh"

EVENTS=${EVENTS:-100000}

build
if [[ -z "${BIN_FROM:-}" ]]; then
    [[ -n "${SKIP_BUILD:-}" ]] || (cd "$ROOT" && cargo build --release -p intentproof-fleet --example replication_bench)
    cp "$ROOT/target/release/examples/replication_bench" "$BIN/"
fi
machine_note

coproc PG { "$BIN/replication_bench" pg; }
read -r PG_URL <&"${PG[0]}"
echo "PostgreSQL: $PG_URL"
printf 'checkpoint_interval_secs = 1\n[fleet]\npostgres_url = "%s"\n' "$PG_URL" >"$WORK/fleet.toml"

metric() { # metric DIR NAME
    local listen token
    listen=$(sed -e 's/.*"listen":"\([^"]*\)".*/\1/' "$1/daemon.json")
    token=$(cat "$1/token")
    curl -s -H "Authorization: Bearer $token" "http://$listen/metrics" | awk -v n="$2" '$1 == n {print $2}'
}

for mode in without with; do
    dir="$WORK/fleet-$mode"
    echo "== $mode [fleet]: $EVENTS events, 8 connections x 500 per request"
    if [[ $mode == with ]]; then DAEMON_CONFIG="$WORK/fleet.toml"; else DAEMON_CONFIG=""; fi
    start_daemon "$dir"
    "$BIN/loadgen" ingest --data-dir "$dir" --events "$EVENTS" --concurrency 8 --batch 500 --prefix "fleet-$mode"
    if [[ $mode == with ]]; then
        start=$(date +%s.%N)
        echo "lag right after the burst: $(metric "$dir" intentproof_fleet_lag_records) records"
        until [[ "$(metric "$dir" intentproof_fleet_lag_records)" == 0 ]]; do sleep 0.05; done
        end=$(date +%s.%N)
        awk -v a="$start" -v b="$end" 'BEGIN { printf "lag back to 0: %.2f s after the burst\n", b - a }'
        echo "replicated: $(metric "$dir" intentproof_fleet_replicated_records) records"
    fi
    stop_daemon
done
exec {PG[1]}>&-
wait "$PG_PID" 2>/dev/null || true
