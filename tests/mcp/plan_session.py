#!/usr/bin/env python3
"""Declare a plan through an IntentProof MCP gateway, then make the planned calls.

Usage:
  plan_session.py [--require-ok] [--declare-tool NAME] PLAN.json stdio -- <command> [args...]
  plan_session.py [--require-ok] [--declare-tool NAME] PLAN.json http <url>

PLAN.json is either the declare arguments themselves
  {"intent": "...", "steps": [{"tool": "echo", "purpose": "..."}, ...]}
or an object with them under "plan" and the calls to make afterwards:
  {"plan": {"intent": ..., "steps": [...]},
   "calls": [{"tool": "echo", "arguments": {"message": "hello"}}, ...]}

Steps: initialize; tools/list (the declare tool, default intentproof_declare_plan,
must be listed: only a gateway adds it); tools/call of the declare tool with
the plan; then each call in order. Results and errors (isError results and
JSON-RPC errors alike) are recorded, not fatal, so a gateway's refusals can be
asserted on; with --require-ok any error exits 1. Prints the normalized
transcript as canonical JSON on stdout. Exit 1 on a failed check or a broken
session, 2 on bad usage or an unreadable PLAN.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # keep tests/mcp/__pycache__ out of the work tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio  # noqa: E402

from _harness import (  # noqa: E402
    await_initial_roots,
    STEP_TIMEOUT_S,
    ClientSession,
    HarnessError,
    McpError,
    Recorder,
    canonical,
    connect,
    describe_exc,
    dump,
    flatten_exc,
    normalize,
    parse_target,
)

PROG = "plan_session.py"
DEFAULT_DECLARE_TOOL = "intentproof_declare_plan"


def load_plan(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        sys.stderr.write(f"{PROG}: cannot read plan file {path}: {e}\n")
        sys.exit(2)
    if not isinstance(data, dict):
        sys.stderr.write(f"{PROG}: {path}: expected a JSON object\n")
        sys.exit(2)
    if "plan" in data:
        plan, calls = data["plan"], data.get("calls", [])
    else:
        plan, calls = data, []
    if not isinstance(plan, dict) or not isinstance(calls, list):
        sys.stderr.write(f"{PROG}: {path}: 'plan' must be an object and 'calls' a list\n")
        sys.exit(2)
    for c in calls:
        if not isinstance(c, dict) or not isinstance(c.get("tool"), str):
            sys.stderr.write(f"{PROG}: {path}: each call needs a string 'tool' (got {c!r})\n")
            sys.exit(2)
    return plan, calls


async def call_recorded(session: ClientSession, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        with anyio.fail_after(STEP_TIMEOUT_S):
            r = await session.call_tool(tool, args)
    except McpError as e:
        err = {"code": e.error.code, "message": e.error.message}
        if e.error.data is not None:
            err["data"] = e.error.data
        return {"ok": False, "error": err}
    except TimeoutError:
        raise HarnessError(f"tools/call {tool}: no answer within {STEP_TIMEOUT_S:g}s") from None
    return {"ok": not r.isError, "result": dump(r)}


async def amain(transport: str, target: list[str], plan_path: str, declare_tool: str, require_ok: bool):
    plan, calls = load_plan(plan_path)
    rec = Recorder()
    steps: list[dict[str, Any]] = []

    def add(entry: dict[str, Any]) -> None:
        events = rec.drain()
        if events:
            entry["server_events"] = events
        steps.append(entry)

    async with connect(transport, target, rec) as session:
        with anyio.fail_after(STEP_TIMEOUT_S):
            init = await session.initialize()
        # Not fatal here (transcript.py checks it): only keeps the order stable.
        missing = await await_initial_roots(rec, 3.0)
        entry = {"step": "initialize", "serverInfo": dump(init.serverInfo), "protocolVersion": init.protocolVersion}
        if missing:
            entry["initial_roots"] = missing
        add(entry)

        with anyio.fail_after(STEP_TIMEOUT_S):
            tools = (await session.list_tools()).tools
        declare = next((t for t in tools if t.name == declare_tool), None)
        if declare is None:
            raise HarnessError(
                f"{declare_tool!r} is not in tools/list (is this the gateway, not the bare server?); "
                f"tools: {sorted(t.name for t in tools)}"
            )
        add({"step": "tools/list", "names": sorted(t.name for t in tools), "declare_tool": dump(declare)})

        entry = {"step": f"tools/call {declare_tool}", "arguments": plan, **await call_recorded(session, declare_tool, plan)}
        add(entry)
        failures = [] if entry["ok"] else [entry["step"]]

        for i, c in enumerate(calls):
            args = c.get("arguments") or {}
            entry = {"step": f"tools/call {c['tool']}", "index": i, "arguments": args}
            entry.update(await call_recorded(session, c["tool"], args))
            add(entry)
            if not entry["ok"]:
                failures.append(f"#{i} {c['tool']}")

        with anyio.fail_after(STEP_TIMEOUT_S):
            await session.send_ping()
        add({"step": "ping"})

    if require_ok and failures:
        raise HarnessError(f"--require-ok: these calls failed: {failures}")
    # list_changed notifications race with the steps; keep them out.
    for s in steps:
        ev = [e for e in s.get("server_events", []) if not str(e.get("notification", "")).endswith("/list_changed")]
        if ev:
            s["server_events"] = ev
        else:
            s.pop("server_events", None)
    return {"transcript_version": 1, "steps": steps}


def main(argv: list[str]) -> int:
    transport, target, opts = parse_target(argv, PROG, "[--require-ok] [--declare-tool NAME] PLAN.json ")
    require_ok = False
    declare_tool = DEFAULT_DECLARE_TOOL
    positional: list[str] = []
    it = iter(opts)
    for o in it:
        if o == "--require-ok":
            require_ok = True
        elif o == "--declare-tool":
            declare_tool = next(it, DEFAULT_DECLARE_TOOL)
        elif o.startswith("-"):
            sys.stderr.write(f"{PROG}: unknown option {o}\n")
            return 2
        else:
            positional.append(o)
    if len(positional) != 1:
        sys.stderr.write(f"{PROG}: exactly one PLAN.json path is needed before stdio/http\n")
        return 2
    try:
        out = anyio.run(amain, transport, target, positional[0], declare_tool, require_ok)
    except HarnessError as e:
        sys.stderr.write(f"{PROG}: FAIL: {e}\n")
        return 1
    except BaseException as e:  # noqa: BLE001
        inner = [x for x in flatten_exc(e) if isinstance(x, HarnessError)]
        sys.stderr.write(f"{PROG}: FAIL: {inner[0] if inner else describe_exc(e)}\n")
        return 1
    sys.stdout.write(canonical(normalize(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
