"""`report --prometheus`: the pure reading of counters, and one-line errors with what was tried and what to check.

The reader against a real Prometheus: test_prometheus_report_lab.py (two agents) and test_prometheus_synth_lab.py
(a backfilled fleet). Here a local HTTP server stands in only for answers Prometheus 2.42 cannot give (401 of an
authenticating proxy, 404 of a wrong base path, a page that is not JSON), and records the exact requests.
"""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse

import pytest

from agent.report.prom import Api, PromError, counter_increase, http_fetch

AGENT = [sys.executable, "-m", "agent"]
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


@pytest.mark.parametrize(("samples", "start_s", "want"), [
    pytest.param([(0, 5), (10, 7), (20, 9)], 0, 4, id="from-the-baseline"),
    pytest.param([(10, 2), (20, 9)], 0, 9, id="began-in-the-range-from-0"),
    pytest.param([(0, 100), (10, 110), (20, 3), (30, 8)], 0, 18, id="a-reset-counts-the-new-value"),
    pytest.param([(0, 100), (10, 110), (20, 3), (30, 8)], 15, 8, id="baseline-before-the-reset"),
    pytest.param([(0, 4)], 0, 0, id="nothing-after-the-start"),
])
def test_counter_increase(samples, start_s, want):
    assert counter_increase(samples, start_s) == want


class _Stub(http.server.BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}
    seen: list[tuple[str, dict[str, str], dict[str, list[str]]]] = []

    def do_POST(self):   # http.server's name for it
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, urllib.parse.parse_qs(body)))
        status, payload = self.answers.get(self.path, (404, b"404 page not found\n"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    _Stub.answers, _Stub.seen = {}, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_headers_and_token_are_sent_with_every_query(stub, tmp_path):
    _, url = stub
    _Stub.answers["/prom/api/v1/query"] = (200, json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"site": "a"}, "value": [1, "2"]}]}}).encode())
    api = Api(http_fetch(url + "/prom/", {"X-Scope-OrgID": "alice", "Authorization": "Bearer t0k"}))
    assert api.vector("up", 1700000000) == [({"site": "a"}, 2.0)]
    path, headers, form = _Stub.seen[0]
    assert path == "/prom/api/v1/query"
    assert headers["x-scope-orgid"] == "alice" and headers["authorization"] == "Bearer t0k"
    assert form == {"query": ["up"], "time": ["1700000000.000"]}


@pytest.mark.parametrize(("status", "body", "expected"), [
    pytest.param(401, b"unauthorized", "HTTP 401 Unauthorized; check --header/--bearer-token-file", id="401"),
    pytest.param(404, b"404 page not found", "HTTP 404 Not Found; check the URL: the query API's base", id="404"),
    pytest.param(200, b"<html>Grafana</html>", "the answer is not JSON", id="not-json"),
    pytest.param(422, b'{"status":"error","errorType":"execution","error":"query processing would load too many '
                      b'samples into memory"}', "HTTP 422 execution: query processing would load too many samples",
                 id="api-error"),
])
def test_a_failing_server_is_one_line_with_what_was_tried(stub, status, body, expected):
    _, url = stub
    _Stub.answers["/api/v1/query"] = (status, body)
    with pytest.raises(PromError) as err:
        Api(http_fetch(url)).vector("vobox_box_cycles_total", 1)
    msg = str(err.value)
    assert "\n" not in msg and f"POST {url}/api/v1/query (vobox_box_cycles_total)" in msg and expected in msg


def _report(*args, cwd=ROOT):
    return subprocess.run([*AGENT, "report", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["--prometheus", "http://x", "--header", "no-colon", "--site", "a"],
                 "--header 'no-colon': expected NAME:VALUE", id="header"),
    pytest.param(["--prometheus", "http://x"], "--prometheus needs --site NAME or --all-sites", id="no-site"),
    pytest.param(["--prometheus", "http://x", "--site", "a", "--bearer-token-file", "/nonexistent/t"],
                 "--bearer-token-file: cannot read '/nonexistent/t'", id="token-file"),
    pytest.param([], "-c FILE is needed to read InfluxDB (or --prometheus URL)", id="neither"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, expected):
    proc = _report(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and expected in proc.stderr, proc.stderr


def test_the_command_reports_a_failing_server_in_one_line(stub):
    _, url = stub
    proc = _report("--prometheus", url + "/wrong", "--all-sites")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"vobox-agent report: cannot read Prometheus: POST {url}/wrong/api/v1/query")
    assert "HTTP 404" in proc.stderr and "check the URL" in proc.stderr


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (box, vobox_site) (vobox_box_cycles_total{vobox_site="a",box=~"c.*"})', "vobox_box_cycles_total"),
    ("resets(vobox_freezes_total[5m]) > 0 and on(box) vobox_box_up", "vobox_box_up, vobox_freezes_total"),
    ('max_over_time(vobox_box_up{job="x"}[1m:30s]) offset 5m', "vobox_box_up"),
    ("1 + 2", "a query"),
])
def test_an_error_line_names_the_metrics_never_the_query(expr, names):
    """issue 33: one line that says what was tried (the metrics read), without the query string."""
    from agent.report.prom import _reading

    said = _reading(expr)
    assert said == names
    assert not any(c in said for c in '{}[]()="~')
