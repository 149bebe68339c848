"""A local InfluxDB write endpoint with a 1 h retention policy, answering retention partial writes exactly as
InfluxDB 1.x (400), 2.0.x (500) and 2.x (422) do; for tests/agent/storage/test_retention.py and
bench/bench_retention.py (which also runs against agent code from before these answers were understood)."""
from __future__ import annotations

import http.server
import json
import time
import urllib.parse

from agent.storage import V1Writer, V2Writer
from agent.storage.points import probe_point

RETENTION_S = 3600
DB = "vobox"

# (status, body) of a retention partial write, exactly as each version answers (N: points dropped)
ANSWERS = {
    "1.x": (400, '{"error":"partial write: points beyond retention policy dropped=%d"}'),
    "2.0.x": (500, ('{"code":"internal error","message":"unexpected error writing points to database: partial '
                    'write: points beyond retention policy dropped=%d"}')),
    "2.x": (422, ('{"code":"unprocessable entity","message":"failure writing points to database: partial write: '
                  'dropped %d points outside retention policy of duration 1h0m0s - oldest point probe,box=b0 at '
                  '2026-11-28T10:00:00Z dropped because it violates a Retention Policy Lower Bound at '
                  '2026-12-06T21:00:00Z, newest point probe,box=b199 at 2026-11-28T10:03:19Z dropped because it '
                  'violates a Retention Policy Lower Bound at 2026-12-06T21:00:00Z"}')),
}
SHOW_RP = {"results": [{"statement_id": 0, "series": [{
    "columns": ["name", "duration", "shardGroupDuration", "replicaN", "default"],
    "values": [["autogen", "1h0m0s", "1h0m0s", 1, True]]}]}]}
BUCKETS = {"links": {"self": "/api/v2/buckets?descending=false&limit=20&name=vobox&offset=0"}, "buckets": [{
    "id": "0f7f5c1e2e3d4c5b", "orgID": "1a2b3c4d5e6f7a8b", "type": "user", "name": "vobox",
    "retentionRules": [{"type": "expire", "everySeconds": RETENTION_S, "shardGroupDurationSeconds": 3600}],
    "createdAt": "2026-11-01T00:00:00Z", "updatedAt": "2026-11-01T00:00:00Z", "labels": []}]}


class RetentionServer(http.server.ThreadingHTTPServer):
    """The server Influx answers for: which version it plays, whether it is down (503), whether the credentials may
    read the retention; every request, status and line it saw."""

    def __init__(self, version: str = "1.x", down: bool = False, readable: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), Influx)
        self.version, self.down, self.readable = version, down, readable
        self.requests: list[tuple[str, str, list[bytes]]] = []
        self.stored: list[bytes] = []
        self.answered: list[int] = []    # statuses answered
        self.refused: list[bytes] = []   # lines sent while down (503)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class Influx(http.server.BaseHTTPRequestHandler):
    """A write endpoint with a 1 h retention policy: server.version, server.down (503), server.readable (may the
    credentials read the retention); records every request and the lines stored."""

    server: RetentionServer

    def _answer(self, status: int, body: str = "") -> None:
        self.server.answered.append(status)
        data = body.encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        srv = self.server
        srv.requests.append(("GET", self.path, []))
        if self.path.startswith("/api/v2/buckets"):
            # a write-only token sees no bucket: 2.x lists only what the token may read
            self._answer(200, json.dumps(BUCKETS if srv.readable else {"links": {}, "buckets": []}))
        else:
            self._answer(404, '{"code":"not found","message":"path not found"}')

    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        lines = body.splitlines()
        srv.requests.append(("POST", self.path, lines))
        if self.path.startswith("/query"):
            q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("q", [""])[0]
            if q.startswith("SHOW RETENTION POLICIES") and srv.readable:
                return self._answer(200, json.dumps(SHOW_RP))
            return self._answer(403, '{"error":"user is not authorized to execute statement \'SHOW RETENTION '
                                     'POLICIES\', requires admin privilege"}')
        if srv.down:
            srv.refused += lines
            return self._answer(503, '{"error":"unavailable"}')
        cutoff_ms = (time.time() - RETENTION_S) * 1000
        old = [line for line in lines if int(line.rsplit(b" ", 1)[1]) < cutoff_ms]
        srv.stored += [line for line in lines if line not in old]
        if not old:
            return self._answer(204)
        status, template = ANSWERS[srv.version]
        self._answer(status, template % len(old))

    def log_message(self, *args):
        pass


def writer_for(srv):
    if srv.version == "1.x":
        return V1Writer(srv.url, DB, timeout_s=5)
    return V2Writer(srv.url, "write-only-token", "cern", "vobox", timeout_s=5)


def points(n: int, age_s: float, first: int = 0) -> list:
    now = time.time()
    return [probe_point(f"b{first + i}", "container", "lab", "icmp", "192.0.2.10", None, True, 0.2, None, None,
                        now - age_s + i * 0.001) for i in range(n)]


def writes(srv) -> list[list[bytes]]:
    return [lines for method, path, lines in srv.requests if method == "POST" and "write" in path]
