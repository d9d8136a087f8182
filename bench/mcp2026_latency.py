#!/usr/bin/env python3
"""Added latency per tools/call for an MCP 2026-07-28 client (stateless: no
initialize, no session; `_meta` in every request, `MCP-Protocol-Version`,
`Mcp-Method` and `Mcp-Name` headers on every POST), next to a 2025-11-25
client on the same upstream, all paths interleaved in blocks of 50 calls.

Blocks run in a new random order every round (seeded), so the work a
path leaves behind (mcp-proxy's, a batch being recorded) does not always
land on the same next path.

Paths (every HTTP path with the minimal raw-socket client of
bench/mcp_http_latency.py, one keep-alive connection each):
  direct (stdio, 2025)         the upstream over stdio, after initialize
  direct (stdio, 2026)         the upstream over stdio, 2026 requests only
  intentproof (stdio, 2025)    `intentproof mcp -- UPSTREAM`, 2025 session
  intentproof (stdio, 2026)    `intentproof mcp -- UPSTREAM`, 2026 requests
  intentproof (http, 2025) raw GATEWAY_URL, initialize + Mcp-Session-Id
  intentproof (http, 2026) raw GATEWAY_URL, stateless POSTs (the shared
                               `command` process, ids spliced)
  mcp-proxy (http, 2025) raw   MCP_PROXY_URL, initialize + Mcp-Session-Id
  mcp-proxy (http, 2026) raw   MCP_PROXY_URL, stateless POSTs: probed once;
                               left out (with its answer printed) when it
                               does not answer a 2026 request
Added latency is printed against the direct stdio session of the same era
(2025 paths vs direct 2025, 2026 paths vs direct 2026), plus, for the
gateway over HTTP, its ratio to mcp-proxy's added p50 (the 2025 proxy
path when the 2026 one is left out).

Usage: bench/mcp2026_latency.py BIN DATA_DIR GATEWAY_URL MCP_PROXY_URL CALLS -- UPSTREAM...
  BIN       the intentproof binary (stdio gateway: `BIN mcp --data-dir DATA_DIR --no-autostart`)
  DATA_DIR  data dir of the running daemon (the one serving GATEWAY_URL)
Tool: `lookup_order` when UPSTREAM ends in demo-server, else `echo(text)`
(tests/mcp2026/fixture_server.py). bench/mcp2026.sh starts everything.
"""
import json
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from mcp_latency import Session, pct  # noqa: E402
from mcp_http_latency import RawHttpSession  # noqa: E402

VERSION = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def checked(name, msg):
    if "result" not in msg:
        raise SystemExit(f"{name}: not a result: {json.dumps(msg)[:300]}")
    return msg


class StdioSession2026(Session):
    """A 2026 client over stdio: no initialize; the first request (a
    tools/call with the protocolVersion `_meta` key) opens a modern
    connection on a dual-era server."""

    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.next_id = 0

    def call(self, method, params):
        return super().call(method, dict(params, _meta=META))


class RawStatelessSession(RawHttpSession):
    """2026 stateless POSTs on one keep-alive raw socket: the headers a 2026
    SDK client sends (PyPI mcp 2.3.0), `_meta` in params, no session."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.path = u.path
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = (f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
                     f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {VERSION}\r\n")
        self.buf = b""
        self.session = None
        self.next_id = 0

    def post(self, message):
        # Mcp-Method always; Mcp-Name for tools/call, prompts/get (name), resources/read (uri).
        params = message.get("params") or {}
        name = params.get("uri") if message.get("method") == "resources/read" else params.get("name")
        extra = f"Mcp-Method: {message['method']}\r\n" + (f"Mcp-Name: {name}\r\n" if name else "")
        saved, self.head = self.head, self.head + extra
        try:
            return super().post(message)
        finally:
            self.head = saved

    def call(self, method, params):
        self.next_id += 1
        rid = self.next_id
        response, body = self.post({"jsonrpc": "2.0", "id": rid, "method": method, "params": dict(params, _meta=META)})
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:300]}")
        if (response.getheader("content-type") or "").startswith("text/event-stream"):
            for line in body.splitlines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("id") == rid:
                        return msg
            raise RuntimeError(f"no response in the event stream: {body[:300]}")
        return json.loads(body)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    args = sys.argv[1:]
    if len(args) < 7 or "--" not in args:
        raise SystemExit(__doc__)
    binary, data_dir, gateway_url, proxy_url, calls = args[0], args[1], args[2], args[3], int(args[4])
    upstream = args[args.index("--") + 1:]
    tool, arguments = ("lookup_order", {"order_id": "ORD-1"}) if upstream[-1] == "demo-server" else ("echo", {"text": "hi"})
    gateway_stdio = [binary, "mcp", "--name", "bench", "--data-dir", data_dir, "--no-autostart", "--"] + upstream
    print(f"load average at start: {loadavg()}")
    paths = {
        "direct (stdio, 2025)": Session(upstream),
        "direct (stdio, 2026)": StdioSession2026(upstream),
        "intentproof (stdio, 2025)": Session(gateway_stdio),
        "intentproof (stdio, 2026)": StdioSession2026(gateway_stdio),
        "intentproof (http, 2025) raw": RawHttpSession(gateway_url),
        "intentproof (http, 2026) raw": RawStatelessSession(gateway_url),
        "mcp-proxy (http, 2025) raw": RawHttpSession(proxy_url),
    }
    try:
        probe = RawStatelessSession(proxy_url)
        print(f"mcp-proxy, one 2026 tools/call: {json.dumps(probe.call('tools/call', {'name': tool, 'arguments': arguments}))[:300]}")
        paths["mcp-proxy (http, 2026) raw"] = probe
    except (RuntimeError, OSError, SystemExit) as e:
        print(f"mcp-proxy does not answer a 2026 request, left out: {e}")
    for name, s in paths.items():  # warm up; every answer must be a result
        for _ in range(50):
            checked(name, s.call("tools/call", {"name": tool, "arguments": arguments}))
    times = {name: [] for name in paths}
    order = list(paths.items())
    rng = random.Random(2026)
    done = 0
    while done < calls:
        # A block's leftovers (a relay's background work, a batch being
        # recorded) land on the block after it: the order is shuffled every
        # round so that no path always follows the same one.
        rng.shuffle(order)
        for name, s in order:
            for _ in range(50):
                t = time.perf_counter()
                s.call("tools/call", {"name": tool, "arguments": arguments})
                times[name].append((time.perf_counter() - t) * 1000)
        done += 50
    for name, s in paths.items():  # still answering, after the timed calls
        checked(name, s.call("tools/call", {"name": tool, "arguments": arguments}))
    print(f"load average at end: {loadavg()}")

    def added(name, q=0.5):
        base = "direct (stdio, 2026)" if "2026" in name else "direct (stdio, 2025)"
        return pct(times[name], q) - pct(times[base], q)

    for name, t in times.items():
        base = "direct (stdio, 2026)" if "2026" in name else "direct (stdio, 2025)"
        vs = "" if name.startswith("direct") else f"  vs {base}: {added(name):+.3f} / {added(name, 0.99):+.3f} ms"
        print(f"{name:30} n={len(t)} p50={pct(t, 0.5):.3f} ms p99={pct(t, 0.99):.3f} ms mean={statistics.mean(t):.3f} ms{vs}")
    for era in ("2025", "2026"):
        peer = f"mcp-proxy (http, {era}) raw" if f"mcp-proxy (http, {era}) raw" in times else "mcp-proxy (http, 2025) raw"
        gw = added(f"intentproof (http, {era}) raw")
        print(f"ratio {era}: gateway (http) added p50 {gw:+.3f} ms / {peer} added p50 {added(peer):+.3f} ms = {gw / added(peer):.2f}x")
    for era in ("2025", "2026"):
        print(f"stdio {era}: gateway added p50 {added(f'intentproof (stdio, {era})'):+.3f} ms")
    for s in paths.values():
        if hasattr(s, "p"):
            s.close()


if __name__ == "__main__":
    main()
