# Shared helpers for the daemon benchmarks. Source it; do not run it.
# shellcheck shell=bash
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Scratch space: data dirs and a private copy of the binaries (so a rebuild
# elsewhere in the tree cannot swap them mid-run).
WORK=${BENCH_DIR:-$(mktemp -d /tmp/intentproof-bench.XXXXXX)}
mkdir -p "$WORK"
BIN="$WORK/bin"
DAEMON_PID=""

cleanup() {
    if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if [[ -z "${KEEP:-}" && -z "${BENCH_DIR:-}" ]]; then
        rm -rf "$WORK"
    else
        echo "kept $WORK"
    fi
}
trap cleanup EXIT

# SKIP_BUILD=1: use the binaries already in target/release.
# BIN_FROM=DIR: use DIR/intentproof and DIR/loadgen instead (no build), to
# compare two builds under the same conditions.
build() {
    mkdir -p "$BIN"
    if [[ -n "${BIN_FROM:-}" ]]; then
        cp "$BIN_FROM"/* "$BIN/"
        return
    fi
    [[ -n "${SKIP_BUILD:-}" ]] || (cd "$ROOT" && cargo build --release -p intentproof-cli -p intentproof-gateway --bin intentproof --example loadgen)
    cp "$ROOT/target/release/intentproof" "$ROOT/target/release/examples/loadgen" "$BIN/"
}

machine_note() {
    echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB; load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
}

# cpu_ticks PID: user + system CPU time of a process, in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

rss_mib() {
    awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"
}

# start_daemon DATA_DIR: release daemon on an ephemeral port; waits until it
# has written daemon.json with its own pid. Sets DAEMON_PID. DAEMON_CONFIG:
# a config file to start it with (--config).
start_daemon() {
    local dir=$1
    mkdir -p "$dir"
    local extra=()
    [[ -z "${DAEMON_CONFIG:-}" ]] || extra=(--config "$DAEMON_CONFIG")
    "$BIN/intentproof" serve --data-dir "$dir" --listen 127.0.0.1:0 "${extra[@]}" 2>>"$dir.log" &
    DAEMON_PID=$!
    local deadline=$((SECONDS + 600))
    until [[ -f "$dir/daemon.json" ]] && grep -q "\"pid\":$DAEMON_PID[,}]" "$dir/daemon.json"; do
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            echo "daemon exited while starting; log:" >&2
            cat "$dir.log" >&2
            return 1
        fi
        if ((SECONDS > deadline)); then
            echo "daemon did not start" >&2
            return 1
        fi
        sleep 0.05
    done
    sleep 1 # let it settle before the idle RSS reading
    echo "daemon pid $DAEMON_PID on $(sed -e 's/.*"listen":"\([^"]*\)".*/\1/' "$dir/daemon.json"); idle RSS $(rss_mib "$DAEMON_PID") MiB"
}

stop_daemon() {
    echo "daemon RSS before stop: $(rss_mib "$DAEMON_PID") MiB"
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID" || true
    DAEMON_PID=""
}

# start_pay_proxy: builds (unless SKIP_BUILD=1) and starts the example
# upstream (`http_upstream`, axum, one worker thread) and a daemon with one
# `[[http.routes]]` entry `pay` in front of it (it adds an Authorization
# header upstream). BIN_FROM=DIR takes DIR/intentproof instead of
# target/release's (no build unless the upstream example is missing). Sets UP, GW, TOKEN, DATA,
# UPSTREAM_PID and DAEMON_PID; stops both at exit.
start_pay_proxy() {
    command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
    if [[ -n "${BIN_FROM:-}" && -x "$ROOT/target/release/examples/http_upstream" ]] || [[ -n "${SKIP_BUILD:-}" ]]; then
        : # prebuilt
    else
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
headers = { Authorization = "Bearer sk_bench_not_a_secret" }
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
}
