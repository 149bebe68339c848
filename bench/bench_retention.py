#!/usr/bin/env python3
"""Benchmark retention refusals: requests, ERROR lines and delivery for old points replayed after an outage.

    .venv/bin/python bench/bench_retention.py [--old 200] [--fresh 300]

For each InfluxDB version's answer to points older than its retention policy (1.x 400, 2.0.x 500, 2.x 422: the
exact bodies of tests/agent/storage/retention_server.py, whose local server this uses, on 127.0.0.1), the case of
`influx-retention-refusals.md`: --old points 8 days old written while InfluxDB is down (spooled), then it comes
back and --fresh points are written. Printed per version: write requests after it came back (a flush and 3 s
more), ERROR log lines, fresh points stored, and the storage counters. The retention is not learnable (a write-only user).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.storage import Storage
from tests.agent.storage.retention_server import (
    ANSWERS,
    RetentionServer,
    points,
    writer_for,
    writes,
)


class Count(logging.Handler):
    """Counts ERROR records."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1


def one(version: str, n_old: int, n_fresh: int) -> str:
    srv = RetentionServer(version, down=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    errors = Count()
    logging.getLogger("agent").addHandler(errors)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            st = Storage(writer_for(srv), tmp, retry_min_s=0.05, retry_max_s=0.2)
            st.write(points(n_old, 8 * 86400))
            deadline = time.monotonic() + 10
            while st.counters().spool_points < n_old and time.monotonic() < deadline:
                time.sleep(0.02)
            srv.down = False
            before, errors.n = len(writes(srv)), 0
            st.write(points(n_fresh, 0, first=100_000))
            st.flush(20)
            time.sleep(3)                          # and 3 s more: a refusal read as retryable is retried
            c = st.counters()
            fresh = len(srv.stored)              # the server stores only points within its retention
            row = (f"{version:>6} {len(writes(srv)) - before:>9} {errors.n:>7} {fresh:>6}/{n_fresh:<4} "
                   f"{c.written:>8} {getattr(c, 'retention_dropped', '-')!s:>10} {c.rejected:>8} "
                   f"{c.spool_points + c.queued:>8}")
            st.close(timeout_s=2)
            return row
    finally:
        logging.getLogger("agent").removeHandler(errors)
        srv.shutdown()
        srv.server_close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=int, default=200)
    ap.add_argument("--fresh", type=int, default=300)
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger("agent").setLevel(logging.INFO)    # counted by Count, not printed
    logging.getLogger("agent").propagate = False
    print(f"{'answer':>6} {'requests':>9} {'ERRORs':>7} {'fresh stored':>11} {'written':>8} "
          f"{'retention':>10} {'rejected':>8} {'waiting':>8}")
    for version in ANSWERS:
        print(one(version, args.old, args.fresh), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
