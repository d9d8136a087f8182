#!/usr/bin/env python3
"""Drive a scripted tools/list / tools/call session, e.g. through an IntentProof
MCP gateway in front of rugpull_server.py, and print the transcript.

Usage:
  tool_session.py SCRIPT.json stdio -- <command> [args...]
  tool_session.py SCRIPT.json http <url>

SCRIPT.json is {"steps": [...]}; each step is one of
  {"list": true}
      tools/list, following nextCursor through all pages (each cursor sent
      explicitly). Entry: {"step": "list", "pages": N (requests sent),
      "names": [sorted names over all pages, repeats kept],
      "tools": {name: definition}}. A JSON-RPC error on a page is recorded
      as "error" ({"code", "message", "data"?}) next to what the earlier
      pages gave; it is not fatal.
  {"call": NAME, "arguments": {...}, "progress": true?}
      tools/call (arguments default {}). With "progress", the request asks
      for progress (a progressToken) and the entry lists the notifications
      received: "progress": [{"progress", "message"}]. Entry: {"step": "call",
      "tool": NAME, "ok": bool, "result": ...} or, on a JSON-RPC error,
      {"step": "call", "tool": NAME, "ok": false, "error": {"code", "message", "data"?}}.
      Sent as a plain request: the SDK's ClientSession.call_tool would check
      structuredContent against a cached outputSchema and, for a tool it has
      not listed yet, send a tools/list of its own first, which would add an
      unscripted list to the session.
  {"write": PATH, "json": VALUE}
      write VALUE as JSON to PATH atomically (temp file + os.replace), e.g.
      to change rugpull_server.py's STATE mid-session. Entry: {"step": "write", "path": PATH}.
  {"run": [argv...]}
      run a command (60 s bound, output captured). Entry: {"step": "run",
      "argv": [...], "code": rc, "stdout": ..., "stderr": ...}; a nonzero exit
      is recorded, not fatal.

Steps: initialize; the script's steps in order; ping. What the server sends on
its own initiative is recorded in the step's server_events (list_changed
notifications left out: they race with the steps). Prints the normalized
transcript as canonical JSON on stdout. Exit 1 on a failed check or a broken
session (also a command that cannot be started or outlives its bound), 2 on
bad usage or an unreadable/invalid SCRIPT.json.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
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
    types,
)

PROG = "tool_session.py"
RUN_TIMEOUT_S = 60.0
MAX_PAGES = 1000  # a server that never stops paginating fails the run


def bad_script(path: str, why: str) -> None:
    sys.stderr.write(f"{PROG}: {path}: {why}\n")
    sys.exit(2)


def load_script(path: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        sys.stderr.write(f"{PROG}: cannot read script file {path}: {e}\n")
        sys.exit(2)
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        bad_script(path, 'expected a JSON object {"steps": [...]}')
    steps = data["steps"]
    for i, s in enumerate(steps):
        if not isinstance(s, dict):
            bad_script(path, f"steps[{i}] must be an object (got {s!r})")
        kinds = [k for k in ("list", "call", "write", "run") if k in s]
        if len(kinds) != 1:
            bad_script(path, f"steps[{i}] needs exactly one of list/call/write/run (got {sorted(s)})")
        kind = kinds[0]
        if kind == "list" and s["list"] is not True:
            bad_script(path, f'steps[{i}]: write {{"list": true}}')
        if kind == "call":
            if not isinstance(s["call"], str):
                bad_script(path, f"steps[{i}]: 'call' must be a tool name")
            if not isinstance(s.get("arguments", {}), dict):
                bad_script(path, f"steps[{i}]: 'arguments' must be an object")
        if kind == "write" and (not isinstance(s["write"], str) or "json" not in s):
            bad_script(path, f"steps[{i}]: 'write' needs a path and a 'json' value")
        if kind == "run" and (
            not isinstance(s["run"], list) or not s["run"] or not all(isinstance(a, str) for a in s["run"])
        ):
            bad_script(path, f"steps[{i}]: 'run' must be a non-empty list of strings")
    return steps


def rpc_error(e: McpError) -> dict[str, Any]:
    err = {"code": e.error.code, "message": e.error.message}
    if e.error.data is not None:
        err["data"] = e.error.data
    return err


# ClientSession.list_tools takes params=PaginatedRequestParams in newer 1.x,
# only cursor= (deprecated since) in older ones.
_LIST_TAKES_PARAMS = "params" in inspect.signature(ClientSession.list_tools).parameters


async def list_page(session: ClientSession, cursor: str | None) -> types.ListToolsResult:
    if cursor is None:
        return await session.list_tools()
    if _LIST_TAKES_PARAMS:
        return await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
    return await session.list_tools(cursor=cursor)


async def list_all(session: ClientSession) -> dict[str, Any]:
    pages = 0
    names: list[str] = []
    tools: dict[str, Any] = {}
    cursor: str | None = None
    seen: set[str] = set()
    entry: dict[str, Any] = {}
    while True:
        if pages >= MAX_PAGES:
            raise HarnessError(f"list: still paginating after {MAX_PAGES} pages")
        pages += 1
        try:
            with anyio.fail_after(STEP_TIMEOUT_S):
                r = await list_page(session, cursor)
        except McpError as e:
            entry["error"] = rpc_error(e)
            break
        except TimeoutError:
            raise HarnessError(f"list: page {pages} (cursor {cursor!r}): no answer within {STEP_TIMEOUT_S:g}s") from None
        for t in r.tools:
            names.append(t.name)
            tools[t.name] = dump(t)
        cursor = r.nextCursor
        if cursor is None:
            break
        if cursor in seen:
            raise HarnessError(f"list: the server sent nextCursor {cursor!r} a second time (page {pages})")
        seen.add(cursor)
    return {"step": "list", "pages": pages, "names": sorted(names), "tools": tools, **entry}


async def call(session: ClientSession, tool: str, args: dict[str, Any], progress: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"step": "call", "tool": tool}
    request = types.ClientRequest(types.CallToolRequest(params=types.CallToolRequestParams(name=tool, arguments=args)))
    notices: list[dict[str, Any]] = []

    async def on_progress(progress_value: float, total: float | None, message: str | None) -> None:
        notices.append({"progress": progress_value, "message": message})

    try:
        with anyio.fail_after(STEP_TIMEOUT_S):
            r = await session.send_request(
                request, types.CallToolResult, progress_callback=on_progress if progress else None
            )
        if progress:
            entry["progress"] = notices
    except McpError as e:
        return {**entry, "ok": False, "error": rpc_error(e)}
    except TimeoutError:
        raise HarnessError(f"tools/call {tool}: no answer within {STEP_TIMEOUT_S:g}s") from None
    return {**entry, "ok": not r.isError, "result": dump(r)}


def write_json(path: str, value: Any) -> dict[str, Any]:
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(value, f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        raise HarnessError(f"write {path}: {e}") from None
    return {"step": "write", "path": path}


async def run(argv: list[str]) -> dict[str, Any]:
    def go() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=RUN_TIMEOUT_S,
        )

    try:
        # In a worker thread, so the session keeps answering the server meanwhile.
        p = await anyio.to_thread.run_sync(go)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"run {argv}: still running after {RUN_TIMEOUT_S:g}s") from None
    except OSError as e:
        raise HarnessError(f"run {argv}: cannot start: {e}") from None
    return {"step": "run", "argv": argv, "code": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


async def amain(transport: str, target: list[str], script: list[dict[str, Any]]):
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
        # Not fatal: only keeps the order of server-initiated messages stable.
        missing = await await_initial_roots(rec, 3.0)
        entry = {"step": "initialize", "serverInfo": dump(init.serverInfo), "protocolVersion": init.protocolVersion}
        if missing:
            entry["initial_roots"] = missing
        add(entry)

        for s in script:
            if "list" in s:
                add(await list_all(session))
            elif "call" in s:
                add(await call(session, s["call"], s.get("arguments") or {}, bool(s.get("progress"))))
            elif "write" in s:
                add(write_json(s["write"], s["json"]))
            else:
                add(await run(s["run"]))

        with anyio.fail_after(STEP_TIMEOUT_S):
            await session.send_ping()
        add({"step": "ping"})

    # list_changed notifications race with the steps; keep them out.
    for s in steps:
        ev = [e for e in s.get("server_events", []) if not str(e.get("notification", "")).endswith("/list_changed")]
        if ev:
            s["server_events"] = ev
        else:
            s.pop("server_events", None)
    return {"transcript_version": 1, "steps": steps}


def main(argv: list[str]) -> int:
    transport, target, opts = parse_target(argv, PROG, "SCRIPT.json ")
    unknown = [o for o in opts if o.startswith("-")]
    if unknown:
        sys.stderr.write(f"{PROG}: unknown option {unknown[0]}\n")
        return 2
    if len(opts) != 1:
        sys.stderr.write(f"{PROG}: exactly one SCRIPT.json path is needed before stdio/http\n")
        return 2
    script = load_script(opts[0])  # before anyio.run: its exit 2 must not become a FAIL
    try:
        out = anyio.run(amain, transport, target, script)
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
