#!/usr/bin/env python3
"""A normalized transcript of one fixed session with tests/mcp2026/fixture_server.py,
seen by the PyPI mcp 2.3.0 `Client` at a chosen protocol mode.

Usage:
  transcript.py --mode MODE [--extra-tool NAME]... stdio -- <command> [args...]
  transcript.py --mode MODE [--extra-tool NAME]... http <url>

MODE: 2026-07-28 (pinned: stateless, no handshake), auto (server/discover,
falls back to initialize), or legacy (the 2025-11-25 initialize handshake).

Prints one canonical JSON line (sorted keys) per step: what the client saw
(results and errors), with volatile values replaced by placeholders (task
ids, timestamps). A transparent gateway gives byte-identical output.
Exit 0 with the transcript on stdout; 1 with `transcript.py: FAIL: <step>:
<why>` on stderr when a check fails; 2 on bad usage.

--extra-tool NAME: NAME must be in tools/list (a gateway's own tool, e.g.
intentproof_declare_plan); it is checked, then left out, and nothing else is.
See tests/mcp/README.md ("MCP 2026-07-28").
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Literal

sys.dont_write_bytecode = True

import anyio  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

from mcp.client import Client  # noqa: E402
from mcp.client.extension import ClientExtension, ResultClaim  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402
from mcp import types  # noqa: E402

PROG = "transcript.py"
CLIENT_NAME = "intentproof-mcp2026-transcript"
CLIENT_VERSION = "1.0.0"
TASKS = "io.modelcontextprotocol/tasks"
ELICITED_NAME = "Ada"
STEP_TIMEOUT_S = float(os.environ.get("INTENTPROOF_MCP_STEP_TIMEOUT", "30"))
POLL_S = 0.1

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")


class Fail(Exception):
    pass


# ---- the 2026 tasks extension, client side ----------------------------------


class TaskHandle(types.Result):
    """The flat task handle (SEP-2663) a tools/call may answer."""

    result_type: Literal["task"]
    task_id: str
    status: str
    created_at: str | None = None
    last_updated_at: str | None = None
    ttl_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskIdParams(types.RequestParams):
    task_id: str


class TasksGetRequest(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"


RAW = TypeAdapter(dict[str, Any])


async def _unused_resolve(handle: TaskHandle, ctx: Any) -> types.CallToolResult:
    raise Fail("the transcript polls tasks itself (allow_claimed=True)")


class TasksExtension(ClientExtension):
    """Declares io.modelcontextprotocol/tasks and lets `resultType: "task"` parse."""

    identifier = TASKS

    def claims(self):
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=_unused_resolve)]


# ---- normalization ----------------------------------------------------------


def dump(x: Any) -> Any:
    if hasattr(x, "model_dump"):
        return x.model_dump(mode="json", by_alias=True, exclude_none=True)
    return x


def normalize(x: Any, task_ids: dict[str, str]) -> Any:
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k == "taskId" and isinstance(v, str):
                out[k] = task_ids.setdefault(v, f"<task-id-{len(task_ids) + 1}>")
            else:
                out[k] = normalize(v, task_ids)
        return out
    if isinstance(x, list):
        return [normalize(v, task_ids) for v in x]
    if isinstance(x, str):
        for real, placeholder in task_ids.items():
            x = x.replace(real, placeholder)
        return TIMESTAMP.sub("<timestamp>", x)
    return x


def error_of(e: BaseException) -> dict[str, Any]:
    if isinstance(e, MCPError):
        err = {"code": e.code, "message": e.message}
        if e.data is not None:
            err["data"] = e.data
        return {"error": err}
    return {"exception": type(e).__name__, "message": str(e)}


# ---- the session --------------------------------------------------------------


class Run:
    def __init__(self, client: Client, mode: str, extra_tools: list[str]) -> None:
        self.client = client
        self.session = client.session
        self.mode = mode
        self.extra_tools = extra_tools
        self.task_ids: dict[str, str] = {}
        self.elicitations: list[dict[str, Any]] = []

    def emit(self, entry: dict[str, Any]) -> None:
        line = json.dumps(normalize(entry, self.task_ids), sort_keys=True, ensure_ascii=False)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def step(self, name: str, fn) -> None:
        try:
            with anyio.fail_after(STEP_TIMEOUT_S):
                body = await fn()
        except Fail as e:
            raise Fail(f"step {name}: {e}") from None
        except TimeoutError:
            raise Fail(f"step {name}: no answer within {STEP_TIMEOUT_S:g}s") from None
        entry = {"step": name, **body}
        if self.elicitations:
            entry["elicitations"] = self.elicitations
            self.elicitations = []
        self.emit(entry)

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """tools/call through the Client (drives InputRequiredResult rounds); result or error."""
        try:
            return {"result": dump(await self.client.call_tool(tool, args))}
        except MCPError as e:
            return error_of(e)


async def drive(client: Client, mode: str, extra_tools: list[str], rec: dict[str, Any]) -> None:
    run = Run(client, mode, extra_tools)
    rec["run"] = run
    s = client.session

    async def connected():
        caps = s.server_capabilities
        return {
            "protocolVersion": s.protocol_version,
            "serverInfo": dump(s.server_info),
            "capabilities": dump(caps),
            "instructions": s.instructions,
        }

    await run.step("connect", connected)

    if mode != "legacy":

        async def discover():
            try:
                return {"result": await s.send_discover("2026-07-28")}
            except MCPError as e:
                return error_of(e)

        await run.step("server/discover", discover)

    async def list_tools():
        tools, cursor = [], None
        while True:
            page = await s.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise Fail(f"duplicate tool names in tools/list: {sorted(names)}")
        for t in extra_tools:
            if t not in names:
                raise Fail(f"expected extra tool {t!r} is not in tools/list ({sorted(names)})")
        kept = sorted((t for t in tools if t.name not in extra_tools), key=lambda t: t.name)
        return {"names": [t.name for t in kept], "tools": [dump(t) for t in kept]}

    await run.step("tools/list", list_tools)

    async def echo():
        r = await run.call("echo", {"text": "hello"})
        if r.get("result", {}).get("content") != [{"type": "text", "text": "hello"}]:
            raise Fail(f"unexpected echo result {r}")
        return r

    await run.step("tools/call echo", echo)

    async def ask_name():
        r = await run.call("ask_name", {})
        want = f"Hello, {ELICITED_NAME}!"
        if (r.get("result", {}).get("content") or [{}])[0].get("text") != want:
            raise Fail(f"unexpected ask_name result {r}")
        if len(run.elicitations) != 1:
            raise Fail(f"expected one elicitation, got {run.elicitations}")
        return r

    await run.step("tools/call ask_name", ask_name)

    async def always_fails():
        r = await run.call("always_fails", {})
        if r.get("result", {}).get("isError") is not True:
            raise Fail(f"expected an isError result, got {r}")
        return r

    await run.step("tools/call always_fails", always_fails)

    async def where():
        r = await run.call("where", {"region": "eu-west-1"})
        if (r.get("result", {}).get("content") or [{}])[0].get("text") != "region eu-west-1":
            raise Fail(f"unexpected where result {r}")
        return r

    await run.step("tools/call where", where)

    async def slow_compute():
        try:
            first = await s.call_tool("slow_compute", {"seconds": 0.2}, allow_claimed=True)
        except MCPError as e:
            return error_of(e)
        out: dict[str, Any] = {"result": dump(first)}
        if not isinstance(first, TaskHandle):
            return out  # no task (the tasks extension is not declared at 2025-11-25)
        polls = 0
        while True:
            await anyio.sleep(POLL_S)
            polls += 1
            try:
                got = await s.send_request(
                    TasksGetRequest(params=TaskIdParams(task_id=first.task_id)), RAW
                )
            except MCPError as e:
                out["tasks/get"] = error_of(e)
                return out
            if got.get("status") != "working":
                out["tasks/get"] = {"result": got}
                if got.get("status") != "completed":
                    raise Fail(f"task ended {got.get('status')}: {got}")
                return out
            if polls > 200:
                raise Fail(f"task still working after {polls} polls")

    await run.step("task slow_compute", slow_compute)

    async def resources():
        listed = await s.list_resources()
        uris = [str(r.uri) for r in listed.resources]
        read = await s.read_resource("fixture://readme")
        return {"listed": dump(listed), "uris": uris, "read": dump(read)}

    await run.step("resources/list+read", resources)

    async def prompts():
        listed = await s.list_prompts()
        got = await s.get_prompt("greeting", {"name": "Ada"})
        return {"listed": dump(listed), "result": dump(got)}

    await run.step("prompts/list+get", prompts)

    async def unknown_tool():
        return await run.call("no_such_tool", {})

    await run.step("tools/call no_such_tool", unknown_tool)

    async def missing_resource():
        try:
            return {"result": dump(await s.read_resource("fixture://missing"))}
        except MCPError as e:
            return error_of(e)

    await run.step("resources/read fixture://missing", missing_resource)


async def amain(mode: str, transport: str, target: list[str], extra_tools: list[str]) -> None:
    rec: dict[str, Any] = {}

    async def on_elicit(context, params):
        run = rec.get("run")
        if run is not None:
            run.elicitations.append(dump(params))
        return types.ElicitResult(action="accept", content={"name": ELICITED_NAME})

    if transport == "stdio":
        server: Any = StdioServerParameters(command=target[0], args=target[1:], env=dict(os.environ))
    else:
        server = target[0]
    client = Client(
        server,
        mode=mode,
        elicitation_callback=on_elicit,
        client_info=types.Implementation(name=CLIENT_NAME, version=CLIENT_VERSION),
        extensions=[TasksExtension()],
        cache=None,  # every step reaches the server (and the gateway)
    )
    # One bound for the whole session (each step has its own, inside).
    with anyio.fail_after(STEP_TIMEOUT_S * 12):
        async with client:
            await drive(client, mode, extra_tools, rec)


def main(argv: list[str]) -> int:
    usage = (
        f"usage: {PROG} --mode 2026-07-28|auto|legacy [--extra-tool NAME]... stdio -- <command> [args...]\n"
        f"       {PROG} --mode 2026-07-28|auto|legacy [--extra-tool NAME]... http <url>\n"
    )
    mode = None
    extra: list[str] = []
    i = 0
    while i < len(argv) and argv[i] not in ("stdio", "http"):
        o = argv[i]
        if o in ("--mode", "--extra-tool") and i + 1 < len(argv):
            if o == "--mode":
                mode = argv[i + 1]
            else:
                extra.append(argv[i + 1])
            i += 2
        elif o.startswith("--mode="):
            mode, i = o.split("=", 1)[1], i + 1
        elif o.startswith("--extra-tool="):
            extra.append(o.split("=", 1)[1])
            i += 1
        else:
            sys.stderr.write(f"{PROG}: unknown option {o}\n{usage}")
            return 2
    if mode is None or i >= len(argv):
        sys.stderr.write(usage)
        return 2
    transport, rest = argv[i], argv[i + 1 :]
    if transport == "stdio" and rest[:1] == ["--"]:
        rest = rest[1:]
    if not rest or (transport == "http" and len(rest) != 1):
        sys.stderr.write(usage)
        return 2
    try:
        anyio.run(amain, mode, transport, rest, extra)
    except Fail as e:
        sys.stderr.write(f"{PROG}: FAIL: {e}\n")
        return 1
    except BaseException as e:  # noqa: BLE001 - report anything, exit non-zero
        parts = []
        stack = [e]
        while stack:
            x = stack.pop()
            if isinstance(x, BaseExceptionGroup):
                stack.extend(x.exceptions)
            else:
                parts.append(f"{type(x).__name__}: {x}")
        sys.stderr.write(f"{PROG}: FAIL: {'; '.join(parts)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
