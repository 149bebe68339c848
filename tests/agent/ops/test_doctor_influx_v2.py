"""doctor's v2 checks against a local HTTP server that answers like InfluxDB 2.x (no 2.x server can run here)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from agent.core import config
from agent.ops import doctor

TOKEN = "s3cret"


class _Influx2(BaseHTTPRequestHandler):
    buckets: list[str] = []
    requests: list[tuple[str, str, dict, str | None]] = []

    def log_message(self, *_a):
        pass

    def _send(self, code, body=None):
        data = json.dumps(body or {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code == 204:
            self.send_header("X-Influxdb-Version", "v2.7.1")
        self.end_headers()
        if code != 204:
            self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append(("GET", url.path, q, self.headers.get("Authorization")))
        if url.path == "/ping":
            return self._send(204)
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            return self._send(401, {"code": "unauthorized", "message": "unauthorized access"})
        if url.path == "/api/v2/buckets":
            if q.get("org") != "wlcg":
                return self._send(404, {"code": "not found", "message": f"organization name \"{q.get('org')}\" not found"})
            return self._send(200, {"buckets": [{"name": b} for b in self.buckets if b == q.get("name")]})
        if url.path == "/api/v2/orgs":
            return self._send(200, {"orgs": [{"id": "0123456789abcdef", "name": "wlcg"}]})
        return self._send(404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("POST", self.path, body, self.headers.get("Authorization")))
        if self.path == "/api/v2/buckets" and body.get("orgID") == "0123456789abcdef":
            self.buckets.append(body["name"])
            return self._send(201, {"name": body["name"]})
        return self._send(400)


@pytest.fixture
def influx2():
    _Influx2.buckets = []
    _Influx2.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Influx2)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _influx(url, token=TOKEN, org="wlcg"):
    return config.loads(f'[influxdb]\nurl = "{url}"\napi = "v2"\ntoken = "{token}"\norg = "{org}"\nbucket = "vobox"\n'
                        '[[box]]\nname = "v"\nkind = "vm"\nipv4 = "192.0.2.9"\n').influxdb


def test_v2_wrong_token(influx2):
    res = doctor.check_influx(_influx(influx2, token="wrong"))
    assert [r.label for r in res] == ["PASS", "FAIL"]
    assert "token refused: HTTP 401" in res[1].detail and "token" in res[1].fix
    assert "v2.7.1" in res[0].detail


def test_v2_wrong_org(influx2):
    res = doctor.check_influx(_influx(influx2, org="cern"))
    assert res[-1].label == "FAIL" and "organization 'cern' not found" in res[-1].detail


def test_v2_missing_bucket_then_created(influx2):
    res = doctor.check_influx(_influx(influx2))
    assert [r.label for r in res] == ["PASS", "PASS", "FAIL"]
    assert "bucket 'vobox' not found" in res[2].detail and "--create-database" in res[2].fix
    res = doctor.check_influx(_influx(influx2), create_database=True)
    assert res[2].ok and "created" in res[2].detail
    post = [r for r in _Influx2.requests if r[0] == "POST"]
    assert post == [("POST", "/api/v2/buckets", {"orgID": "0123456789abcdef", "name": "vobox", "retentionRules": []},
                     f"Token {TOKEN}")]
    res = doctor.check_influx(_influx(influx2))
    assert res[2].ok and "exists" in res[2].detail
