#!/usr/bin/env python3
"""Added latency per tools/call over Streamable HTTP: the IntentProof
gateway (`/mcp/<name>` in `intentproof serve`) against the PyPI `mcp-proxy`
as a peer, both relaying the same stdio upstream, against a direct stdio
session as the baseline. Interleaved in blocks of 50 calls.

Usage: bench/mcp_http_latency.py GATEWAY_URL MCP_PROXY_URL CALLS [--http NAME=URL]... -- UPSTREAM...
  GATEWAY_URL    e.g. http://127.0.0.1:PORT/mcp/bench (daemon config names the upstream)
  MCP_PROXY_URL  e.g. http://127.0.0.1:PORT/mcp       (mcp-proxy --port PORT -- UPSTREAM...)
  --http N=URL   one more Streamable HTTP path, interleaved with the others.
                 A path named "direct (http)" (the upstream served over
                 Streamable HTTP itself) is a second baseline: added latency
                 is then also printed against it.
  UPSTREAM       the stdio server both relay, run directly for the baseline
bench/mcp_http.sh starts everything and runs this.
"""
import http.client
import json
import statistics
import sys
import time
import urllib.parse

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from mcp_latency import Session, pct  # noqa: E402  (the stdio baseline)


class HttpSession:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.path = u.path
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.session = None
        self.next_id = 0
        self.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}})
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, message):
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        self.conn.request("POST", self.path, body=json.dumps(message), headers=headers)
        response = self.conn.getresponse()
        body = response.read().decode()
        self.session = response.getheader("mcp-session-id") or self.session
        return response, body

    def call(self, method, params):
        self.next_id += 1
        rid = self.next_id
        response, body = self.post({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        if response.status != 200:
            raise SystemExit(f"{self.path}: {method} answered HTTP {response.status}: {body[:200]}")
        if (response.getheader("content-type") or "").startswith("text/event-stream"):
            for line in body.splitlines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("id") == rid:
                        return msg
            raise SystemExit(f"{self.path}: no response to {method} in the event stream")
        return json.loads(body)


def main():
    args = sys.argv[1:]
    if len(args) < 5 or "--" not in args:
        raise SystemExit(__doc__)
    gateway_url, proxy_url, calls = args[0], args[1], int(args[2])
    split = args.index("--")
    upstream = args[split + 1:]
    extra = []
    options = args[3:split]
    while options:
        if options[0] != "--http" or len(options) < 2 or "=" not in options[1]:
            raise SystemExit(__doc__)
        extra.append(options[1].split("=", 1))
        options = options[2:]
    paths = {"direct (stdio)": Session(upstream), "intentproof (http)": HttpSession(gateway_url), "mcp-proxy (http)": HttpSession(proxy_url)}
    for name, url in extra:
        paths[name] = HttpSession(url)
    tool, arguments = ("lookup_order", {"order_id": "ORD-1"}) if upstream[-1] == "demo-server" else ("echo", {"message": "hi"})
    for s in paths.values():
        for _ in range(50):
            s.call("tools/call", {"name": tool, "arguments": arguments})
    times = {name: [] for name in paths}
    done = 0
    while done < calls:
        for name, s in paths.items():
            for _ in range(50):
                t = time.perf_counter()
                s.call("tools/call", {"name": tool, "arguments": arguments})
                times[name].append((time.perf_counter() - t) * 1000)
        done += 50
    bases = [b for b in ("direct (stdio)", "direct (http)") if b in times]
    for name, t in times.items():
        added = "".join(
            f"  vs {b}: {pct(t, 0.5) - pct(times[b], 0.5):+.3f} / {pct(t, 0.99) - pct(times[b], 0.99):+.3f} ms"
            for b in bases if b != name
        )
        print(f"{name:28} n={len(t)} p50={pct(t, 0.5):.3f} ms p99={pct(t, 0.99):.3f} ms mean={statistics.mean(t):.3f} ms{added}")


if __name__ == "__main__":
    main()
