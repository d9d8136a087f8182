#!/usr/bin/env bash
# Added latency of the MCP gateway over Streamable HTTP vs the PyPI mcp-proxy
# (both relaying the same stdio upstream), against a direct stdio session.
# Needs a release build; installs mcp-proxy into bench/.venv-mcp-proxy (ignored).
# Usage: bench/mcp_http.sh [CALLS]
#   UPSTREAM=everything  relay server-everything (.ci-deps, see scripts/test)
#                        instead of `intentproof demo-server`, and add the fair
#                        HTTP baseline: the same server over Streamable HTTP
#                        directly, and the gateway relaying that HTTP server
#                        (a `url` upstream).
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-2000}
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/intentproof
[ -x "$BIN" ] || cargo build --release -p intentproof-cli
VENV=bench/.venv-mcp-proxy
[ -x "$VENV/bin/mcp-proxy" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q "mcp-proxy==0.13.0"; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EXTRA=()
if [ "${UPSTREAM:-demo}" = everything ]; then
	EVERYTHING=$PWD/.ci-deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js
	[ -f "$EVERYTHING" ] || { echo "bench/mcp_http.sh: $EVERYTHING missing; run ./scripts/test --no-run first" >&2; exit 1; }
	CMD=(node "$EVERYTHING" stdio)
	HTTP_PORT=$(free_port)
	PORT=$HTTP_PORT node "$EVERYTHING" streamableHttp >"$WORK/everything.log" 2>&1 &
	for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$HTTP_PORT/mcp" && break; sleep 0.1; done
	EXTRA=(--http "direct (http)=http://127.0.0.1:$HTTP_PORT/mcp" --http "intentproof (http->http)=GATEWAY/mcp/remote")
	REMOTE="
[[mcp.servers]]
name = \"remote\"
url = \"http://127.0.0.1:$HTTP_PORT/mcp\""
else
	CMD=("$BIN" demo-server)
	REMOTE=""
fi
COMMAND=$(printf '"%s", ' "${CMD[@]}")
cat > "$WORK/gw.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$WORK/data"
[[mcp.servers]]
name = "bench"
command = [${COMMAND%, }]
$REMOTE
TOML
"$BIN" serve --config "$WORK/gw.toml" 2>"$WORK/daemon.log" &
PORT=$(free_port)
"$VENV/bin/mcp-proxy" --host 127.0.0.1 --port "$PORT" -- "${CMD[@]}" >"$WORK/proxy.log" 2>&1 &
for _ in $(seq 100); do [ -f "$WORK/data/daemon.json" ] && curl -s "127.0.0.1:$PORT/status" >/dev/null 2>&1 && break; sleep 0.1; done
GW=$(python3 -c "import json;print(json.load(open('$WORK/data/daemon.json'))['listen'])")
EXTRA=("${EXTRA[@]/GATEWAY/http://$GW}")
python3 bench/mcp_http_latency.py "http://$GW/mcp/bench" "http://127.0.0.1:$PORT/mcp" "$CALLS" "${EXTRA[@]}" -- "${CMD[@]}"
