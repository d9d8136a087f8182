#!/usr/bin/env python3
"""What guard mode adds per tools/call, stdio gateway: plan enforcement
(`--enforce plan`) and tool pinning (`--on-tool-change block`).

Four long-lived sessions of `intentproof demo-server`, driven with raw
newline-delimited JSON-RPC: direct, through `intentproof mcp` (record only),
through `intentproof mcp --enforce plan` with a declared plan whose step
covers the call under a constraint (so every call is decided: matched,
counted and checked), and through `intentproof mcp --on-tool-change block`
after a `tools/list` pinned the tools (so every call looks its tool's pin
up). Calls (`lookup_order`) are interleaved in blocks of 50 after 50
warm-up calls. Prints p50/p99 per path, the guard's added p50 (enforcing -
recording) and pinning's (pinning - recording) next to the gateway's
(recording - direct).

Usage: bench/mcp_guard.py INTENTPROOF_BIN [CALLS]
A daemon must be running on the data dir given by INTENTPROOF_DATA_DIR.
"""
import os
import statistics
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mcp_latency import Session, pct  # noqa: E402


def main():
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    binary = args[0]
    calls = int(args[1]) if len(args) > 1 else 2000
    data_dir = os.environ.get("INTENTPROOF_DATA_DIR")
    if not data_dir:
        raise SystemExit("set INTENTPROOF_DATA_DIR to the running daemon's data dir")
    upstream = [binary, "demo-server"]
    gateway = [binary, "mcp", "--name", "bench", "--data-dir", data_dir, "--no-autostart"]
    sessions = {
        "direct": Session(upstream),
        "recording": Session(gateway + ["--"] + upstream),
        "enforcing": Session(gateway + ["--enforce", "plan", "--"] + upstream),
        "pinning": Session(gateway + ["--on-tool-change", "block", "--"] + upstream),
    }
    listed = sessions["pinning"].call("tools/list", {})
    if "error" in listed:
        raise SystemExit(f"tools/list failed: {listed}")
    declared = sessions["enforcing"].call("tools/call", {
        "name": "intentproof_declare_plan",
        "arguments": {"intent": "look orders up", "steps": [
            {"tool": "lookup_order", "purpose": "Look the order up", "constraints": ["order_id != \"\""]}]},
    })
    if declared.get("result", {}).get("isError") or "error" in declared:
        raise SystemExit(f"the plan was not declared: {declared}")
    arguments = {"order_id": "ORD-1"}
    for s in sessions.values():  # warm up; every call must be let through
        for _ in range(50):
            answer = s.call("tools/call", {"name": "lookup_order", "arguments": arguments})
            if "error" in answer:
                raise SystemExit(f"a call was refused: {answer}")
    times = {name: [] for name in sessions}
    done = 0
    while done < calls:
        for name, s in sessions.items():
            for _ in range(50):
                t = time.perf_counter()
                s.call("tools/call", {"name": "lookup_order", "arguments": arguments})
                times[name].append((time.perf_counter() - t) * 1000)
        done += 50
    for s in sessions.values():
        s.close()
    for name, t in times.items():
        print(f"{name:9} n={len(t)} p50={pct(t, 0.5):.3f} ms p99={pct(t, 0.99):.3f} ms mean={statistics.mean(t):.3f} ms")
    p50 = {name: pct(t, 0.5) for name, t in times.items()}
    print(f"gateway added p50 (recording - direct) = {(p50['recording'] - p50['direct']) * 1000:.1f} us")
    print(f"guard added p50 (enforcing - recording) = {(p50['enforcing'] - p50['recording']) * 1000:.1f} us")
    print(f"pinning added p50 (pinning - recording) = {(p50['pinning'] - p50['recording']) * 1000:.1f} us")


if __name__ == "__main__":
    main()
