#!/usr/bin/env python3
"""Run server-everything in Streamable HTTP mode on a free loopback port, then a
harness script against it; exit with that script's status.

Usage:
  everything_http.py [--entry PATH] [--script transcript.py|plan_session.py] [-- script options...]

PATH defaults to $INTENTPROOF_TEST_NODE_EVERYTHING. The script gets
`<options...> http http://127.0.0.1:PORT/mcp` appended; its stdout is passed
through. The server (bound to 127.0.0.1 via loopback.mjs) is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> int:
    entry = os.environ.get("INTENTPROOF_TEST_NODE_EVERYTHING", "")
    script = "transcript.py"
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--entry":
            entry, i = argv[i + 1], i + 2
        elif a == "--script":
            script, i = argv[i + 1], i + 2
        elif a == "--":
            rest, i = argv[i + 1 :], len(argv)
        else:
            sys.stderr.write(f"everything_http.py: unknown argument {a}\n")
            return 2
    if not entry or not Path(entry).is_file():
        sys.stderr.write(
            "everything_http.py: server-everything entry not found; set INTENTPROOF_TEST_NODE_EVERYTHING "
            "(./scripts/test installs it) or pass --entry\n"
        )
        return 2
    port = free_port()
    env = dict(os.environ, PORT=str(port))
    server = subprocess.Popen(
        ["node", "--import", (HERE / "loopback.mjs").as_uri(), entry, "streamableHttp"],
        env=env,
        stdout=subprocess.DEVNULL,  # it logs every request on stdout
        stderr=sys.stderr,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if server.poll() is not None:
                sys.stderr.write(f"everything_http.py: server exited with {server.returncode} before listening\n")
                return 1
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.stderr.write(f"everything_http.py: server not listening on 127.0.0.1:{port} after 20s\n")
                    return 1
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        cmd = [sys.executable, str(HERE / script), *rest, "http", url]
        return subprocess.run(cmd).returncode
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
