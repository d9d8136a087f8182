#!/usr/bin/env bash
# Runs the official MCP conformance suite's server scenarios against one or
# more URLs and prints "scenario check-id status" per check (sorted; a
# non-SUCCESS line ends with "# <message>"), so the runs can be diffed.
# Needs INTENTPROOF_TEST_NODE22 and INTENTPROOF_TEST_CONFORMANCE (the
# 0.2.0-alpha.12), or INTENTPROOF_TEST_CONFORMANCE_RELEASED (0.1.16) for
# SUITE=released (./scripts/test exports them).
# Usage: tests/mcp2026/conformance.sh URL [URL...]
#   SUITE=alpha-2026 (default): every 2026-07-28 scenario (--suite all)
#   SUITE=alpha-2025: the alpha's 2025-11-25 scenarios (sessions)
#   SUITE=released: 0.1.16, --suite all (2025-11-25 sessions)
#   SCENARIO=tools-list: one scenario only
# The automated comparison (direct vs the gateway's url and command
# upstreams) is crates/intentproof-cli/tests/mcp_2026.rs (conformance_*).
set -euo pipefail
: "${INTENTPROOF_TEST_NODE22:?run ./scripts/test first (it exports INTENTPROOF_TEST_NODE22)}"
[ $# -ge 1 ] || { echo "usage: $0 URL [URL...]" >&2; exit 2; }
case "${SUITE:-alpha-2026}" in
alpha-2026)
	script=${INTENTPROOF_TEST_CONFORMANCE:?run ./scripts/test first (it exports INTENTPROOF_TEST_CONFORMANCE)}
	args=(--spec-version 2026-07-28 --suite all) ;;
alpha-2025)
	script=${INTENTPROOF_TEST_CONFORMANCE:?run ./scripts/test first (it exports INTENTPROOF_TEST_CONFORMANCE)}
	args=(--spec-version 2025-11-25 --suite all) ;;
released)
	script=${INTENTPROOF_TEST_CONFORMANCE_RELEASED:?run ./scripts/test first (it exports INTENTPROOF_TEST_CONFORMANCE_RELEASED)}
	args=(--suite all) ;;
*) echo "$0: SUITE must be alpha-2026, alpha-2025 or released" >&2; exit 2 ;;
esac
if [ -n "${SCENARIO:-}" ]; then
	args=(--scenario "$SCENARIO")
	[ "${SUITE:-alpha-2026}" = alpha-2026 ] && args+=(--spec-version 2026-07-28)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0
for url in "$@"; do
	n=$((n + 1))
	echo "== $url"
	"$INTENTPROOF_TEST_NODE22" "$script" server --url "$url" "${args[@]}" -o "$out/$n" >"$out/$n.log" 2>&1 || true
	if ! ls "$out/$n"/*/checks.json >/dev/null 2>&1; then
		echo "no checks.json; output:" >&2
		cat "$out/$n.log" >&2
		continue
	fi
	"$INTENTPROOF_TEST_NODE22" -e '
		const fs = require("fs"), path = require("path");
		const lines = [];
		for (const dir of fs.readdirSync(process.argv[1])) {
			const file = path.join(process.argv[1], dir, "checks.json");
			if (!fs.existsSync(file)) continue;
			const scenario = dir.replace(/^server-/, "").replace(/-\d{4}-\d\d-\d\dT.*$/, "");
			for (const c of JSON.parse(fs.readFileSync(file, "utf8")))
				lines.push(`${scenario} ${c.id} ${c.status}` + (c.status === "SUCCESS" ? "" : `  # ${c.errorMessage ?? ""}`));
		}
		console.log(lines.sort().join("\n"));' "$out/$n"
done
