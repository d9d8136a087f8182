#!/usr/bin/env bash
# Runs the MCP conformance alpha's 2026-07-28 server scenarios against one or
# more URLs and prints "scenario check-id status" per check (sorted), so
# the runs can be diffed. Needs INTENTPROOF_TEST_NODE22 and
# INTENTPROOF_TEST_CONFORMANCE (./scripts/test exports them).
# Usage: tests/mcp2026/conformance.sh URL [URL...]
#        SCENARIOS="tools-list" tests/mcp2026/conformance.sh URL
# The automated comparison is crates/intentproof-cli/tests/mcp_2026.rs
# (conformance_2026_results_are_the_same_directly_and_through_the_gateway).
set -euo pipefail
: "${INTENTPROOF_TEST_NODE22:?run ./scripts/test first (it exports INTENTPROOF_TEST_NODE22)}"
: "${INTENTPROOF_TEST_CONFORMANCE:?run ./scripts/test first (it exports INTENTPROOF_TEST_CONFORMANCE)}"
[ $# -ge 1 ] || { echo "usage: $0 URL [URL...]" >&2; exit 2; }
SCENARIOS=${SCENARIOS:-"server-stateless http-header-validation tools-list"}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0
for url in "$@"; do
	n=$((n + 1))
	echo "== $url"
	for scenario in $SCENARIOS; do
		dir="$out/$n-$scenario"
		"$INTENTPROOF_TEST_NODE22" "$INTENTPROOF_TEST_CONFORMANCE" server --url "$url" \
			--spec-version 2026-07-28 --scenario "$scenario" -o "$dir" >"$dir.log" 2>&1 || true
		checks=$(find "$dir" -name checks.json 2>/dev/null | head -n 1)
		if [ -z "$checks" ]; then
			echo "$scenario: no checks.json; output:" >&2
			cat "$dir.log" >&2
			continue
		fi
		"$INTENTPROOF_TEST_NODE22" -e '
			const checks = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
			const lines = checks.map((c) => `${process.argv[2]} ${c.id} ${c.status}` + (c.status === "SUCCESS" ? "" : `  # ${c.errorMessage ?? ""}`));
			console.log(lines.sort().join("\n"));' "$checks" "$scenario"
	done
done
