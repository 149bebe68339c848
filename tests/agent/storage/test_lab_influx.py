"""The lab's InfluxServer: a real influxd in a throwaway network namespace."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

from agent import netns
from lab.influx import InfluxServer, kill_stale


def _gone_or_zombie(pid: int) -> bool:
    """The process PID has exited: no /proc entry, or a zombie not yet reaped."""
    if not os.path.exists(f"/proc/{pid}"):
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] == "Z"


def _write(server: InfluxServer, db: str, body: bytes) -> int:
    req = urllib.request.Request(f"{server.url}/write?db={db}&precision=ms", data=body, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with netns.entered(server.netns), opener.open(req, timeout=5) as resp:
        return resp.status


def test_start_ping_write_query_stop(influx_server):
    assert influx_server.running
    assert influx_server.ping()
    assert influx_server.url == "http://127.0.0.1:8086"
    with open(influx_server.pidfile) as f:
        assert json.load(f)["pid"] == influx_server.pid
    influx_server.create_database("t1")
    assert _write(influx_server, "t1", b"m,box=a v=1i 1700000000000\nm,box=b v=2i 1700000000001\n") == 204
    res = influx_server.query("SELECT count(v) FROM m", db="t1")
    assert res["results"][0]["series"][0]["values"][0][1] == 2
    pid = influx_server.pid
    influx_server.stop()
    assert not influx_server.running and influx_server.pid is None
    assert _gone_or_zombie(pid)
    assert not influx_server.ping()
    assert not os.path.exists(influx_server.pidfile)


def test_listens_inside_its_namespace_only(throwaway_netns, tmp_path):
    """Started in a netns, the port is open there and closed on the host's loopback."""
    import socket

    server = InfluxServer(str(tmp_path / "influx"), netns=throwaway_netns, http_port=18186)
    server.start()
    try:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", 18186)) != 0
        with netns.entered(throwaway_netns), socket.create_connection(("127.0.0.1", 18186), timeout=2):
            pass
    finally:
        server.stop()


def test_restart_keeps_data(influx_server):
    influx_server.create_database("t2")
    _write(influx_server, "t2", b"m v=1i 1700000000000\n")
    influx_server.stop()
    influx_server.start()
    res = influx_server.query("SELECT count(v) FROM m", db="t2")
    assert res["results"][0]["series"][0]["values"][0][1] == 1


def test_kill_stale_finds_crashed_runs_influxd(throwaway_netns, tmp_path):
    base = str(tmp_path / "influx")
    first = InfluxServer(base, netns=throwaway_netns, http_port=8096)
    first.start()
    orphan = first.pid
    first._proc = None          # forget it, as a crashed run would
    second = InfluxServer(base, netns=throwaway_netns, http_port=8096)
    try:
        assert kill_stale(base) == orphan
        time.sleep(0.2)
        subprocess.run(["true"])
        assert _gone_or_zombie(orphan)
        assert kill_stale(base) is None
        second.start()               # the port is free again
        assert second.ping()
    finally:
        second.stop()
        try:
            os.kill(orphan, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_start_fails_with_log_tail_when_port_taken(throwaway_netns, tmp_path):
    import pytest

    from lab.influx import InfluxStartError

    a = InfluxServer(str(tmp_path / "a"), netns=throwaway_netns, http_port=8106)
    b = InfluxServer(str(tmp_path / "b"), netns=throwaway_netns, http_port=8106)
    a.start()
    try:
        with pytest.raises(InfluxStartError, match="already answers"):
            b.start(timeout_s=15)
        assert not b.running
    finally:
        a.stop()
        b.stop()


def test_start_fails_clearly_when_influxd_exits(throwaway_netns, tmp_path):
    """influxd dying during start (here: a namespace that does not exist) raises with the log tail."""
    import pytest

    from lab.influx import InfluxStartError

    server = InfluxServer(str(tmp_path / "x"), netns=throwaway_netns + "-missing", http_port=8086)
    with pytest.raises(InfluxStartError, match=r"(?s)exited with \d+ during start.*Cannot open network namespace"):
        server.start(timeout_s=10)
    assert not server.running and not os.path.exists(server.pidfile)
