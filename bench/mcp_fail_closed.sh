#!/usr/bin/env bash
# Added latency per tools/call of `intentproof mcp --fail-closed`, with and
# without a pending spool, next to fail-open and a direct session
# (bench/mcp_fail_closed.py). Goal: fail-closed added p50 <= 0.25 ms either way.
# Usage: bench/mcp_fail_closed.sh [CALLS] [SEED]
#   CALLS          timed calls per path (default 2000)
#   SEED           events a killed gateway leaves pending in the spool of
#                  the daemon-down data dir before the run (default 5000)
#   BIN=PATH       the intentproof binary (default $CARGO_TARGET_DIR or
#                  target, release/intentproof; copied before the run)
#   BENCH_DIR=DIR  scratch directory (kept); the data dirs live there, so
#                  its file system's fdatasync is what fail-closed pays
#                  (printed first). Default: a new one under $TMPDIR.
#   UPSTREAM       the upstream command (default: BIN demo-server)
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-2000}
SEED=${2:-5000}
SRC=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/intentproof}
[ -x "$SRC" ] || { echo "bench/mcp_fail_closed.sh: $SRC missing: cargo build --release -p intentproof-cli, or BIN=PATH" >&2; exit 1; }
if [ -n "${BENCH_DIR:-}" ]; then
	WORK=$BENCH_DIR
	mkdir -p "$WORK"
	trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT
else
	WORK=$(mktemp -d)
	trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
fi
# A private copy, so a rebuild elsewhere in the tree cannot swap it mid-run.
cp "$SRC" "$WORK/intentproof"
BIN=$WORK/intentproof
UP=$WORK/up
DOWN=$WORK/down
rm -rf "$UP" "$DOWN"
wait_listening() {
	for _ in $(seq 300); do [ -f "$1/daemon.json" ] && return 0; sleep 0.1; done
	echo "bench/mcp_fail_closed.sh: no daemon on $1; see $1.log" >&2
	exit 1
}
# The daemon-down data dir had a daemon once (keys, token), stopped now.
"$BIN" serve --data-dir "$DOWN" --listen 127.0.0.1:0 2>"$DOWN.log" &
wait_listening "$DOWN"
"$BIN" stop --data-dir "$DOWN" >/dev/null
# A port nothing listens on: delivery from DOWN fails at once, every retry.
CLOSED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --data-dir "$UP" --listen 127.0.0.1:0 2>"$UP.log" &
wait_listening "$UP"
if [ -n "${UPSTREAM:-}" ]; then
	read -r -a CMD <<<"$UPSTREAM"
else
	CMD=("$BIN" demo-server)
fi
echo "machine: $(nproc) cores; $(uptime)"
python3 bench/mcp_fail_closed.py "$BIN" "$UP" "$DOWN" "http://127.0.0.1:$CLOSED" "$CALLS" "$SEED" -- "${CMD[@]}"
"$BIN" stop --data-dir "$UP" >/dev/null
