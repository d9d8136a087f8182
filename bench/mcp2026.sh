#!/usr/bin/env bash
# Added latency per tools/call for an MCP 2026-07-28 client (stateless) and a
# 2025-11-25 client on the same upstream: direct stdio, the gateway over
# stdio (`intentproof mcp`) and over HTTP (`/mcp/bench`, a `command`
# upstream), and the PyPI mcp-proxy, all interleaved in one run
# (bench/mcp2026_latency.py).
# Needs a release build and the mcp 2.3.0 venv (.ci-deps/venv-mcp2, made by
# ./scripts/test); installs mcp-proxy into bench/.venv-mcp-proxy (ignored).
# Usage: bench/mcp2026.sh [CALLS]
#   UPSTREAM=demo  relay `intentproof demo-server` (answers a 2026 tools/call
#                  but ignores `_meta`) instead of the dual-era fixture
#                  tests/mcp2026/fixture_server.py (tool echo)
#   BIN=PATH       the intentproof binary (default $CARGO_TARGET_DIR or
#                  target, release/intentproof; copied before the run)
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-2000}
SRC=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/intentproof}
[ -x "$SRC" ] || cargo build --release -p intentproof-cli
VENV=bench/.venv-mcp-proxy
[ -x "$VENV/bin/mcp-proxy" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q "mcp-proxy==0.13.0"; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
# A private copy, so a rebuild elsewhere in the tree cannot swap it mid-run.
cp "$SRC" "$WORK/intentproof"
BIN=$WORK/intentproof
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [ "${UPSTREAM:-fixture}" = demo ]; then
	CMD=("$BIN" demo-server)
else
	PY=$PWD/.ci-deps/venv-mcp2/bin/python
	[ -x "$PY" ] || { echo "bench/mcp2026.sh: $PY missing; run ./scripts/test --no-run first" >&2; exit 1; }
	CMD=("$PY" "$PWD/tests/mcp2026/fixture_server.py" stdio)
fi
COMMAND=$(printf '"%s", ' "${CMD[@]}")
cat > "$WORK/gw.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$WORK/data"
[[mcp.servers]]
name = "bench"
command = [${COMMAND%, }]
TOML
"$BIN" serve --config "$WORK/gw.toml" 2>"$WORK/daemon.log" &
PORT=$(free_port)
"$VENV/bin/mcp-proxy" --host 127.0.0.1 --port "$PORT" -- "${CMD[@]}" >"$WORK/proxy.log" 2>&1 &
for _ in $(seq 100); do [ -f "$WORK/data/daemon.json" ] && curl -s "127.0.0.1:$PORT/status" >/dev/null 2>&1 && break; sleep 0.1; done
GW=$(python3 -c "import json;print(json.load(open('$WORK/data/daemon.json'))['listen'])")
echo "machine: $(nproc) cores; $(uptime)"
python3 bench/mcp2026_latency.py "$BIN" "$WORK/data" "http://$GW/mcp/bench" "http://127.0.0.1:$PORT/mcp" "$CALLS" -- "${CMD[@]}"
