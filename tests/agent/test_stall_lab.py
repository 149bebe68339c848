"""The whole agent writing to a stalled InfluxDB (issue 15.2): the lab's real influxd gets SIGSTOP, so it accepts
TCP connections (the kernel completes the handshakes) and never answers. Probing must not notice: no misfire,
cycle_s unchanged, and once influxd is resumed every point of the stall is delivered, exactly once."""
from __future__ import annotations

import os
import signal
import socket
import statistics
import time

import pytest

from agent import netns
from tests.agent.agent_proc import AgentProc, errors_in_log, query, write_config

pytestmark = pytest.mark.lab

STALL_CYCLES = 12
WRITE_TIMEOUT_S = 5


def _answers(lab, timeout_s: float) -> bool:
    """True when influxd sends anything back to a GET /ping within timeout_s (from the monitor namespace)."""
    host, port = lab.influx_url.split("//")[1].rsplit(":", 1)
    with netns.entered(lab.monitor_ns):
        sock = socket.create_connection((host, int(port)), timeout=timeout_s)   # the handshake completes
    try:
        sock.settimeout(timeout_s)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return bool(sock.recv(64))
    except TimeoutError:
        return False
    finally:
        sock.close()


def test_stalled_influxdb_costs_the_cycle_nothing(clean_lab, tmp_path):
    lab, db = clean_lab, "t_stalled_influx"
    pid = lab.status()["influx"]["pid"]
    assert pid and _answers(lab, 2.0)
    cfg = write_config(lab, str(tmp_path), database=db, write_timeout=WRITE_TIMEOUT_S)
    a = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
    stopped = False
    try:
        a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
        a.wait_cycles(6)
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        t_stop = time.time()
        assert not _answers(lab, 1.0)   # a stalled server: connects, never answers
        a.wait_cycles(STALL_CYCLES, timeout_s=STALL_CYCLES * 3)
        t_cont = time.time()
        os.kill(pid, signal.SIGCONT)
        stopped = False
        a.wait_cycles(4, timeout_s=30)
        assert a.stop() == 0
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        a.ensure_gone()
    assert errors_in_log(a.log_text()) == []
    boxes = len(lab.boxes)
    agent = query(lab, "SELECT cycle_s, misfires, queued, write_errors, spool_points FROM agent", db)
    stall = [r for r in agent if t_stop * 1000 < r["time"] < t_cont * 1000]
    before = [r for r in agent if r["time"] < t_stop * 1000][2:]   # the first cycles warm up
    assert len(stall) >= STALL_CYCLES - 1, (len(stall), agent)
    # the writer really was held: points waited in its queue or spool during the stall
    assert any((r["queued"] or 0) + (r["spool_points"] or 0) > 0 for r in stall), stall
    assert max(r["misfires"] for r in agent) == 0
    c_before = statistics.median(r["cycle_s"] for r in before)
    c_stall = statistics.median(r["cycle_s"] for r in stall)
    # a write in the cycle would hold it up to write_timeout (5 s); here it costs nothing measurable
    assert max(r["cycle_s"] for r in stall) < 1.0, stall
    assert abs(c_stall - c_before) < 0.25, (c_before, c_stall)
    # every cycle's points arrived, the stall's included, each once: one box point per box and cycle
    n_box = query(lab, "SELECT count(up) FROM box", db)[0]["count"]
    assert n_box == len(agent) * boxes, (n_box, len(agent), boxes)
    t0, t1 = int(t_stop * 1000), int(t_cont * 1000)
    n_stall = query(lab, f"SELECT count(up) FROM box WHERE time > {t0}ms AND time < {t1}ms", db)[0]["count"]
    assert n_stall == len(stall) * boxes, (n_stall, len(stall), boxes)
