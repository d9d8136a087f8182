#!/usr/bin/env python3
"""Added latency of the MCP gateway (stdio mode) per tools/call.

Two long-lived sessions of the same upstream, one direct and one through
`intentproof mcp`, driven with raw newline-delimited JSON-RPC (so the client
adds as little as possible). Calls are interleaved in blocks of 50 so both
paths see the same machine state. Prints p50/p99 per path and the added
latency (gateway - direct) at each percentile.

Usage: bench/mcp_latency.py INTENTPROOF_BIN [CALLS] [-- UPSTREAM...]
Default upstream: `INTENTPROOF_BIN demo-server` (tool lookup_order).
A daemon must be running on the data dir given by INTENTPROOF_DATA_DIR
(events are delivered in the background and do not block calls).
"""
import json
import os
import statistics
import subprocess
import sys
import time


def start(cmd):
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)


class Session:
    def __init__(self, cmd):
        self.p = start(cmd)
        self.next_id = 0
        self.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}})
        self.p.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")

    def call(self, method, params):
        self.next_id += 1
        rid = self.next_id
        self.p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}) + "\n")
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit(f"session ended: {method}")
            msg = json.loads(line)
            if msg.get("id") == rid and "method" not in msg:
                return msg

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def main():
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    binary = args[0]
    calls = int(args[1]) if len(args) > 1 and args[1] != "--" else 2000
    upstream = args[args.index("--") + 1:] if "--" in args else [binary, "demo-server"]
    data_dir = os.environ.get("INTENTPROOF_DATA_DIR")
    if not data_dir:
        raise SystemExit("set INTENTPROOF_DATA_DIR to the running daemon's data dir")
    direct = Session(upstream)
    gateway = Session([binary, "mcp", "--name", "bench", "--data-dir", data_dir, "--no-autostart", "--"] + upstream)
    tool, arguments = ("lookup_order", {"order_id": "ORD-1"}) if upstream[-1] == "demo-server" else ("echo", {"message": "hi"})
    for s in (direct, gateway):  # warm up
        for _ in range(50):
            s.call("tools/call", {"name": tool, "arguments": arguments})
    times = {"direct": [], "gateway": []}
    done = 0
    while done < calls:
        for name, s in (("direct", direct), ("gateway", gateway)):
            for _ in range(50):
                t = time.perf_counter()
                s.call("tools/call", {"name": tool, "arguments": arguments})
                times[name].append((time.perf_counter() - t) * 1000)
        done += 50
    direct.close()
    gateway.close()
    for name in ("direct", "gateway"):
        t = times[name]
        print(f"{name:8} n={len(t)} p50={pct(t, 0.5):.3f} ms p99={pct(t, 0.99):.3f} ms mean={statistics.mean(t):.3f} ms")
    print(f"added    p50={pct(times['gateway'], 0.5) - pct(times['direct'], 0.5):.3f} ms "
          f"p99={pct(times['gateway'], 0.99) - pct(times['direct'], 0.99):.3f} ms")


if __name__ == "__main__":
    main()
