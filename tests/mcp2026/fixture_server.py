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

The conformance suite's server scenarios (npm @modelcontextprotocol/conformance:
the released 0.1.16 at 2025-11-25, the 0.2.0-alpha.12 at 2026-07-28) call
fixtures by name; this server has its own implementations of them (section
CONFORMANCE FIXTURES below): tools test_simple_text, test_image_content,
test_audio_content, test_embedded_resource, test_multiple_content_types,
test_error_handling, test_tool_with_progress, test_tool_with_logging,
test_logging_tool, test_sampling, test_elicitation,
test_elicitation_sep1034_defaults, test_elicitation_sep1330_enums,
test_reconnection, json_schema_2020_12_tool, test_trigger_tool_change,
test_trigger_prompt_change, test_input_required_result_* (multi-round
InputRequiredResult at 2026-07-28); resources test://static-text,
test://static-binary, test://watched-resource, template
test://template/{id}/data; prompts test_simple_prompt,
test_prompt_with_arguments (with completion), test_prompt_with_embedded_resource,
test_prompt_with_image, test_input_required_result_prompt; logging/setLevel and
resources/subscribe|unsubscribe at 2025-11-25. Over HTTP the 2025 transport
has an in-memory event store (SSE event ids, a priming event, `retry:`,
resumption with Last-Event-ID), so server-sse-polling can be exercised.
See tests/mcp/README.md ("MCP 2026-07-28").
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import itertools
import json
import struct
import sys
import warnings
import wave
import zlib
from typing import Annotated, Any

from pydantic import BaseModel, Field

from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.server.mcpserver.resolve import Sample
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.types import (
    AudioContent,
    CallToolResult,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    RequestParams,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)

# The conformance fixtures use the 2025-11-25 server->client surface (logging,
# sampling, elicitation), which 2.3.0 marks deprecated; the warnings would only
# clutter stderr.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*deprecated.*")

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


# ---- CONFORMANCE FIXTURES ----------------------------------------------------------
# What the conformance suite's server scenarios call, by the names and shapes
# their descriptions ask for. Deterministic except where noted.


def _png_1x1_red() -> bytes:
    """A valid 1x1 red RGB PNG, built here (no binary blob in the tree)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    """10 ms of 8 kHz mono 16-bit silence as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)
    return out.getvalue()


PNG_B64 = base64.b64encode(_png_1x1_red()).decode()
WAV_B64 = base64.b64encode(_wav_silence()).decode()
SSE_RETRY_MS = 500


def _image() -> ImageContent:
    return ImageContent(type="image", data=PNG_B64, mime_type="image/png")


class MemoryEventStore(EventStore):
    """In-memory SSE event store for the 2025-11-25 HTTP transport: event ids,
    the priming event, and replay after Last-Event-ID (server-sse-polling).
    Bounded: the oldest events are forgotten past MAX_EVENTS."""

    MAX_EVENTS = 10_000

    def __init__(self) -> None:
        self._events: list[tuple[str, str, Any]] = []  # (event id, stream id, message or None)
        self._next = itertools.count(1)

    async def store_event(self, stream_id, message):
        event_id = f"e{next(self._next)}"
        self._events.append((event_id, stream_id, message))
        del self._events[: max(0, len(self._events) - self.MAX_EVENTS)]
        return event_id

    async def replay_events_after(self, last_event_id, send_callback: EventCallback):
        ids = [e[0] for e in self._events]
        if last_event_id not in ids:
            return None
        index = ids.index(last_event_id)
        stream_id = self._events[index][1]
        for event_id, stream, message in self._events[index + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


# -- content tools --


@mcp.tool(description="Returns a simple text content block")
def test_simple_text() -> str:
    return "This is a simple text response for testing."


@mcp.tool(description="Returns an image content block (a 1x1 red PNG)")
def test_image_content() -> CallToolResult:
    return CallToolResult(content=[_image()])


@mcp.tool(description="Returns an audio content block (a short silent WAV)")
def test_audio_content() -> CallToolResult:
    return CallToolResult(content=[AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")])


@mcp.tool(description="Returns an embedded text resource")
def test_embedded_resource() -> CallToolResult:
    resource = TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return CallToolResult(content=[EmbeddedResource(type="resource", resource=resource)])


@mcp.tool(description="Returns text, image and an embedded resource together")
def test_multiple_content_types() -> CallToolResult:
    resource = TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
    )
    return CallToolResult(
        content=[
            TextContent(type="text", text="Multiple content types test:"),
            _image(),
            EmbeddedResource(type="resource", resource=resource),
        ]
    )


@mcp.tool(description="Always answers an isError result")
def test_error_handling() -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text="This tool intentionally returns an error for testing")],
        is_error=True,
    )


@mcp.tool(description="Reports progress 0, 50, 100 of 100 (when the request carries a progress token)")
async def test_tool_with_progress(ctx: Context) -> str:
    for step, progress in enumerate((0, 50, 100)):
        if step:
            await asyncio.sleep(0.05)
        await ctx.report_progress(progress, 100)
    return "Progress test completed"


@mcp.tool(description="Sends three info log messages while it runs")
async def test_tool_with_logging(ctx: Context) -> str:
    for step, text in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if step:
            await asyncio.sleep(0.05)
        await ctx.info(text)
    return "Logging test completed"


@mcp.tool(description="Logs one info message (sent only when the request asked for logs)")
async def test_logging_tool(ctx: Context) -> str:
    await ctx.info("test_logging_tool ran")
    return "logged"


# -- server->client requests inside a call (2025-11-25 sessions) --


@mcp.tool(description="Asks the client's LLM (sampling/createMessage) and returns its answer")
async def test_sampling(prompt: str, ctx: Context) -> str:
    result = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    content = result.content
    text = content.text if isinstance(content, TextContent) else json.dumps(result.model_dump(mode="json"))
    return f"LLM response: {text}"


async def _elicit_raw(ctx: Context, message: str, schema: dict[str, Any]) -> ElicitResult:
    return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)


@mcp.tool(description="Asks the user (elicitation/create) for a username and an email")
async def test_elicitation(message: str, ctx: Context) -> str:
    result = await _elicit_raw(
        ctx,
        message,
        {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        },
    )
    return f"User response: action={result.action}, content={json.dumps(result.content, sort_keys=True)}"


@mcp.tool(description="Elicitation whose schema has a default for every primitive type (SEP-1034)")
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    result = await _elicit_raw(
        ctx,
        "Please review these values",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "default": True},
            },
        },
    )
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content, sort_keys=True)}"


@mcp.tool(description="Elicitation with the five enum schema variants (SEP-1330)")
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    result = await _elicit_raw(
        ctx,
        "Pick some options",
        {
            "type": "object",
            "properties": {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {
                    "type": "string",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                "titledMulti": {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"},
                        ]
                    },
                },
            },
        },
    )
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content, sort_keys=True)}"


@mcp.tool(description="Closes its SSE response stream mid-call (the client resumes with Last-Event-ID), then answers")
async def test_reconnection(ctx: Context) -> str:
    await asyncio.sleep(0.1)
    await ctx.close_sse_stream()  # a no-op without an event store (stdio)
    await asyncio.sleep(0.3)
    return "Reconnection test completed successfully"


# -- a JSON Schema 2020-12 input schema, kept verbatim in tools/list --

JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, Any] | None = None,
    contactMethod: str | None = None,  # noqa: N803 (the schema's spelling)
    phone: str | None = None,
    email: str | None = None,
) -> str:
    return f"contact {name or 'anonymous'} by {contactMethod or ('phone' if phone else 'email')}"


mcp.add_tool(json_schema_2020_12_tool, description="Tool with JSON Schema 2020-12 features")
# The advertised schema is the 2020-12 one (pydantic would derive a plainer one).
mcp._tool_manager.get_tool("json_schema_2020_12_tool").parameters = JSON_SCHEMA_2020_12


# -- list changes announced on subscriptions/listen streams (2026-07-28) --


def _dynamic_tool() -> str:
    return "here for a moment"


@mcp.tool(description="Adds and removes a tool, announcing each change (tools list_changed)")
async def test_trigger_tool_change(ctx: Context) -> str:
    mcp.add_tool(_dynamic_tool, name="test_dynamic_tool", description="Exists only inside test_trigger_tool_change")
    await ctx.notify_tools_changed()
    mcp.remove_tool("test_dynamic_tool")
    await ctx.notify_tools_changed()
    return "tool list changed twice (added and removed test_dynamic_tool)"


@mcp.tool(description="Adds and removes a prompt, announcing each change (prompts list_changed)")
async def test_trigger_prompt_change(ctx: Context) -> str:
    from mcp.server.mcpserver.prompts.base import Prompt

    mcp.add_prompt(Prompt.from_function(lambda: "a moment", name="test_dynamic_prompt", description="Transient"))
    await ctx.notify_prompts_changed()
    mcp.remove_prompt("test_dynamic_prompt")
    await ctx.notify_prompts_changed()
    return "prompt list changed twice (added and removed test_dynamic_prompt)"


# -- multi-round requests: InputRequiredResult (2026-07-28, SEP-2322) --


def _ask(message: str, properties: dict[str, Any]) -> ElicitRequest:
    schema = {"type": "object", "properties": properties, "required": sorted(properties)}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample(text: str, max_tokens: int) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=text))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=max_tokens))


def _responses(ctx: Context) -> dict[str, Any]:
    return dict(ctx.input_responses or {})


def _accepted(response: Any, field: str) -> Any:
    if isinstance(response, ElicitResult) and response.action == "accept" and response.content:
        return response.content.get(field)
    return None


def _sampled_text(response: Any) -> str:
    content = getattr(response, "content", None)
    return content.text if isinstance(content, TextContent) else "(no text)"


@mcp.tool(description="MRTR: elicits user_name, then greets")
def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    name = _accepted(_responses(ctx).get("user_name"), "name")
    if name is None:
        return InputRequiredResult(input_requests={"user_name": _ask("What is your name?", {"name": {"type": "string"}})})
    return f"Hello, {name}!"


@mcp.tool(description="MRTR: samples capital_question, then answers with the sampled text")
def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    answer = _responses(ctx).get("capital_question")
    if answer is None:
        return InputRequiredResult(input_requests={"capital_question": _sample("What is the capital of France?", 100)})
    return f"Sampled: {_sampled_text(answer)}"


@mcp.tool(description="MRTR: asks for the client's roots, then lists them")
def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    roots = _responses(ctx).get("client_roots")
    if not isinstance(roots, ListRootsResult):
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})
    return "Roots: " + ", ".join(str(root.uri) for root in roots.roots)


@mcp.tool(description="MRTR: round trips a requestState and checks it on the retry")
def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    confirm = _responses(ctx).get("confirm")
    if confirm is None:
        return InputRequiredResult(
            input_requests={"confirm": _ask("Please confirm", {"ok": {"type": "boolean"}})},
            request_state="request-state:awaiting-confirm",
        )
    if ctx.request_state != "request-state:awaiting-confirm":
        raise MCPError(code=-32602, message=f"unexpected requestState {ctx.request_state!r}")
    return f"state-ok (confirmed: {_accepted(confirm, 'ok')})"


@mcp.tool(description="MRTR: elicitation, sampling and roots/list in one round")
def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    responses = _responses(ctx)
    wanted = {
        "user_name": _ask("What is your name?", {"name": {"type": "string"}}),
        "greeting": _sample("Generate a greeting", 50),
        "client_roots": ListRootsRequest(),
    }
    missing = {key: request for key, request in wanted.items() if key not in responses}
    if missing:
        return InputRequiredResult(input_requests=missing, request_state="multiple-inputs:1")
    roots = responses["client_roots"]
    count = len(roots.roots) if isinstance(roots, ListRootsResult) else 0
    return f"{_sampled_text(responses['greeting'])} {_accepted(responses['user_name'], 'name')} ({count} roots)"


@mcp.tool(description="MRTR over three rounds with a requestState that changes each round")
def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    responses, state = _responses(ctx), ctx.request_state or ""
    if "step2" in responses and state.startswith("multi-round:2:"):
        name = state.removeprefix("multi-round:2:")
        return f"{name} likes {_accepted(responses['step2'], 'color')}"
    if "step1" in responses and state == "multi-round:1":
        name = _accepted(responses["step1"], "name") or "someone"
        return InputRequiredResult(
            input_requests={"step2": _ask("Step 2: What is your favorite color?", {"color": {"type": "string"}})},
            request_state=f"multi-round:2:{name}",
        )
    return InputRequiredResult(
        input_requests={"step1": _ask("Step 1: What is your name?", {"name": {"type": "string"}})},
        request_state="multi-round:1",
    )


@mcp.tool(description="MRTR with an integrity-protected requestState (a tampered one is refused)")
def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    if ctx.request_state == "tamper-check:1" and "confirm" in _responses(ctx):
        return "state verified"
    return InputRequiredResult(
        input_requests={"confirm": _ask("Please confirm", {"ok": {"type": "boolean"}})},
        request_state="tamper-check:1",
    )


@mcp.tool(description="MRTR asking only for what the client declared (sampling, elicitation, roots)")
def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
    caps = ctx.client_capabilities
    responses = _responses(ctx)
    wanted: dict[str, Any] = {}
    if caps is not None and caps.sampling is not None:
        wanted["sample"] = _sample("Say hello", 20)
    if caps is not None and caps.elicitation is not None:
        wanted["ask"] = _ask("What is your name?", {"name": {"type": "string"}})
    if caps is not None and caps.roots is not None:
        wanted["roots"] = ListRootsRequest()
    missing = {key: request for key, request in wanted.items() if key not in responses}
    if missing:
        return InputRequiredResult(input_requests=missing)
    return f"answered: {sorted(wanted)}"


# -- resources --


@mcp.resource("test://static-text", name="static-text", description="A static text resource", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@mcp.resource("test://static-binary", name="static-binary", description="A static PNG", mime_type="image/png")
def static_binary() -> bytes:
    return base64.b64decode(PNG_B64)


@mcp.resource("test://watched-resource", name="watched-resource", description="For subscriptions", mime_type="text/plain")
def watched_resource() -> str:
    return "watched"


@mcp.resource(
    "test://template/{id}/data", name="template-data", description="Data for an id", mime_type="application/json"
)
def template_data(id: str) -> str:  # noqa: A002 (the template's variable)
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))


# -- prompts --


@mcp.prompt(description="A prompt without arguments")
def test_simple_prompt() -> str:
    return "This is a simple prompt for testing."


@mcp.prompt(description="A prompt with two arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@mcp.prompt(description="A prompt embedding the resource it is given")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:  # noqa: N803 (the argument's spelling)
    resource = TextResourceContents(uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing.")
    return [
        UserMessage(EmbeddedResource(type="resource", resource=resource)),
        UserMessage("Please process the embedded resource above."),
    ]


@mcp.prompt(description="A prompt with an image")
def test_prompt_with_image() -> list[Message]:
    return [UserMessage(_image()), UserMessage("Please analyze the image above.")]


@mcp.prompt(description="MRTR on prompts/get: elicits the context first")
def test_input_required_result_prompt(ctx: Context) -> str | InputRequiredResult:
    context = _accepted(_responses(ctx).get("user_context"), "context")
    if context is None:
        return InputRequiredResult(
            input_requests={"user_context": _ask("What context should the prompt use?", {"context": {"type": "string"}})}
        )
    return f"Use this context: {context}"


CITIES = ["paris", "park", "party"]


@mcp.completion()
async def complete(ref, argument, context):
    from mcp.types import Completion

    if getattr(ref, "name", None) == "test_prompt_with_arguments":
        values = [v for v in CITIES if v.startswith(argument.value)]
        return Completion(values=values, total=len(values), has_more=False)
    return None


# -- 2025-11-25 only: logging level and resource subscriptions --

_log_level: dict[str, str] = {}
_subscribed: set[str] = set()


async def _set_level(ctx, params: SetLevelRequestParams) -> EmptyResult:
    _log_level["level"] = params.level
    return EmptyResult()


async def _subscribe(ctx, params: SubscribeRequestParams) -> EmptyResult:
    _subscribed.add(str(params.uri))
    return EmptyResult()


async def _unsubscribe(ctx, params: UnsubscribeRequestParams) -> EmptyResult:
    _subscribed.discard(str(params.uri))
    return EmptyResult()


mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)
mcp._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
mcp._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _unsubscribe)


def main(argv: list[str]) -> int:
    if argv[:1] == ["stdio"] and len(argv) == 1:
        mcp.run("stdio")
        return 0
    if argv[:1] == ["http"] and len(argv) == 2:
        import uvicorn

        app = mcp.streamable_http_app(event_store=MemoryEventStore(), retry_interval=SSE_RETRY_MS)
        uvicorn.run(app, host="127.0.0.1", port=int(argv[1]), log_level="warning")
        return 0
    sys.stderr.write("usage: fixture_server.py stdio | fixture_server.py http PORT\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
