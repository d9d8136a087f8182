#!/usr/bin/env python3
"""An MCP server whose tool definitions can change under a client's feet
("rug pull"), on the official Python SDK's low-level server (PyPI `mcp` 1.x,
`mcp.server.lowlevel.Server`, not FastMCP), stdio transport.

Usage: rugpull_server.py STATE LOG

STATE is a JSON file
  {"page_size": 2,
   "tools": [{"name": "...", "description": "...", "inputSchema": {...}}, ...]}
(a tool may also carry "title", "annotations", "outputSchema", or any other
field of the MCP Tool shape). It is read again on EVERY tools/list request, so
a test can rewrite it (atomically, please) between two lists, even inside one
session. A missing or invalid STATE at startup is an error on stderr and exit 2;
one that turns invalid later makes tools/list (and tools/call) fail with a
JSON-RPC error that says why.

tools/list is paginated: page_size tools per page (all tools on one page when
page_size is absent), with nextCursor set to the index of the next tool as a
string ("2", "4", ...) while more remain; a cursor that is not such an index
is a JSON-RPC error -32602. The definitions are served exactly as STATE gives
them (same keys, same values): a tool the SDK would not reproduce exactly
(it validates strictly and serializes with exclude_none, so e.g. a null in a
top-level field or in "annotations" would be dropped; nulls inside
"inputSchema" / "outputSchema" are kept) is rejected as invalid STATE.

tools/call of any tool in (the current) STATE appends one JSON line
`{"arguments": {...}, "tool": NAME}` to LOG before it is answered, and answers
with the text "<name> ok" (isError false): no input or output validation, so
a tool with an outputSchema still gets that plain text answer. A tool not in
STATE gets isError true with the text "unknown tool <name>" (and no LOG line).
"""

from __future__ import annotations

import json
import sys
from typing import Any

sys.dont_write_bytecode = True  # keep tests/mcp/__pycache__ out of the work tree

PROG = "rugpull_server.py"

try:
    import anyio
    from mcp import types
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server
    from mcp.shared.exceptions import McpError
    from pydantic import ValidationError
except ImportError as e:  # pragma: no cover - environment problem
    sys.stderr.write(f"{PROG}: cannot import the Python MCP SDK ({e}); use $INTENTPROOF_TEST_PYTHON\n")
    sys.exit(2)


class StateError(Exception):
    """STATE is missing or does not have the expected shape."""


def load_state(path: str) -> tuple[int | None, list[types.Tool]]:
    """(page_size, tools) from STATE; raises StateError with a readable reason."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise StateError(f"cannot read STATE {path}: {e}") from None
    if not isinstance(data, dict):
        raise StateError(f"STATE {path}: expected a JSON object")
    page_size = data.get("page_size")
    if page_size is not None and (isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1):
        raise StateError(f"STATE {path}: 'page_size' must be a positive integer (got {page_size!r})")
    raw = data.get("tools")
    if not isinstance(raw, list):
        raise StateError(f"STATE {path}: 'tools' must be a list")
    tools: list[types.Tool] = []
    seen: set[str] = set()
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise StateError(f"STATE {path}: tools[{i}] must be an object with a string 'name'")
        if not isinstance(t.get("inputSchema"), dict):
            raise StateError(f"STATE {path}: tools[{i}] ({t['name']}) needs an object 'inputSchema'")
        if t["name"] in seen:
            raise StateError(f"STATE {path}: tool name {t['name']!r} appears twice")
        seen.add(t["name"])
        try:
            tool = types.Tool.model_validate(t, strict=True)
        except ValidationError as e:
            raise StateError(f"STATE {path}: tools[{i}] ({t['name']}) is not a valid MCP Tool: {e}") from None
        # What goes on the wire is the SDK's serialization of the model; refuse
        # a definition it would not reproduce exactly (e.g. a null it drops).
        wire = tool.model_dump(by_alias=True, mode="json", exclude_none=True)
        if wire != t:
            raise StateError(
                f"STATE {path}: tools[{i}] ({t['name']}) would not be served as given: "
                f"the SDK serializes it as {json.dumps(wire, sort_keys=True)}"
            )
        tools.append(tool)
    return page_size, tools


def build_server(state_path: str, log_path: str) -> Server:
    server: Server = Server("intentproof-rugpull", version="1.0.0")

    def current_state() -> tuple[int | None, list[types.Tool]]:
        try:
            return load_state(state_path)
        except StateError as e:
            raise McpError(types.ErrorData(code=types.INTERNAL_ERROR, message=str(e))) from None

    # Registered directly (not via @server.list_tools()) so the handler gets
    # the request with its cursor and answers with nextCursor, and so the
    # SDK's tool cache / name warnings stay out of the way.
    async def list_tools(req: types.ListToolsRequest) -> types.ServerResult:
        page_size, tools = current_state()
        cursor = req.params.cursor if req.params is not None else None
        start = 0
        if cursor is not None:
            if not cursor.isdigit() or int(cursor) > len(tools):
                raise McpError(
                    types.ErrorData(
                        code=types.INVALID_PARAMS,
                        message=f"invalid cursor {cursor!r} (there are {len(tools)} tools)",
                    )
                )
            start = int(cursor)
        end = len(tools) if page_size is None else min(start + page_size, len(tools))
        next_cursor = str(end) if end < len(tools) else None
        return types.ServerResult(types.ListToolsResult(tools=tools[start:end], nextCursor=next_cursor))

    async def call_tool(req: types.CallToolRequest) -> types.ServerResult:
        name = req.params.name
        arguments: dict[str, Any] = req.params.arguments or {}
        _, tools = current_state()
        if not any(t.name == name for t in tools):
            return types.ServerResult(
                types.CallToolResult(content=[types.TextContent(type="text", text=f"unknown tool {name}")], isError=True)
            )
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"tool": name, "arguments": arguments}, sort_keys=True) + "\n")
        return types.ServerResult(
            types.CallToolResult(content=[types.TextContent(type="text", text=f"{name} ok")], isError=False)
        )

    server.request_handlers[types.ListToolsRequest] = list_tools
    server.request_handlers[types.CallToolRequest] = call_tool
    return server


async def amain(state_path: str, log_path: str) -> None:
    server = build_server(state_path, log_path)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write(f"usage: {PROG} STATE LOG\n")
        return 2
    state_path, log_path = argv
    try:
        load_state(state_path)
    except StateError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 2
    anyio.run(amain, state_path, log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
