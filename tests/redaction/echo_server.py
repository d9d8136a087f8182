#!/usr/bin/env python3
"""An MCP stdio server that answers with what it was sent, for the
redaction corpus test (crates/intentproof-cli/tests/redaction_corpus.rs):
whatever secrets a call carries come back in its result or error, so the
test sees the gateway record (and redact) them in inputs, output and error.

Usage: echo_server.py

Newline-delimited JSON-RPC on stdin/stdout, standard library only. Answers a
2025-era `initialize` (with the protocol version the client asked for),
`tools/list` and `ping`. Tools (`tools/call`):
  echo   result {"content": [{"type": "text", "text": <arguments as JSON
         text>}], "structuredContent": <arguments>}
  fail   JSON-RPC error {"code": -32000, "message": <arguments.message>,
         "data": <arguments.data>}
Other methods get -32601. Notifications and responses are ignored. Exits 0
on stdin EOF.
"""

from __future__ import annotations

import json
import sys

TOOLS = [
    {"name": "echo", "description": "Answers with its arguments",
     "inputSchema": {"type": "object"}},
    {"name": "fail", "description": "Fails with the given message and data",
     "inputSchema": {"type": "object"}},
]


def answer(request: dict) -> dict:
    method = request.get("method")
    params = request.get("params") or {}
    reply = {"jsonrpc": "2.0", "id": request["id"]}
    if method == "initialize":
        reply["result"] = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "echo-server", "version": "1.0.0"},
        }
    elif method == "tools/list":
        reply["result"] = {"tools": TOOLS}
    elif method == "ping":
        reply["result"] = {}
    elif method == "tools/call" and params.get("name") == "echo":
        arguments = params.get("arguments") or {}
        reply["result"] = {
            "content": [{"type": "text", "text": json.dumps(arguments)}],
            "structuredContent": arguments,
        }
    elif method == "tools/call" and params.get("name") == "fail":
        arguments = params.get("arguments") or {}
        reply["error"] = {
            "code": -32000,
            "message": str(arguments.get("message", "failed")),
            "data": arguments.get("data"),
        }
    else:
        reply["error"] = {"code": -32601, "message": f"unknown method {method}"}
    return reply


def main() -> None:
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if not isinstance(request, dict) or "id" not in request or "method" not in request:
            continue
        sys.stdout.write(json.dumps(answer(request)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
