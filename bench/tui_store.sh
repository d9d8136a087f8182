#!/usr/bin/env bash
# The TUI's chains view on a real store of 100,000 chains: fill a daemon
# with one-event chains, then time how the view gets its rows (first page,
# all pages) and one End keystroke-to-frame, through the daemon's API and,
# with the daemon stopped, from the store itself.
#
#   bench/tui_store.sh
#   CHAINS=20000 bench/tui_store.sh
source "$(dirname "$0")/lib.sh"

CHAINS=${CHAINS:-100000}

build
(cd "$ROOT" && cargo build --release -p intentproof-tui --example load_chains)
cp "$ROOT/target/release/examples/load_chains" "$BIN/"
machine_note
dir="$WORK/tui"
echo "== fill: $CHAINS chains of one event"
start_daemon "$dir"
"$BIN/loadgen" ingest --data-dir "$dir" --events "$CHAINS" --chain-len 1 --concurrency 64 --prefix tui >/dev/null
echo "== through the daemon"
"$BIN/load_chains" --data-dir "$dir"
stop_daemon
echo "== the store itself (no daemon)"
"$BIN/load_chains" --data-dir "$dir" --local
