#!/usr/bin/env python3
"""A tiny, misbehaving MCP stdio server for the gateway's failure tests.

Usage: fake_server.py MODE

Speaks newline-delimited JSON-RPC on stdin/stdout, standard library only.
It answers `initialize` (serverInfo `fake-server` 0.0.1, capability `tools`),
`tools/list` (one tool, `echo` {message}), `ping`, and `tools/call echo`
(text `Echo: <message>`); other requests get -32601; notifications are ignored.

Modes:
  ok             behave (as above)
  crash-on-call  as ok, but on any `tools/call` write `fake_server: crashing` on
                 stderr and exit with status 3 without answering
  garbage        as ok, but write the non-JSON line `this is not json` to stdout
                 before every response

Exits 0 on stdin EOF.
"""

from __future__ import annotations

import json
import sys

MODES = ("ok", "crash-on-call", "garbage")
GARBAGE_LINE = "this is not json"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in MODES:
        sys.stderr.write(f"usage: fake_server.py {{{'|'.join(MODES)}}}\n")
        return 2
    mode = argv[0]

    def send(message: dict) -> None:
        if mode == "garbage":
            sys.stdout.write(GARBAGE_LINE + "\n")
        sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or "id" not in message or "method" not in message:
            continue  # notifications and responses
        rid, method = message["id"], message["method"]
        params = message.get("params") or {}
        if method == "initialize":
            result = {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fake-server", "version": "0.0.1"},
            }
        elif method == "tools/list":
            result = {
                "tools": [
                    {
                        "name": "echo",
                        "description": "Echoes the message.",
                        "inputSchema": {
                            "type": "object",
                            "properties": {"message": {"type": "string"}},
                            "required": ["message"],
                        },
                    }
                ]
            }
        elif method == "ping":
            result = {}
        elif method == "tools/call":
            if mode == "crash-on-call":
                sys.stderr.write("fake_server: crashing\n")
                sys.stderr.flush()
                sys.exit(3)
            if params.get("name") != "echo":
                send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "unknown tool"}})
                continue
            text = str((params.get("arguments") or {}).get("message", ""))
            result = {"content": [{"type": "text", "text": f"Echo: {text}"}], "isError": False}
        else:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"method not found: {method}"}})
            continue
        send({"jsonrpc": "2.0", "id": rid, "result": result})
    return 0


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    sys.exit(main(sys.argv[1:]))
