"""PyPI `intentproof`'s durable wrap, measured like
`crates/intentproof/examples/durable_wrap_bench.rs`: THREADS threads each
call a wrapped function CALLS times; prints one JSON line (p50/p99 of each
call in microseconds, events per second over all threads).

Its wrap signs the event and commits it to its SQLite outbox (WAL, one
transaction per event) before returning. With INGEST_URL set it also posts
each event to that daemon in the background, as configured by
`intentproof.configure(ingest_url=...)`.

Usage: python bench/durable_wrap_pypi.py THREADS CALLS
"""

import json
import os
import sys
import tempfile
import threading
import time

import intentproof
from intentproof import client

threads = int(sys.argv[1])
calls = int(sys.argv[2])
scratch = tempfile.mkdtemp(prefix="ip-pypi-bench-")
client.configure(data_dir=scratch, ingest_url=os.environ.get("INGEST_URL") or None)


def refund(order, cents):
    return {"id": "re_" + order, "amount": cents}


wrapped = intentproof.wrap("Refund order", "stripe.refund.create", refund)
latencies = []
lock = threading.Lock()


def worker(t):
    mine = []
    for i in range(calls):
        start = time.perf_counter()
        wrapped("ord_%d_%d" % (t, i), 4999)
        mine.append(time.perf_counter() - start)
    with lock:
        latencies.extend(mine)


started = time.perf_counter()
workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
elapsed = time.perf_counter() - started
client.flush()
latencies.sort()


def at(q):
    return latencies[min(int(len(latencies) * q), len(latencies) - 1)] * 1e6


print(json.dumps({
    "impl": "pypi-intentproof-%s" % getattr(intentproof, "__version__", "0.2.1"),
    "threads": threads,
    "calls": len(latencies),
    "p50_us": at(0.5),
    "p99_us": at(0.99),
    "events_per_s": len(latencies) / elapsed,
}, sort_keys=True))
