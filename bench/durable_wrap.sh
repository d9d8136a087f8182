#!/usr/bin/env bash
# Durable `wrap` (library mode, Durability::Local): latency per call and
# events/s, 1 and 8 threads, beside PyPI `intentproof`'s durable wrap
# (SQLite outbox) in the same run. Both sign every event.
#
#   bench/durable_wrap.sh                 # 5,000 calls per thread
#   CALLS=2000 PYTHON=.ci-deps/venv/bin/python bench/durable_wrap.sh
#
# Rows: "rust, outbox only": delivery never succeeds, so the records are
# never signed (signing happens at delivery): the commit path alone;
# "rust, counted" delivers to an exporter that only counts (the wrap's own
# cost with signing beside it); "rust -> daemon" delivers to a release daemon on this
# machine while the calls run (end to end); "pypi" commits to its outbox
# and, with "-> daemon", posts to the same daemon.
source "$(dirname "$0")/lib.sh"

CALLS=${CALLS:-5000}
PYTHON=${PYTHON:-$ROOT/.ci-deps/venv/bin/python}
"$PYTHON" -c 'import intentproof' 2>/dev/null || { echo "PyPI intentproof is not installed for $PYTHON (pip install intentproof==0.2.1)" >&2; exit 1; }

if [[ -z "${SKIP_BUILD:-}" ]]; then
    (cd "$ROOT" && cargo build --release -p intentproof-cli --bin intentproof && cargo build --release -p intentproof --example durable_wrap_bench)
fi
mkdir -p "$BIN"
cp "$ROOT/target/release/intentproof" "$ROOT/target/release/examples/durable_wrap_bench" "$BIN/"
machine_note
start_daemon "$WORK/data"
URL="http://$(sed -e 's/.*"listen":"\([^"]*\)".*/\1/' "$WORK/data/daemon.json")/v1/events"
TOKEN=$(cat "$WORK/data/token")

row() { # label json
    "$PYTHON" -c 'import json,sys; r=json.loads(sys.argv[2]); print("| %-22s | %d | %7.0f | %7.0f | %8.0f |" % (sys.argv[1], r["threads"], r["p50_us"], r["p99_us"], r["events_per_s"]))' "$1" "$2"
}

echo "| run | threads | p50 us | p99 us | events/s |"
echo "|---|---|---|---|---|"
for threads in 1 8; do
    calls=$((threads == 1 ? CALLS : CALLS / 2))
    row "rust, outbox only" "$(BENCH_NO_DELIVERY=1 "$BIN/durable_wrap_bench" --threads "$threads" --calls "$calls")"
    row "rust, counted" "$("$BIN/durable_wrap_bench" --threads "$threads" --calls "$calls")"
    row "rust -> daemon" "$("$BIN/durable_wrap_bench" --threads "$threads" --calls "$calls" --url "$URL" --token "$TOKEN")"
    pycalls=$((calls / 4))
    row "pypi 0.2.1" "$("$PYTHON" "$ROOT/bench/durable_wrap_pypi.py" "$threads" "$pycalls")"
    row "pypi 0.2.1 -> daemon" "$(INGEST_URL="$URL" INTENTPROOF_INGEST_TOKEN="$TOKEN" "$PYTHON" "$ROOT/bench/durable_wrap_pypi.py" "$threads" "$pycalls")"
done
# The machine's limit: one thread writing 600 bytes into zeroed space and
# fdatasync'ing, nothing else (what one durable call cannot beat).
"$PYTHON" - "$WORK/fsync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"\0" * (8 << 20)); os.fsync(fd)
lat = []
for i in range(3000):
    t = time.perf_counter()
    os.pwrite(fd, b"x" * 600, i * 600); os.fdatasync(fd)
    lat.append(time.perf_counter() - t)
lat.sort()
print("| %-22s | %d | %7.0f | %7.0f | %8.0f |" % ("machine: fdatasync", 1, lat[1500] * 1e6, lat[2970] * 1e6, len(lat) / sum(lat)))
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
stop_daemon
