#!/usr/bin/env python3
"""Added latency per tools/call of `intentproof mcp --fail-closed`, with and
without a pending spool, next to fail-open and a direct session.

Paths (one long-lived session each, raw newline-delimited JSON-RPC, calls
interleaved in blocks of 50 so every path sees the same machine state):
  direct                     the upstream itself
  fail-open                  `intentproof mcp` on UP_DIR (its daemon running)
  fail-closed                `intentproof mcp --fail-closed` on UP_DIR
  fail-closed, spool pending `intentproof mcp --fail-closed` on DOWN_DIR, whose
                             daemon is down (`--server` points at a closed
                             port): it adopts the SEED events a killed gateway
                             left in the spool and spools every call's events
                             behind them, none delivered
A fail-closed call is forwarded once its "started" record is written and
fsync'd in the spool (one `fdatasync` per call); delivery must never be on
that path, so both fail-closed paths should add the same. The fdatasync
latency of DOWN_DIR's file system is measured and printed first.

Usage: bench/mcp_fail_closed.py BIN UP_DIR DOWN_DIR CLOSED_URL CALLS SEED -- UPSTREAM...
bench/mcp_fail_closed.sh starts the daemons and calls this.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from mcp_latency import Session, pct  # noqa: E402

TARGET_MS = 0.25


def checked(name, msg):
    if "result" not in msg or msg["result"].get("isError"):
        raise SystemExit(f"{name}: not a result: {json.dumps(msg)[:300]}")
    return msg


def spooled(data_dir):
    """Events waiting in DATA_DIR's spool files (rejected.jsonl aside)."""
    total = 0
    for path in glob.glob(os.path.join(data_dir, "spool", "*")):
        if os.path.basename(path) == "rejected.jsonl":
            continue
        with open(path, "rb") as f:
            total += sum(1 for line in f if line.strip())
    return total


def fdatasync_ms(directory, n=200):
    fd, path = tempfile.mkstemp(dir=directory)
    samples = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 700 + b"\n")
            t = time.perf_counter()
            os.fdatasync(fd)
            samples.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    return pct(samples, 0.5), pct(samples, 0.99)


def seed_pending_spool(binary, down_dir, closed_url, upstream, tool, arguments, seed):
    """A fail-open gateway makes SEED calls with no daemon, then is killed:
    its spool is left for the next gateway on DOWN_DIR to adopt."""
    s = Session([binary, "mcp", "--name", "bench", "--data-dir", down_dir, "--no-autostart",
                 "--server", closed_url, "--"] + upstream)
    for _ in range(seed):
        checked("seed", s.call("tools/call", {"name": tool, "arguments": arguments}))
    deadline = time.monotonic() + 60
    while spooled(down_dir) < seed:
        if time.monotonic() > deadline:
            raise SystemExit(f"seed: only {spooled(down_dir)} of {seed} events reached the spool")
        time.sleep(0.05)
    s.p.kill()
    s.p.wait()


def main():
    args = sys.argv[1:]
    if "--" not in args or args.index("--") != 6:
        raise SystemExit(__doc__)
    binary, up_dir, down_dir, closed_url = args[0:4]
    calls, seed = int(args[4]), int(args[5])
    upstream = args[7:]
    tool, arguments = ("lookup_order", {"order_id": "ORD-1"}) if upstream[-1] == "demo-server" else ("echo", {"message": "hi"})

    sync50, sync99 = fdatasync_ms(down_dir)
    print(f"fdatasync on {down_dir}: p50={sync50:.3f} ms p99={sync99:.3f} ms")
    seed_pending_spool(binary, down_dir, closed_url, upstream, tool, arguments, seed)
    pending_before = spooled(down_dir)

    gateway = [binary, "mcp", "--name", "bench", "--no-autostart"]
    paths = {
        "direct": Session(upstream),
        "fail-open": Session(gateway + ["--data-dir", up_dir, "--"] + upstream),
        "fail-closed": Session(gateway + ["--fail-closed", "--data-dir", up_dir, "--"] + upstream),
        "fail-closed, spool pending": Session(gateway + ["--fail-closed", "--data-dir", down_dir,
                                                         "--server", closed_url, "--"] + upstream),
    }
    for name, s in paths.items():  # warm up
        for _ in range(50):
            checked(name, s.call("tools/call", {"name": tool, "arguments": arguments}))
    times = {name: [] for name in paths}
    done = 0
    while done < calls:
        for name, s in paths.items():
            for _ in range(50):
                t = time.perf_counter()
                msg = s.call("tools/call", {"name": tool, "arguments": arguments})
                times[name].append((time.perf_counter() - t) * 1000)
                checked(name, msg)
        done += 50
    pending_after = spooled(down_dir)
    for name, s in paths.items():
        if name == "fail-closed, spool pending":
            # Its daemon is down: closing would wait for delivery.
            s.p.kill()
            s.p.wait()
        else:
            s.close()

    print(f"pending in {down_dir}/spool: {pending_before} events before, {pending_after} after")
    base = times["direct"]
    for name, t in times.items():
        line = f"{name:27} n={len(t)} p50={pct(t, 0.5):.3f} ms p99={pct(t, 0.99):.3f} ms"
        if name != "direct":
            line += f"  added p50={pct(t, 0.5) - pct(base, 0.5):+.3f} ms p99={pct(t, 0.99) - pct(base, 0.99):+.3f} ms"
        print(line)
    for name in ("fail-closed", "fail-closed, spool pending"):
        added = pct(times[name], 0.5) - pct(base, 0.5)
        verdict = "met" if added <= TARGET_MS else "NOT met"
        print(f"{name}: added p50 {added:+.3f} ms <= {TARGET_MS} ms: {verdict}")


if __name__ == "__main__":
    main()
