"""The lab's InfluxDB: reachable from the monitor namespace, stops and starts keeping its data."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from agent import netns

pytestmark = pytest.mark.lab


def _http(lab, method: str, path: str, params: dict, body: bytes | None = None, timeout_s: float = 3.0):
    url = f"{lab.influx_url}{path}?{urllib.parse.urlencode(params)}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with netns.entered(lab.monitor_ns):
        return opener.open(urllib.request.Request(url, data=body, method=method), timeout=timeout_s)


def _ping(lab) -> bool:
    try:
        with _http(lab, "GET", "/ping", {}) as resp:
            return resp.status == 204
    except OSError:
        return False


def test_influx_answers_in_the_monitor_namespace_and_keeps_data_over_an_outage(clean_lab):
    lab = clean_lab
    assert lab.influx_url == "http://127.0.0.1:8086"
    assert _ping(lab)
    with _http(lab, "POST", "/write", {"db": lab.influx_database, "precision": "ms"},
               b"labtest,box=ctr1 up=1i 1700000000000") as resp:
        assert resp.status == 204
    lab.influx_stop()
    assert not _ping(lab)
    assert lab.status()["influx"]["running"] is False
    lab.influx_start()
    assert _ping(lab)
    with _http(lab, "GET", "/query", {"db": lab.influx_database, "q": "SELECT count(up) FROM labtest"}) as resp:
        result = json.load(resp)
    assert result["results"][0]["series"][0]["values"][0][1] == 1
