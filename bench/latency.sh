#!/usr/bin/env bash
# Ingest latency at a fixed open-loop rate (default 1,000 events/s for 30 s).
# Latency is measured from each event's scheduled send time.
#
#   bench/latency.sh
#   RATE=2000 SECONDS_=60 bench/latency.sh
source "$(dirname "$0")/lib.sh"

RATE=${RATE:-1000}
DURATION=${SECONDS_:-30}

build
machine_note
dir="$WORK/latency"
start_daemon "$dir"
"$BIN/loadgen" rate --data-dir "$dir" --rate "$RATE" --seconds "$DURATION" --prefix latency
stop_daemon
