#!/usr/bin/env python3
"""A dual-era MCP fixture server on PyPI mcp 2.3.0 (`MCPServer`).

Usage:
  fixture_server.py stdio
  fixture_server.py http PORT      (Streamable HTTP at http://127.0.0.1:PORT/mcp)

Both eras on one endpoint: 2025-11-25 sessions (`initialize`, Mcp-Session-Id)
and 2026-07-28 stateless requests (per-request `_meta`, MCP-Protocol-Version
header). Over HTTP the SDK routes by the MCP-Protocol-Version header; over
stdio the client's first request decides. Prints nothing on stdout in http
mode (callers wait for the port); in stdio mode stdout is the protocol.

Tools (outputs are deterministic; task ids and timestamps are not, and the
client normalizes them):
  echo(text)                 -> text
  ask_name()                 -> "Hello, <name>!"; the name is elicited with
                                Resolve+Elicit: an InputRequiredResult round
                                trip at 2026-07-28, a real elicitation/create
                                request at 2025-11-25
  slow_compute(seconds=0.2)  -> "computed 42"; a task (2026 tasks extension
                                io.modelcontextprotocol/tasks: flat
                                resultType "task" handle, then tasks/get)
                                when the client declared the extension, else
                                a plain result
  always_fails()             -> isError: true result
  where(region)              -> "region <region>"; `region` carries
                                x-mcp-header "Region" (Mcp-Param-Region)
  test_missing_capability()  -> needs the client's sampling capability;
                                without it: -32021 with requiredCapabilities
                                {"sampling": {}} (conformance server-stateless)
Resource fixture://readme (text), prompt greeting(name).
See tests/mcp/README.md ("MCP 2026-07-28").
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import sys
from typing import Annotated, Any

from pydantic import BaseModel, Field

from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.server.mcpserver.resolve import Sample
from mcp.types import CallToolResult, CreateMessageResult, RequestParams, SamplingMessage, TextContent

TASKS = "io.modelcontextprotocol/tasks"  # SEP-2663; the SDK ships no task support itself
TASK_RESULT = {"content": [{"type": "text", "text": "computed 42"}], "isError": False}

_tasks: dict[str, dict[str, Any]] = {}
_task_numbers = itertools.count(1)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class TaskIdParams(RequestParams):
    taskId: str


def _client_declared_tasks(ctx: Any) -> bool:
    caps = getattr(getattr(ctx, "session", None), "client_capabilities", None)
    declared = getattr(caps, "extensions", None) or {}
    return TASKS in declared


class TasksExtension(Extension):
    """Minimal 2026 tasks extension: a `slow_compute` call from a client that
    declared the extension answers a task handle; `tasks/get` polls it (the
    result is inlined once completed)."""

    identifier = TASKS

    def methods(self):
        async def tasks_get(ctx, params: TaskIdParams):
            task = _tasks.get(params.taskId)
            if task is None:
                from mcp.shared.exceptions import MCPError

                raise MCPError(code=-32602, message=f"unknown task {params.taskId}")
            return dict(task)

        return [MethodBinding("tasks/get", TaskIdParams, tasks_get)]

    async def intercept_tool_call(self, params, ctx, call_next):
        if params.name != "slow_compute" or not _client_declared_tasks(ctx):
            return await call_next(ctx)
        task_id = f"task-{next(_task_numbers)}"
        now = _now()
        task = {
            "resultType": "task",
            "taskId": task_id,
            "status": "working",
            "createdAt": now,
            "lastUpdatedAt": now,
            "ttlMs": 60000,
        }
        _tasks[task_id] = task

        async def run() -> None:
            await asyncio.sleep(float((params.arguments or {}).get("seconds", 0.2)))
            task.update(status="completed", lastUpdatedAt=_now(), result=dict(TASK_RESULT))

        asyncio.get_running_loop().create_task(run())
        return dict(task)


mcp = MCPServer(
    "intentproof-mcp2026-fixture",
    version="1.0.0",
    instructions="Fixture server for IntentProof's MCP 2026-07-28 tests.",
    extensions=[TasksExtension()],
)


@mcp.tool(description="Echo the text back")
def echo(text: str) -> str:
    return text


class Answer(BaseModel):
    name: str


def ask_for_name() -> Elicit[Answer]:
    return Elicit("What is your name?", Answer)


@mcp.tool(description="Asks the client for a name (elicitation), then greets")
def ask_name(answer: Annotated[Answer, Resolve(ask_for_name)]) -> str:
    return f"Hello, {answer.name}!"


@mcp.tool(description="Task-capable: a task through the io.modelcontextprotocol/tasks extension when the client declared it")
def slow_compute(seconds: float = 0.2) -> str:
    return "computed 42"  # no task: the same answer, synchronously


@mcp.tool(description="Always answers an isError result")
def always_fails() -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text="this tool always fails")], is_error=True)


@mcp.tool(description="Answers the region it was called for (mirrored into the Mcp-Param-Region header)")
def where(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
    return f"region {region}"


def sample_something() -> Sample:
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text="hi"))], max_tokens=8)


@mcp.tool(description="Needs the client's sampling capability (conformance: -32021 when undeclared)")
def test_missing_capability(sampled: Annotated[CreateMessageResult, Resolve(sample_something)]) -> str:
    return "sampled"


@mcp.resource("fixture://readme", name="readme", description="A fixed text", mime_type="text/plain")
def readme() -> str:
    return "IntentProof MCP 2026 fixture"


@mcp.prompt(description="Greets someone")
def greeting(name: str) -> str:
    return f"Please greet {name}."


def main(argv: list[str]) -> int:
    if argv[:1] == ["stdio"] and len(argv) == 1:
        mcp.run("stdio")
        return 0
    if argv[:1] == ["http"] and len(argv) == 2:
        import uvicorn

        uvicorn.run(mcp.streamable_http_app(), host="127.0.0.1", port=int(argv[1]), log_level="warning")
        return 0
    sys.stderr.write("usage: fixture_server.py stdio | fixture_server.py http PORT\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
