#!/usr/bin/env python3
"""Drive the real IntentProof Python SDK (PyPI `intentproof==0.2.1`) against a daemon.

Usage:
    python_sdk_two_chains.py DATA_DIR             # send 4 events, then print identity
    python_sdk_two_chains.py DATA_DIR --identity  # print identity only, send nothing

DATA_DIR is the SDK's data directory (keypair.json, outbox.db); use a fresh one
per run, since the SDK keeps chain state there. The ingest address comes from
INTENTPROOF_INGEST_URL (the SDK appends /v1/events when it is missing).

Sending mode wraps two functions and calls each once under correlation
"interop-a" and once under "interop-b": two chains of two events each. It then
flushes the SDK's exporter threads and prints one JSON line:
    {"instance_id": "inst_...", "public_key": "<base64 raw 32 bytes>", "events": 4}

The SDK only logs failed exports (a refused or unreachable ingest); this script
turns any warning the SDK logs into a non-zero exit, so a refused event fails
the calling test instead of vanishing.

Identity mode prints the same line with "events": 0 (for trusting the key
before anything is sent).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
from importlib import metadata

EXPECTED_SDK_VERSION = "0.2.1"
CORRELATIONS = ("interop-a", "interop-b")


class _Collect(logging.Handler):
    """Keeps every warning or error the SDK logs (failed exports, failed records)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def _fail(message: str) -> None:
    print(f"python_sdk_two_chains: {message}", file=sys.stderr)
    sys.exit(1)


def _identity(intentproof_client) -> dict[str, str]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = intentproof_client.get_public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if len(raw) != 32:
        _fail(f"public key is {len(raw)} bytes, expected 32")
    return {
        "instance_id": intentproof_client.get_instance_id(),
        "public_key": base64.b64encode(raw).decode("ascii"),
    }


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--identity"):
        _fail("usage: python_sdk_two_chains.py DATA_DIR [--identity]")
    data_dir = argv[1]
    identity_only = len(argv) == 3

    try:
        version = metadata.version("intentproof")
    except metadata.PackageNotFoundError:
        _fail(
            f"the SDK (intentproof=={EXPECTED_SDK_VERSION}) is not installed in "
            f"{sys.executable}; ./scripts/test installs it into .ci-deps/venv"
        )
    if version != EXPECTED_SDK_VERSION:
        _fail(f"intentproof {version} installed, expected {EXPECTED_SDK_VERSION}")

    import intentproof
    from intentproof import run_with_correlation_id, wrap

    collect = _Collect()
    sdk_logger = logging.getLogger("intentproof")
    sdk_logger.addHandler(collect)
    sdk_logger.setLevel(logging.WARNING)

    intentproof.configure(data_dir=data_dir)
    identity = _identity(intentproof.client)

    if identity_only:
        print(json.dumps({**identity, "events": 0}), flush=True)
        return

    if not os.environ.get("INTENTPROOF_INGEST_URL", "").strip():
        _fail("INTENTPROOF_INGEST_URL is not set; the SDK would send nothing")
    if intentproof.client.get_exporter() is None:
        _fail("the SDK has no exporter despite INTENTPROOF_INGEST_URL")

    def lookup_order(order_id: str) -> dict[str, object]:
        return {"order_id": order_id, "status": "shipped", "items": 2}

    def issue_refund(order_id: str, amount_cents: int) -> dict[str, object]:
        return {"order_id": order_id, "refunded_cents": amount_cents, "ok": True}

    lookup = wrap("Look up the customer's order", "orders.lookup", lookup_order)
    refund = wrap("Refund the damaged item", "payments.refund", issue_refund)

    sent = 0
    for corr in CORRELATIONS:
        order_id = f"ord-{corr}"

        def flow(order_id: str = order_id) -> None:
            lookup(order_id)
            refund(order_id, 1250)

        run_with_correlation_id(corr, flow)
        sent += 2

    intentproof.flush()

    if collect.messages:
        _fail("the SDK reported failures:\n  " + "\n  ".join(collect.messages))

    print(json.dumps({**identity, "events": sent}), flush=True)


if __name__ == "__main__":
    main(sys.argv)
