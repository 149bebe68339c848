"""(c) of issue 26: 200 vm boxes on one segment, 5 independent faults at once: 5 repairs, no segment freeze.

The bench's segment (bench/bench_probes.py Segment: a monitor namespace with no route out, a target namespace
holding 200 addresses of a free /21 of 198.18.0.0/15 and a TCP listener on all of them), a throwaway influxd
in the monitor namespace, and a real `vobox-agent --netns MON run`. A fault removes a box's address from the
target namespace (no ARP, no ping: l2); each box's ladder is a `command` that adds its address back
(`ip -n TARGET addr add {ipv4}/PREFIX dev LINK`), as the fleet test data's vm1 ladder deletes its fault.
Before issue 26 any three of them within 60 s were a segment freeze that held all five, forever.
"""
from __future__ import annotations

import os
import sys
import time

import pytest

from tests.agent.agent_proc import errors_in_log

pytestmark = pytest.mark.lab

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BOXES = 200
FAULTS = 5
INFLUX_PORT = 8086   # inside the segment's own monitor namespace: nobody else listens there


@pytest.fixture
def fleet_segment(lab_available, tmp_path):
    if lab_available:
        pytest.skip(lab_available)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import bench_probes
    finally:
        sys.path.remove(os.path.join(ROOT, "bench"))
    from lab.influx import InfluxServer

    bench_probes.cleanup_leftovers()
    seg = bench_probes.Segment(BOXES, raise_neigh_limits=False)
    influx = None
    try:
        seg.up()
        influx = InfluxServer(str(tmp_path / "influx"), netns=seg.monitor, http_port=INFLUX_PORT)
        influx.start()
        yield seg, influx, bench_probes
    finally:
        if influx is not None:
            influx.stop()
        seg.down()


def _rows(seg, influx, q: str) -> list[dict]:
    """InfluxQL rows (epoch ms), asked from inside the segment's monitor namespace."""
    from agent import netns
    from agent.storage import influx as influx_api

    with netns.entered(seg.monitor):
        return influx_api.query(influx.url, q, db="fleet", epoch="ms")


def _config(seg, influx, tmp_path, tcp_port) -> str:
    lines = ["[agent]", "interval = 2", "timeout = 0.5", "jitter = 0", f'state_dir = "{tmp_path / "state"}"',
             f'interface = "{seg.mlink}"', 'site = "fleet"',
             "", "[freeze]", "fail_cycles = 2", "recover_cycles = 2",
             "", "[influxdb]", f'url = "{influx.url}"', 'api = "v1"', 'database = "fleet"',
             "", "[forensics]", "enabled = false",
             "", "[remediation]", "enabled = true", "cooldown = 1", "verify = 2", "command_timeout = 10",
             "max_per_hour = 50"]
    add = ["ip", "-n", seg.target, "addr", "add", f"{{ipv4}}/{seg.net.prefixlen}", "dev", seg.tlink]
    for i, addr in enumerate(seg.addresses):
        lines += ["", "[[box]]", f'name = "bx{i:04d}"', 'kind = "vm"', f'ipv4 = "{addr}"', f"tcp_ports = [{tcp_port}]",
                  'remediate = ["command"]', "command = [" + ", ".join(f'"{a}"' for a in add) + "]"]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_five_independent_faults_among_200_boxes_are_five_repairs_and_no_segment_freeze(fleet_segment, agents,
                                                                                      tmp_path):
    from tests.agent.agent_proc import AgentProc, read_status

    seg, influx, bench_probes = fleet_segment
    influx.create_database("fleet")
    cfg = _config(seg, influx, tmp_path, bench_probes.TCP_PORT)
    log_path = str(tmp_path / "agent.log")
    fake_lab = type("SegLab", (), {"monitor_ns": seg.monitor})()
    a = AgentProc(fake_lab, cfg, log_path)
    agents.append(a)
    a.wait_until("every box up", lambda st: len(st["boxes"]) == BOXES
                 and all(b["state"] == "up" for b in st["boxes"].values()), 90)
    picks = [BOXES * (k + 1) // (FAULTS + 1) for k in range(FAULTS)]
    fault_s: dict[str, float] = {}
    removed: list[str] = []
    try:
        for i in picks:
            addr = seg.addresses[i]
            bench_probes.sh("ip", "-n", seg.target, "addr", "del", f"{addr}/{seg.net.prefixlen}", "dev", seg.tlink)
            removed.append(addr)
            fault_s[f"bx{i:04d}"] = time.time()
        deadline = time.monotonic() + 90
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = _rows(seg, influx, "SELECT * FROM remediation WHERE outcome = 'done'")
            if len(rows) >= FAULTS:
                break
            assert a.alive(), a.log_text()[-3000:]
            time.sleep(0.5)
        assert len(rows) == FAULTS, (rows, a.log_text()[-4000:])
        a.wait_until("every box up again", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 60)
    finally:
        present = bench_probes.sh("ip", "-n", seg.target, "-o", "-4", "addr", "show", "dev", seg.tlink).stdout
        for addr in removed:   # the agent should have put them back; if not, the segment is restored for cleanup
            if f" {addr}/" not in present:
                bench_probes.sh("ip", "-n", seg.target, "addr", "add", f"{addr}/{seg.net.prefixlen}", "dev",
                                seg.tlink, check=False)
    assert a.stop() == 0
    assert sorted(r["box"] for r in rows) == sorted(fault_s), rows
    for r in rows:
        assert (r["action"], r["trigger"], r["ok"], r["recovered"]) == ("command", "auto", 1, 1), r
    assert _rows(seg, influx, "SELECT * FROM segment_freeze") == []
    other = _rows(seg, influx, "SELECT * FROM remediation WHERE outcome != 'done'")
    assert other == [], other
    freezes = _rows(seg, influx, "SELECT * FROM freeze")
    assert sorted(f["box"] for f in freezes) == sorted(fault_s) and {f["layer"] for f in freezes} == {"l2"}, freezes
    assert errors_in_log(a.log_text()) == []
    assert read_status(str(tmp_path / "state")) is not None
    took = sorted(r["time"] / 1000 + r["duration_s"] - fault_s[r["box"]] for r in rows)
    print(f"\n(c) {BOXES} vm boxes, {FAULTS} faults: fault -> repair (action done) s: "
          + ", ".join(f"{t:.1f}" for t in took) + " (interval 2 s, timeout 0.5 s, fail_cycles 2)")
