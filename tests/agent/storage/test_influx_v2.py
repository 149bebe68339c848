"""V2Writer: the exact requests influxdb-client sends, checked by a local HTTP server in a throwaway netns."""
from __future__ import annotations

import gzip
import http.server
import json
import threading
import urllib.parse

import pytest

from agent import netns
from agent.storage import SinkError, Storage, V2Writer, query
from agent.storage.points import probe_point


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request; answers with the next status from server.statuses (default 204)."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = self.server.statuses.pop(0) if self.server.statuses else 204
        if self.path.startswith("/query"):
            payload = json.dumps({"results": [{"statement_id": 0, "series": [
                {"name": "probe", "tags": {"box": "b1"}, "columns": ["time", "count"], "values": [[0, 7]]}]}]})
            data = payload.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            data = b"" if status == 204 else json.dumps({"code": "invalid", "message": f"status {status}"}).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(bare_netns):
    with netns.entered(bare_netns):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.requests, srv.statuses, srv.netns = [], [], bare_netns
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


LINES = b"m,box=b1 ok=1i 1700000000000\nm,box=b2 ok=0i 1700000000001\n"


@pytest.mark.parametrize("use_gzip", [pytest.param(False, id="plain"), pytest.param(True, id="gzip")])
def test_exact_write_request(server, use_gzip):
    w = V2Writer(url(server), "s3cret-token", "my-org", "my-bucket", timeout_s=2, gzip=use_gzip)
    with netns.entered(server.netns):
        w.send(LINES)
    w.close()
    (req,) = server.requests
    path, _, qs = req["path"].partition("?")
    assert path == "/api/v2/write"
    assert urllib.parse.parse_qs(qs) == {"org": ["my-org"], "bucket": ["my-bucket"], "precision": ["ms"]}
    h = {k.lower(): v for k, v in req["headers"].items()}
    assert h["authorization"] == "Token s3cret-token"
    assert h["content-type"].startswith("text/plain")
    if use_gzip:
        assert h["content-encoding"] == "gzip"
        body = gzip.decompress(req["body"])
    else:
        assert "content-encoding" not in h or h["content-encoding"] == "identity"
        body = req["body"]
    assert body.rstrip(b"\n") == LINES.rstrip(b"\n")


@pytest.mark.parametrize("status,retryable", [
    pytest.param(400, False, id="400-refused"),
    pytest.param(422, False, id="422-refused"),
    pytest.param(503, True, id="503-retry"),
    pytest.param(401, True, id="401-retry-and-say"),
])
def test_status_classification(server, status, retryable):
    server.statuses.append(status)
    w = V2Writer(url(server), "t", "o", "b", timeout_s=2)
    with netns.entered(server.netns), pytest.raises(SinkError) as exc:
        w.send(LINES)
    assert exc.value.status == status and exc.value.retryable is retryable
    assert f"HTTP {status}" in str(exc.value)


def test_connection_refused_is_retryable(bare_netns):
    w = V2Writer("http://127.0.0.1:9", "t", "o", "b", timeout_s=1)
    with netns.entered(bare_netns), pytest.raises(SinkError) as exc:
        w.send(LINES)
    assert exc.value.retryable and exc.value.status is None


def test_storage_over_v2_spools_503_and_bisects_400(server, tmp_path):
    st = Storage(V2Writer(url(server), "t", "o", "b", timeout_s=2), str(tmp_path), retry_min_s=5, retry_max_s=5)
    pts = [probe_point(f"b{i}", "vm", None, "icmp", "192.0.2.1", None, True, 0.1, None, None, 1.0 + i)
           for i in range(4)]
    with netns.entered(server.netns):
        server.statuses[:] = [503]
        st.write(pts)
        assert st.wait_idle()
        assert st.counters().spool_points == 4
        # replay: whole batch 400, halves: first half ok, second half 400 -> singles: ok, 400
        server.statuses[:] = [400, 204, 400, 204, 400]
        assert st.flush()
    c = st.counters()
    assert (c.spool_points, c.rejected, c.written) == (0, 1, 3)
    bodies = [r["body"] for r in server.requests]
    assert len(bodies) == 6 and bodies[-1].count(b"\n") <= 1 and b"box=b3" in bodies[-1]
    st.close()


def test_query_sends_token_header_and_returns_rows(server):
    with netns.entered(server.netns):
        rows = query(url(server), 'SELECT count("ok") FROM "probe" GROUP BY "box"', db="vobox", token="tok")
    assert rows == [{"_measurement": "probe", "box": "b1", "time": 0, "count": 7}]
    (req,) = server.requests
    assert req["headers"]["Authorization"] == "Token tok"
    qs = urllib.parse.parse_qs(req["path"].partition("?")[2])
    assert qs["db"] == ["vobox"] and qs["q"] == ['SELECT count("ok") FROM "probe" GROUP BY "box"']
