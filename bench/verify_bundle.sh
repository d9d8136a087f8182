#!/usr/bin/env bash
# `intentproof verify` end to end on a large exported bundle: events/s
# (events / wall time of the whole command) and peak RSS
# (`/usr/bin/time -v`, "Maximum resident set size").
#
# The bundle is made the way a user makes one: a release daemon on a fresh
# data dir, EVENTS signed ~SIZE-byte events in ONE correlation ingested with
# the load generator (POST /v1/events:batch, 1,000 per request, one
# connection, so the chain arrives in order), then `intentproof export`
# (profile `full`: events.jsonl, inclusion_proof.json with every event's
# audit path, the manifest signed by the daemon's key). The events are
# sealed from a fixed key seed, so the bundle's content is the same on
# every run except for timestamps and ids.
#
#   bench/verify_bundle.sh                        # 100,000 events, 5 rounds
#   EVENTS=50000 ROUNDS=3 bench/verify_bundle.sh
#   BUNDLE=/path/b.proof.tar.zst KEY=/path/exporter.pub bench/verify_bundle.sh
#                                                 # reuse a bundle (no daemon)
#   VERIFY_BINS="/tmp/before/intentproof /tmp/after/intentproof" ...
#                                                 # alternate builds, same bundle
#
# Knobs: EVENTS (100000), SIZE (1024), ROUNDS (5), BUNDLE and KEY (skip the
# export), VERIFY_BINS (binaries to time, alternately; default the one
# built), plus lib.sh's BENCH_DIR, KEEP, SKIP_BUILD, BIN_FROM.
source "$(dirname "$0")/lib.sh"

EVENTS=${EVENTS:-100000}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-5}

if [[ -z "${BUNDLE:-}" ]]; then
    build
    dir="$WORK/data"
    start_daemon "$dir"
    "$BIN/loadgen" ingest --data-dir "$dir" --events "$EVENTS" --chain-len "$EVENTS" \
        --size "$SIZE" --concurrency 1 --batch 1000 --prefix vb | grep -E '^(ingest|RESULT|answers)' || true
    BUNDLE="$WORK/vb.proof.tar.zst"
    KEY="$WORK/exporter.pub"
    "$BIN/intentproof" export vb-0 -o "$BUNDLE" --data-dir "$dir" >/dev/null
    "$BIN/intentproof" keys show --data-dir "$dir" >"$KEY"
    stop_daemon
fi
[[ -n "${KEY:-}" ]] || { echo "BUNDLE needs KEY (the exporter's public key file)" >&2; exit 1; }
read -r -a BINS <<<"${VERIFY_BINS:-$BIN/intentproof}"

echo "bundle: $BUNDLE ($(stat -c %s "$BUNDLE") bytes)"
# A first run (not timed) for the verdict and the event count, and to warm
# the page cache.
"${BINS[0]}" verify --json --key "$KEY" "$BUNDLE" >"$WORK/report.json" || true
events=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["summary"]["events"]); sys.stderr.write("verdict: %s, %s\n" % (r["verdict"], r["reason"]))' "$WORK/report.json")
machine_note
for round in $(seq "$ROUNDS"); do
    for bin in "${BINS[@]}"; do
        /usr/bin/time -v "$bin" verify --key "$KEY" "$BUNDLE" >/dev/null 2>"$WORK/time.txt" || true
        python3 - "$WORK/time.txt" "$events" "$bin" "$round" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
events = int(sys.argv[2])
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
secs = 0.0
for part in wall.split(":"):
    secs = secs * 60 + float(part)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
user = float(re.search(r"User time \(seconds\): (\S+)", text).group(1))
system = float(re.search(r"System time \(seconds\): (\S+)", text).group(1))
status = re.search(r"Exit status: (\d+)", text).group(1)
load = open("/proc/loadavg").read().split()[:3]
print(f"RESULT round {sys.argv[4]} {sys.argv[3]}: {events} events in {secs:.2f} s = "
      f"{events / secs:,.0f} events/s; peak RSS {rss / 1024:.1f} MiB; CPU user {user:.2f} s "
      f"sys {system:.2f} s; exit {status}; load {' '.join(load)}")
PY
    done
done
