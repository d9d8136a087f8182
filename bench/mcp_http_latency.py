#!/usr/bin/env python3
"""Added latency per tools/call over Streamable HTTP: the IntentProof
gateway (`/mcp/<name>` in `intentproof serve`) against the PyPI `mcp-proxy`
as a peer, both relaying the same stdio upstream, against a direct stdio
session as the baseline. Interleaved in blocks of 50 calls. Every HTTP path
is driven twice: with `http.client`, and (named "... raw") with a minimal
client on a raw socket, as minimal as the stdio session's JSON lines.

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
import socket
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


class RawHttpSession(HttpSession):
    """The same calls with a minimal HTTP/1.1 client on a raw socket (one
    write per request; the response read by Content-Length or chunks), as
    minimal as the direct stdio session's JSON lines: `http.client` alone
    costs ~0.1 ms per request here, which any HTTP server would pay."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        self.buf = b""
        super().__init__(url)

    def post(self, message):
        body = json.dumps(message).encode()
        head = self.head + (f"Mcp-Session-Id: {self.session}\r\n" if self.session else "")
        self.sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status_line, headers = self.read_head()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.read_line().split(b";")[0], 16)
                data += self.read_exact(size + 2)[:size]
                if size == 0:
                    break
        else:
            data = self.read_exact(int(headers.get("content-length", "0")))
        self.session = headers.get("mcp-session-id") or self.session
        return RawResponse(int(status_line.split()[1]), headers), data.decode()

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return lines[0], headers

    def read_line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise SystemExit("connection closed")
        self.buf += chunk


class RawResponse:
    def __init__(self, status, headers):
        self.status = status
        self.headers = headers

    def getheader(self, name):
        return self.headers.get(name.lower())


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
    http_paths = [("intentproof (http)", gateway_url), ("mcp-proxy (http)", proxy_url)] + extra
    paths = {"direct (stdio)": Session(upstream)}
    for name, url in http_paths:
        paths[name] = HttpSession(url)
    for name, url in http_paths:
        paths[name + " raw"] = RawHttpSession(url)
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
    for name, t in times.items():
        # Against direct stdio, and against direct HTTP with the same client.
        bases = ["direct (stdio)", "direct (http)" + (" raw" if name.endswith(" raw") else "")]
        added = "".join(
            f"  vs {b}: {pct(t, 0.5) - pct(times[b], 0.5):+.3f} / {pct(t, 0.99) - pct(times[b], 0.99):+.3f} ms"
            for b in bases if b != name and b in times
        )
        print(f"{name:32} n={len(t)} p50={pct(t, 0.5):.3f} ms p99={pct(t, 0.99):.3f} ms mean={statistics.mean(t):.3f} ms{added}")

if __name__ == "__main__":
    main()
