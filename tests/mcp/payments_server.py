#!/usr/bin/env python3
"""A payments MCP server on the official Python SDK (PyPI `mcp` 1.x,
FastMCP), stdio transport, for the guard tests
(crates/intentproof-cli/tests/guard_e2e.rs).

Usage: payments_server.py LOG

Every `tools/call` the server receives is appended to LOG as one JSON line
`{"tool": NAME, "arguments": {...}}` before it is answered, so a test can
check on the server's side which calls reached it (a refused call must
never appear).

Tools:
  refund_payment(order_id, amount_cents, currency="EUR")
      -> {"refund_id": "re_<order_id>", "status": "succeeded"}
  send_receipt_email(order_id, email) -> {"sent": true}
  lookup_order(order_id) -> {"order_id": ..., "amount_cents": 4999}
"""

from __future__ import annotations

import json
import sys

try:
    from mcp.server.fastmcp import FastMCP
except ImportError as e:  # pragma: no cover - environment problem
    sys.stderr.write(f"payments_server.py: cannot import the Python MCP SDK ({e}); use $INTENTPROOF_TEST_PYTHON\n")
    sys.exit(2)

if len(sys.argv) != 2:
    sys.stderr.write("usage: payments_server.py LOG\n")
    sys.exit(2)
LOG = sys.argv[1]

server = FastMCP("payments-fastmcp")


def received(tool: str, arguments: dict) -> None:
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": tool, "arguments": arguments}, sort_keys=True) + "\n")


@server.tool()
def refund_payment(order_id: str, amount_cents: int, currency: str = "EUR") -> dict:
    """Refund an order's payment to the customer's card."""
    received("refund_payment", {"order_id": order_id, "amount_cents": amount_cents, "currency": currency})
    return {"refund_id": f"re_{order_id}", "status": "succeeded"}


@server.tool()
def send_receipt_email(order_id: str, email: str) -> dict:
    """Email the customer the refund receipt."""
    received("send_receipt_email", {"order_id": order_id, "email": email})
    return {"sent": True}


@server.tool()
def lookup_order(order_id: str) -> dict:
    """Look an order up."""
    received("lookup_order", {"order_id": order_id})
    return {"order_id": order_id, "amount_cents": 4999}


if __name__ == "__main__":
    server.run()
