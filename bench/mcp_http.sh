#!/usr/bin/env bash
# Added latency of the MCP gateway over Streamable HTTP vs the PyPI mcp-proxy
# (both relaying `intentproof demo-server`), against a direct stdio session.
# Needs a release build; installs mcp-proxy into bench/.venv-mcp-proxy (ignored).
# Usage: bench/mcp_http.sh [CALLS]
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-2000}
BIN=$PWD/target/release/intentproof
[ -x "$BIN" ] || cargo build --release -p intentproof-cli
VENV=bench/.venv-mcp-proxy
[ -x "$VENV/bin/mcp-proxy" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q "mcp-proxy==0.13.0"; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
cat > "$WORK/gw.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$WORK/data"
[[mcp.servers]]
name = "bench"
command = ["$BIN", "demo-server"]
TOML
"$BIN" serve --config "$WORK/gw.toml" 2>"$WORK/daemon.log" &
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$VENV/bin/mcp-proxy" --host 127.0.0.1 --port "$PORT" -- "$BIN" demo-server 2>"$WORK/proxy.log" &
for _ in $(seq 100); do [ -f "$WORK/data/daemon.json" ] && curl -s "127.0.0.1:$PORT/status" >/dev/null 2>&1 && break; sleep 0.1; done
GW=$(python3 -c "import json;print(json.load(open('$WORK/data/daemon.json'))['listen'])")
python3 bench/mcp_http_latency.py "http://$GW/mcp/bench" "http://127.0.0.1:$PORT/mcp" "$CALLS" -- "$BIN" demo-server
