#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS_PER_TARGET seconds (default 600)
# at nice 19, and prints per target: executions, corpus size, crashes.
# Exits non-zero when any target crashed (or hung, or ran out of memory);
# the inputs are in fuzz/artifacts/<target>/, to become regression tests.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]
#
# Environment:
#   FUZZ_JOBS=N          targets run N at a time (default 1: one after another)
#   FUZZ_TARGETS="a b"   only these targets (default: all, see `cargo fuzz list`)
#   FUZZ_SANITIZER=s     none (default: the targets are safe Rust; builds and
#                        runs several times faster) or address
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (installed with `cargo install cargo-fuzz --locked` if missing).
# The normal build never needs either: fuzz/ is its own workspace.
#
# Seeds are rebuilt on every run from the repository's fixtures (the spec's
# golden vectors and fuzz corpora, policies/, examples/) into fuzz/seeds/;
# what the fuzzer finds grows fuzz/corpus/<target>/; logs are in
# fuzz/logs/<target>.log. Neither is committed.
set -euo pipefail

seconds="${1:-600}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz/run.sh: SECONDS_PER_TARGET must be a positive whole number, not '$seconds'" >&2
    exit 2
fi
jobs="${FUZZ_JOBS:-1}"
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz/run.sh: FUZZ_JOBS must be a positive whole number, not '$jobs'" >&2
    exit 2
fi
sanitizer="${FUZZ_SANITIZER:-none}"

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$fuzz_dir")"
golden="$repo/tests/fixtures/intentproof-spec/golden"
cd "$fuzz_dir"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz/run.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    nice -n 19 cargo install cargo-fuzz --locked
fi

all_targets="$(cargo +nightly fuzz list)"
targets="${FUZZ_TARGETS:-$all_targets}"
for target in $targets; do
    if ! grep -qx "$target" <<<"$all_targets"; then
        echo "fuzz/run.sh: no fuzz target '$target'; the targets are:" $all_targets >&2
        exit 2
    fi
done

echo "building the fuzz targets (sanitizer: $sanitizer)" >&2
nice -n 19 cargo +nightly fuzz build -s "$sanitizer" >&2
bin_dir="$fuzz_dir/target/x86_64-unknown-linux-gnu/release"

# --- seeds -----------------------------------------------------------------

seeds="$fuzz_dir/seeds"
rm -rf "$seeds"
seed_counter=0

# seed TARGET FILE...: copies files into the target's seed directory.
seed() {
    local target="$1"
    shift
    mkdir -p "$seeds/$target"
    local file
    for file in "$@"; do
        [ -f "$file" ] || continue
        seed_counter=$((seed_counter + 1))
        cp "$file" "$seeds/$target/$seed_counter-$(basename "$file")"
    done
}

# seed_text TARGET TEXT: one seed holding TEXT (printf escapes allowed).
seed_text() {
    mkdir -p "$seeds/$1"
    seed_counter=$((seed_counter + 1))
    printf "$2" >"$seeds/$1/$seed_counter-text"
}

# seed_lines TARGET FILE [JQ_FILTER]: one seed per line of FILE (each line
# passed through JQ_FILTER when given and jq is installed).
seed_lines() {
    local target="$1" file="$2" filter="${3:-}"
    [ -f "$file" ] || return 0
    mkdir -p "$seeds/$target"
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        [ -n "$line" ] || continue
        seed_counter=$((seed_counter + 1))
        if [ -n "$filter" ] && command -v jq >/dev/null; then
            jq -c "$filter" <<<"$line" >"$seeds/$target/$seed_counter-line" 2>/dev/null || true
        else
            printf '%s' "$line" >"$seeds/$target/$seed_counter-line"
        fi
    done <"$file"
}

envelope='{"intentproof":"1","event":{"id":"0190b6f2-0000-7000-8000-000000000001","correlationId":"flow-1","intent":"Refund order 1042","action":"payments.refund","inputs":{"order":1042,"password":"hunter2"},"output":{"status":"ok"},"status":"ok","startedAt":"2026-01-01T00:00:00.000Z","completedAt":"2026-01-01T00:00:00.001Z","durationMs":1,"attributes":{"tool":"refund"}}}'
envelope_error='{"intentproof":"1","event":{"id":"0190b6f2-0000-7000-8000-000000000002","intent":"Read a file","action":"fs.read","inputs":["/etc/passwd"],"error":{"name":"IoError","message":"denied","stack":"at read"},"status":"error","startedAt":"2026-01-01T00:00:00.000Z","completedAt":"2026-01-01T00:00:00.002Z","durationMs":2}}'

# JCS: the spec's canon corpus and JCS vectors.
seed jcs "$golden"/fuzz-corpora/canon/*
seed_lines jcs "$golden/jcs_vectors.jsonl" '.input'
seed_text jcs '{"a":1e20,"b":-0.0,"c":[1.5e-7,9007199254740992],"\\u00e9":"\\ud83d\\ude00"}'

# Ingest: the spec's events (bare v1, signed) and envelopes.
for file in "$golden/execution_event_cases.jsonl" "$golden/multi-agent/execution_event_cases.jsonl"; do
    seed_lines ingest_single "$file" '.event'
    seed_lines ingest_batch "$file" '.event'
done
seed ingest_single "$golden/sdk-signing/signing_unsigned_event.json"
seed_text ingest_single "$envelope"
seed_text ingest_single "$envelope_error"
seed_text ingest_batch "$envelope\n$envelope_error\r\n\n  \n$envelope"
if command -v jq >/dev/null; then
    jq -c '.event' "$golden/execution_event_cases.jsonl" >"$seeds/ingest_batch/all-events" 2>/dev/null || true
fi

# Bundles: the spec's corpus and the golden bundle, compressed and as tar.
seed bundle "$golden"/fuzz-corpora/bundle/* "$golden/counterparty/counterparty-refund.proof.tar.zst"
if command -v zstd >/dev/null; then
    zstd -q -d -c "$golden/counterparty/counterparty-refund.proof.tar.zst" \
        >"$seeds/bundle/counterparty-refund.proof.tar" 2>/dev/null || true
fi

# Policies: verification and redaction policies of the repository and spec.
while IFS= read -r -d '' file; do
    seed policy_yaml "$file"
done < <(find "$repo/policies" "$repo/examples/policies" "$golden/fuzz-corpora/policy" \
    "$golden/demo/policies" "$repo/tests/fixtures/intentproof-spec/reference-policies" \
    -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) -print0 2>/dev/null)
seed_lines policy_yaml "$golden/policy_cases.jsonl" '.policy'

# Redactor: events and JSON holding secrets, plain and as JSON text.
seed_lines redact "$golden/execution_event_cases.jsonl" '.event'
seed redact "$golden"/fuzz-corpora/canon/*
seed_text redact "$(jq -c '.event' <<<"$envelope" 2>/dev/null || echo '{}')"
seed_text redact '{"s":"{\\"password\\":\\"hunter2\\",\\"inner\\":\\"{\\\\\\"token\\\\\\":\\\\\\"ghp_0123456789abcdefghijklmnopqrstuvwxyz\\\\\\"}\\"}","card":"4242 4242 4242 4242","mail":"ada@example.com","headers":{"Authorization":"Bearer x","X-Api-Key":"k"},"n":4242424242424242}'

# SSE: event streams as remote MCP upstreams send them.
seed_text sse 'id: 1\nevent: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n'
seed_text sse ': keep-alive\r\nretry: 1500\r\nid: 7\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: other\ndata: x\n\ndata:\n\nid\nid: \0x\n\n'
seed_text sse 'data: [{"jsonrpc":"2.0","method":"notifications/progress"}]\n\ndata: {"unterminated":true}'

# Stdio lines: JSON-RPC traffic, bad UTF-8, CRLF, an unterminated end.
seed_text stdio_lines '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}\n{"jsonrpc":"2.0","id":1,"result":{"content":[]}}\r\n\n'
seed_text stdio_lines '{"jsonrpc":"2.0","id":"a\xff","method":"x"}\n{"result":1,"jsonrpc":"2.0","id":7}\n{"id":3,"method":"tools/list"'
seed stdio_lines "$golden/execution_event_cases.jsonl" "$golden/jcs_vectors.jsonl"

# Config: the example daemon config and small variants.
seed config "$repo/examples/gateway.toml"
seed_text config 'listen = "127.0.0.1:0"\ningest_token = "t"\nallowed_hosts = ["gateway.internal:9787"]\nallowed_origins = ["https://app.example.com"]\n[mcp]\nsession_idle_timeout_secs = 5\n[[mcp.servers]]\nname = "r"\nurl = "https://mcp.example.com/mcp"\nheaders = { Authorization = "Bearer x" }\n[[exporters]]\nname = "siem"\nurl = "https://c.example/v1/events"\n[[http.routes]]\nname = "payments"\nupstream = "http://127.0.0.1:8080/api"\naction = ["/v1/refunds/{id}"]\n'

# --- runs ------------------------------------------------------------------

mkdir -p "$fuzz_dir/logs"
run_tmp="$(mktemp -d "${TMPDIR:-/tmp}/intentproof-fuzz.XXXXXX")"
trap 'rm -rf "$run_tmp"' EXIT

# run_one TARGET: fuzzes TARGET for $seconds; its exit status is libFuzzer's.
run_one() {
    local target="$1"
    local corpus="$fuzz_dir/corpus/$target" artifacts="$fuzz_dir/artifacts/$target"
    mkdir -p "$corpus" "$artifacts" "$seeds/$target" "$run_tmp/$target"
    # The first directory is the corpus libFuzzer grows; seeds are read only.
    TMPDIR="$run_tmp/$target" nice -n 19 "$bin_dir/$target" \
        -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "$corpus" "$seeds/$target" >"$fuzz_dir/logs/$target.log" 2>&1
}

declare -A status
running=()
for target in $targets; do
    # Artifacts of earlier runs are kept (each is a regression test to
    # write); only this run's are counted.
    touch "$run_tmp/start-$target"
    run_one "$target" &
    running+=("$!:$target")
    if [ "${#running[@]}" -ge "$jobs" ]; then
        entry="${running[0]}"
        running=("${running[@]:1}")
        if wait "${entry%%:*}"; then status[${entry#*:}]=0; else status[${entry#*:}]=$?; fi
    fi
done
for entry in "${running[@]}"; do
    if wait "${entry%%:*}"; then status[${entry#*:}]=0; else status[${entry#*:}]=$?; fi
done

failed=0
printf '%-14s %12s %8s %8s  %s\n' target executions corpus crashes log
for target in $targets; do
    log="$fuzz_dir/logs/$target.log"
    executions="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
    corpus="$(find "$fuzz_dir/corpus/$target" -type f | wc -l)"
    crashes="$(find "$fuzz_dir/artifacts/$target" -type f -newer "$run_tmp/start-$target" | wc -l)"
    if [ "${status[$target]}" != 0 ] || [ "$crashes" != 0 ]; then
        failed=1
    fi
    printf '%-14s %12s %8s %8s  %s\n' "$target" "${executions:-?}" "$corpus" "$crashes" "$log"
done
if [ "$failed" != 0 ]; then
    echo "fuzz/run.sh: a target crashed; reproduce with" \
        "'cargo +nightly fuzz run -s $sanitizer <target> fuzz/artifacts/<target>/<file>'" \
        "and add the input as a regression test in the owning crate" >&2
    exit 1
fi
