"""Shared plumbing for the MCP transcript harness (tests/mcp/*.py).

Connects the official Python `mcp` client (1.x) to a server over stdio or
Streamable HTTP, declares the sampling, elicitation and roots capabilities with
fixed, deterministic answers, records every server->client request and
notification, and normalizes volatile values so that two runs of the same
session print byte-identical canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio

try:
    from mcp import ClientSession, StdioServerParameters, types
    from mcp.client.stdio import stdio_client
    from mcp.shared.context import RequestContext
    from mcp.shared.exceptions import McpError
except ImportError as e:  # pragma: no cover - environment problem
    sys.stderr.write(
        f"tests/mcp: cannot import the Python MCP SDK ({e}); run ./scripts/test once "
        "(it installs `mcp<2` into .ci-deps/venv) and use $INTENTPROOF_TEST_PYTHON\n"
    )
    sys.exit(2)

try:  # mcp >= 1.2x: the non-deprecated name
    from mcp.client.streamable_http import streamable_http_client as _http_client

    _HTTP_NEW_API = True
except ImportError:  # older 1.x
    from mcp.client.streamable_http import streamablehttp_client as _http_client

    _HTTP_NEW_API = False

ROOT_URI = "file:///tmp/intentproof-roots"
ROOT_NAME = "intentproof-roots"
SAMPLING_MODEL = "intentproof-test-model"
CLIENT_NAME = "intentproof-mcp-transcript"
CLIENT_VERSION = "1.0.0"

# Per-step wall-clock bound: a hung proxy must fail the run, not stall it.
STEP_TIMEOUT_S = float(os.environ.get("INTENTPROOF_MCP_STEP_TIMEOUT", "30"))


class HarnessError(Exception):
    """A check failed; the message says which and why."""


# --------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_ISO_TS = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b")
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\s?[AaPp][Mm])?\b")
_DURATION = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|µs|us|ns)\b")
_EPOCH_MS = re.compile(r"\b1[6-9]\d{11}\b")  # 13-digit epoch milliseconds (2020..2033)
LONG_TEXT = 1000  # strings longer than this are replaced by a digest


def normalize_str(s: str) -> str:
    s = _UUID.sub("<uuid>", s)
    s = _ISO_TS.sub("<timestamp>", s)
    s = _CLOCK.sub("<time>", s)
    s = _DURATION.sub("<duration>", s)
    s = _EPOCH_MS.sub("<epoch-ms>", s)
    if len(s) > LONG_TEXT:
        digest = hashlib.sha256(s.encode()).hexdigest()[:16]
        head = s[:48].replace("\n", " ")
        s = f"<text len={len(s)} sha256={digest} head={head}>"
    return s


def normalize(v: Any) -> Any:
    if isinstance(v, str):
        return normalize_str(v)
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [normalize(x) for x in v]
    return v


def dump(model: Any) -> Any:
    """A pydantic model (or plain value) as plain JSON data, without nulls."""
    if hasattr(model, "model_dump"):
        return model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return model


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------
# Client side: fixed answers to server->client requests, and an event log
# --------------------------------------------------------------------------


def _fill_from_schema(prop: dict[str, Any]) -> Any:
    """A deterministic value that satisfies one elicitation schema property."""
    if "default" in prop:
        return prop["default"]
    t = prop.get("type")
    if "enum" in prop:
        return prop["enum"][0]
    if "oneOf" in prop and prop["oneOf"] and "const" in prop["oneOf"][0]:
        return prop["oneOf"][0]["const"]
    if t == "boolean":
        return True
    if t == "integer":
        return int(prop.get("minimum", 1))
    if t == "number":
        return float(prop.get("minimum", 1))
    if t == "array":
        items = prop.get("items", {})
        if "enum" in items:
            return [items["enum"][0]]
        if "anyOf" in items and items["anyOf"] and "const" in items["anyOf"][0]:
            return [items["anyOf"][0]["const"]]
        return []
    fmt = prop.get("format")
    return {
        "email": "tester@example.com",
        "uri": "https://example.com/intentproof",
        "date": "2000-01-01",
        "date-time": "2000-01-01T00:00:00Z",
    }.get(fmt, "IntentProof Tester")


class Recorder:
    """Collects what the server sends on its own initiative, in arrival order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.changed = anyio.Event()

    def add(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)
        self.changed.set()
        self.changed = anyio.Event()

    def drain(self) -> list[dict[str, Any]]:
        out, self.events = self.events, []
        return out

    async def wait_for(self, pred, timeout: float) -> dict[str, Any] | None:
        """Wait until an event matching pred is in the log; return it (or None)."""
        with anyio.move_on_after(timeout):
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                await self.changed.wait()
        return None

    # --- callbacks handed to ClientSession ---

    async def sampling(self, ctx: RequestContext, params: types.CreateMessageRequestParams):
        first = ""
        for m in params.messages:
            if m.role == "user" and getattr(m.content, "type", None) == "text":
                first = m.content.text
                break
        self.add({"server_request": "sampling/createMessage", "params": dump(params)})
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled: {first}"),
            model=SAMPLING_MODEL,
            stopReason="endTurn",
        )

    async def elicitation(self, ctx: RequestContext, params: types.ElicitRequestParams):
        self.add({"server_request": "elicitation/create", "params": dump(params)})
        schema = getattr(params, "requestedSchema", None) or {}
        content = {k: _fill_from_schema(p) for k, p in (schema.get("properties") or {}).items()}
        return types.ElicitResult(action="accept", content=content)

    async def list_roots(self, ctx: RequestContext):
        self.add({"server_request": "roots/list"})
        return types.ListRootsResult(roots=[types.Root(uri=ROOT_URI, name=ROOT_NAME)])

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        # Also seen by message_handler; recorded there so order is preserved.
        return None

    async def message_handler(self, msg: Any) -> None:
        if isinstance(msg, Exception):
            self.add({"transport_exception": f"{type(msg).__name__}: {msg}"})
            return
        if isinstance(msg, types.ServerNotification):
            n = msg.root
            self.add({"notification": n.method, "params": dump(n.params) if n.params is not None else None})
            return
        # An unhandled server->client request (RequestResponder).
        req = getattr(msg, "request", None)
        method = getattr(getattr(req, "root", None), "method", type(msg).__name__)
        self.add({"unhandled_server_request": method})


async def await_initial_roots(rec: Recorder, timeout: float) -> str | None:
    """server-everything asks for roots/list ~350 ms after notifications/initialized
    and then logs 'Roots updated: N root(s)'. Wait for both so that these
    server-initiated messages land in the initialize step, not in a random
    later one. Returns None when both came, else what is missing."""
    got = await rec.wait_for(lambda e: e.get("server_request") == "roots/list", timeout)
    if got is None:
        return f"server sent no roots/list request within {timeout:g}s of initialization"
    log = await rec.wait_for(
        lambda e: e.get("notification") == "notifications/message"
        and "Roots updated" in str((e.get("params") or {}).get("data")),
        timeout,
    )
    if log is None:
        return "server sent no 'Roots updated' log notification after roots/list"
    return None


@asynccontextmanager
async def connect(transport: str, target: list[str], rec: Recorder) -> AsyncIterator[ClientSession]:
    """Open a ClientSession over stdio (target = argv) or Streamable HTTP (target = [url]).

    An exception from the caller's block is re-raised as is (not buried in the
    transport's ExceptionGroup), unless it is the cancellation caused by the
    transport failing, whose error is then raised instead. After a block that completed, a message the
    server sent while the client was closing (BrokenResourceError in the SDK's
    reader task, a known shutdown race) is ignored.
    """
    kwargs = dict(
        sampling_callback=rec.sampling,
        elicitation_callback=rec.elicitation,
        list_roots_callback=rec.list_roots,
        logging_callback=rec.logging,
        message_handler=rec.message_handler,
        client_info=types.Implementation(name=CLIENT_NAME, version=CLIENT_VERSION),
    )
    if transport == "stdio":
        if not target:
            raise HarnessError("stdio mode needs a command after '--'")
        params = StdioServerParameters(command=target[0], args=target[1:], env=dict(os.environ))
        opener = stdio_client(params)
    elif transport == "http":
        if len(target) != 1:
            raise HarnessError("http mode takes exactly one URL")
        opener = _http_client(target[0])
    else:
        raise HarnessError(f"unknown transport {transport!r} (use stdio or http)")

    body_exc: BaseException | None = None
    try:
        async with opener as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write, **kwargs) as session:
                try:
                    yield session
                except BaseException as e:
                    body_exc = e
                    raise
    except BaseException as e:
        # The block was cancelled because the transport died: report the transport's error.
        if body_exc is not None and not isinstance(body_exc, anyio.get_cancelled_exc_class()):
            if e is body_exc:
                raise
            raise body_exc from None
        closing = (anyio.BrokenResourceError, anyio.ClosedResourceError)
        if all(isinstance(x, closing) for x in flatten_exc(e)):
            return
        raise


def parse_target(argv: list[str], prog: str, extra_usage: str = "") -> tuple[str, list[str], list[str]]:
    """Split `[opts] stdio -- cmd args...` / `[opts] http URL`; returns (transport, target, opts)."""
    usage = (
        f"usage: {prog} {extra_usage}stdio -- <command> [args...]\n"
        f"       {prog} {extra_usage}http <url>\n"
    )
    opts: list[str] = []
    i = 0
    while i < len(argv) and argv[i] not in ("stdio", "http"):
        opts.append(argv[i])
        i += 1
    if i >= len(argv):
        sys.stderr.write(usage)
        sys.exit(2)
    transport, rest = argv[i], argv[i + 1 :]
    if transport == "stdio":
        if rest[:1] == ["--"]:
            rest = rest[1:]
        if not rest:
            sys.stderr.write(usage)
            sys.exit(2)
    elif len(rest) != 1:
        sys.stderr.write(usage)
        sys.exit(2)
    return transport, rest, opts


def flatten_exc(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        out: list[BaseException] = []
        for x in e.exceptions:
            out.extend(flatten_exc(x))
        return out
    return [e]


def describe_exc(e: BaseException) -> str:
    parts = []
    for x in flatten_exc(e):
        if isinstance(x, McpError):
            parts.append(f"MCP error {x.error.code}: {x.error.message}")
        else:
            parts.append(f"{type(x).__name__}: {x}")
    return "; ".join(parts) or repr(e)
