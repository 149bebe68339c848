"""Decisions under several faults at once (issue 26), with the real engine, namespaces and InfluxDB.

A lab of its own like the case (../shared/cases/segment-with-live-boxes.md): 3 containers and 2 VMs on one
macvlan segment. (a) three independent faults while two boxes answer: three box freezes, three repairs, no
segment freeze; (b) the parent link down: one segment freeze, every box held, nothing run, released when
the link returns, with the reason; an alert through Debian's real Alertmanager about a box the agent sees
failing but has not confirmed (fail_cycles too high to act alone) opens its freeze and restarts it.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest

from tests.agent.agent_proc import (
    AgentProc,
    errors_in_log,
    free_port,
    query,
    write_config,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def seg_lab(lab_available):
    """3 containers (ctr1..3) and 2 VMs (vm1, vm2) on one segment, with InfluxDB."""
    if lab_available:
        pytest.skip(lab_available)
    from lab import Lab

    the_lab = Lab.create(containers=3, vms=2, influx=True)
    try:
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def lab5(seg_lab):
    yield seg_lab
    seg_lab.prometheus_stop()
    seg_lab.clear_all(wait=True)


def _start(agents, lab, cfg_path) -> AgentProc:
    a = AgentProc(lab, cfg_path, os.path.join(os.path.dirname(cfg_path), "agent.log"))
    agents.append(a)
    return a


def _db(request) -> str:
    return "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")


def _started_at(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}} {{.State.Status}}", container],
                          capture_output=True, text=True, check=True).stdout.strip()


def _wait_rows(lab, db, q, n, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    rows = []
    while time.monotonic() < deadline:
        rows = query(lab, q, db)
        if len(rows) >= n:
            return rows
        time.sleep(0.3)
    raise AssertionError(f"{what}: {len(rows)} of {n} rows after {timeout_s} s: {rows}")


def _vm_command(lab, name):
    """A `command` ladder that removes the lab's l3 fault (its nft drop table) from the VM's namespace."""
    return ["ip", "netns", "exec", lab.box(name).netns, "nft", "delete", "table", "inet", "vobox_lab_l3"]


def test_three_independent_faults_while_two_boxes_answer_are_all_repaired(lab5, agents, tmp_path, request):
    """(a) ctr1 loses its network (l2), vm1 and vm2 drop IP (l3) at once; ctr2 and ctr3 answer throughout.

    Before issue 26: "3 of 5 boxes froze within 60 s", a segment freeze held all three, nothing was repaired.
    """
    lab, db = lab5, _db(request)
    cfg = write_config(
        lab, str(tmp_path), database=db,
        sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2, "stop_timeout": 2}},
        box_keys={"ctr1": {"remediate": ["reconnect_network", "restart_container"]},
                  "ctr2": {"remediate": ["restart_container"]}, "ctr3": {"remediate": ["restart_container"]},
                  "vm1": {"remediate": ["command"], "command": _vm_command(lab, "vm1")},
                  "vm2": {"remediate": ["command"], "command": _vm_command(lab, "vm2")}})
    healthy = {c: _started_at(lab.box(c).container) for c in ("ctr2", "ctr3")}
    a = _start(agents, lab, cfg)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    fault_s = {}
    for name, kind in (("ctr1", "l2"), ("vm1", "l3"), ("vm2", "l3")):
        lab.fault(name, kind)
        fault_s[name] = time.time()
    rows = _wait_rows(lab, db, "SELECT * FROM remediation WHERE outcome = 'done'", 3, 60, "three repairs")
    for name in ("ctr1", "vm1", "vm2"):
        lab.wait_box(name, timeout_s=20)          # repaired by the agent, no help from the lab
    a.wait_until("every box up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    assert a.stop() == 0
    by_box = {r["box"]: r for r in rows}
    assert sorted(by_box) == ["ctr1", "vm1", "vm2"], rows
    assert (by_box["ctr1"]["action"], by_box["vm1"]["action"], by_box["vm2"]["action"]) == (
        "reconnect_network", "command", "command")
    for r in rows:
        assert (r["trigger"], r["ok"], r["recovered"]) == ("auto", 1, 1), r
    assert query(lab, "SELECT * FROM segment_freeze", db) == []
    assert [r for r in query(lab, "SELECT * FROM remediation", db) if r["outcome"] != "done"] == []
    freezes = {r["box"]: r["layer"] for r in query(lab, "SELECT * FROM freeze", db)}
    assert freezes == {"ctr1": "l2", "vm1": "l3", "vm2": "l3"}, freezes
    assert {c: _started_at(lab.box(c).container) for c in healthy} == healthy
    assert errors_in_log(a.log_text()) == []
    repaired = {r["box"]: r["time"] / 1000 + r["duration_s"] - fault_s[r["box"]] for r in rows}
    print("\n(a) fault -> repair (action done) s: " + ", ".join(f"{b} {s:.1f}" for b, s in sorted(repaired.items()))
          + " (interval 1 s, timeout 0.5 s, fail_cycles 2)")


def test_the_parent_link_down_is_one_segment_freeze_held_and_released_when_it_returns(lab5, agents, tmp_path,
                                                                                    request):
    """(b) nothing of the segment answers: one segment freeze, every box held, nothing run; the link returns:
    the freeze ends and says why."""
    lab, db = lab5, _db(request)
    marker = tmp_path / "command-ran"
    cfg = write_config(
        lab, str(tmp_path), database=db,
        sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2, "stop_timeout": 2}},
        box_keys={**{c: {"remediate": ["reconnect_network", "restart_container"]} for c in ("ctr1", "ctr2", "ctr3")},
                  **{v: {"remediate": ["command"], "command": ["touch", str(marker)]} for v in ("vm1", "vm2")}})
    names = sorted(b.name for b in lab.boxes)
    started = {b.container: _started_at(b.container) for b in lab.boxes if b.container}
    a = _start(agents, lab, cfg)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    lab.segment_down()
    try:
        st = a.wait_until("every box frozen and held",
                          lambda st: all(b["state"] == "frozen" and (b.get("held") or {}).get("kind") == "segment"
                                         for b in st["boxes"].values()), 30)
        a.wait_cycles(4)
    finally:
        lab.segment_up()
    for b in st["boxes"].values():
        assert "remediate --force" in b["held"]["reason"], b
    a.wait_until("all boxes up again", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    a.wait_cycles(2)
    assert a.stop() == 0
    seg = query(lab, "SELECT * FROM segment_freeze", db)
    assert len(seg) == 1, seg
    assert (seg[0]["boxes"], seg[0]["open"], seg[0]["layer"]) == (5, 0, "l2"), seg
    assert sorted(seg[0]["box_names"].split(",")) == names
    assert seg[0]["reason"].startswith("the segment answers again: box "), seg
    rem = query(lab, "SELECT * FROM remediation", db)
    assert {r["outcome"] for r in rem} == {"held"}, rem
    assert sorted({r["box"] for r in rem if r["reason"].startswith("segment freeze of")}) == names, rem
    assert {c: _started_at(c) for c in started} == started
    assert not marker.exists()
    assert errors_in_log(a.log_text()) == []


def _post_alert(lab, stack, box):
    """Fire an alert about BOX at Alertmanager's API (another observer's rule), from the monitor namespace."""
    from agent.netns import entered

    body = json.dumps([{"labels": {"alertname": "VoboxBoxFrozen", "box": box, "severity": "critical"},
                        "annotations": {"summary": f"{box}: service down (seen by another monitor)"},
                        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]).encode()
    req = urllib.request.Request(stack.alertmanager_url + "/api/v2/alerts", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with entered(lab.monitor_ns), opener.open(req, timeout=5) as resp:
        assert resp.status == 200


def test_an_alertmanager_alert_about_a_suspect_box_opens_its_freeze_and_restarts_it(lab5, agents, tmp_path,
                                                                                   request):
    """fail_cycles = 1000: the agent alone would never act. ctr2 is paused (suspect); Alertmanager's alert about
    it is the second witness: its freeze opens (from the first failing cycle, opened_by alert) and it is
    restarted. An alert about ctr3, healthy, is refused with that reason."""
    lab, db = lab5, _db(request)
    token_file = tmp_path / "webhook.token"
    token_file.write_text("lab-alertmanager-token\n")
    webhook_port, metrics_port = free_port(lab.monitor_ns), free_port(lab.monitor_ns)
    cfg = write_config(
        lab, str(tmp_path), database=db, fail_cycles=1000,
        sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 3, "stop_timeout": 2,
                                  "webhook_listen": f"127.0.0.1:{webhook_port}",
                                  "webhook_token_file": str(token_file)},
                  "metrics": {"listen": f"127.0.0.1:{metrics_port}"}},
        box_keys={c: {"remediate": ["restart_container"]} for c in ("ctr1", "ctr2", "ctr3")})
    ctr2, ctr3 = lab.box("ctr2").container, lab.box("ctr3").container
    before2, before3 = _started_at(ctr2), _started_at(ctr3)
    a = _start(agents, lab, cfg)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    stack = lab.prometheus_start(f"127.0.0.1:{metrics_port}", f"http://127.0.0.1:{webhook_port}/webhook",
                                 str(token_file), interval_s=1.0)
    lab.fault("ctr2", "pause")
    fault_s = time.time()
    a.wait_state("ctr2", "suspect", timeout_s=20)
    a.wait_cycles(2)
    assert a.wait_state("ctr2", "suspect", timeout_s=5)["boxes"]["ctr2"]["state"] == "suspect"
    alert_s = time.time()
    _post_alert(lab, stack, "ctr2")
    _post_alert(lab, stack, "ctr3")
    deadline = time.monotonic() + 60
    while _started_at(ctr2) == before2 or not _started_at(ctr2).endswith("running"):
        assert time.monotonic() < deadline, (f"ctr2 not restarted 60 s after the alert; alertmanager log:\n"
                                             f"{stack.log_tail('prometheus-alertmanager')}\n"
                                             f"agent log:\n{a.log_text()[-4000:]}")
        time.sleep(0.2)
    restarted_s = time.time()
    a.wait_state("ctr2", "up", timeout_s=30)
    rows = _wait_rows(lab, db, "SELECT * FROM remediation WHERE trigger = 'alert'", 2, 30, "two alert records")
    assert a.stop() == 0
    by_box = {r["box"]: r for r in rows}
    assert sorted(by_box) == ["ctr2", "ctr3"], rows
    assert (by_box["ctr2"]["action"], by_box["ctr2"]["outcome"], by_box["ctr2"]["ok"], by_box["ctr2"]["recovered"]
            ) == ("restart_container", "done", 1, 1), rows
    assert by_box["ctr3"]["outcome"] == "refused", rows
    assert by_box["ctr3"]["reason"].startswith("box 'ctr3' is not frozen: it is healthy"), rows
    assert _started_at(ctr3) == before3
    (fr,) = query(lab, "SELECT * FROM freeze WHERE box = 'ctr2'", db)
    assert (fr["opened_by"], fr["open"]) == ("alert", 0), fr
    assert fault_s - 2 <= fr["time"] / 1000 < alert_s, (fr, fault_s, alert_s)   # the first failing cycle
    down = query(lab, "SELECT up FROM box WHERE box = 'ctr2' AND up = 0", db)
    assert down and down[0]["time"] == fr["time"], (down, fr)                    # the outage counted from there
    assert query(lab, "SELECT * FROM remediation WHERE trigger = 'auto'", db) == []
    assert errors_in_log(a.log_text()) == []
    print(f"\nalert path (Alertmanager -> webhook -> restart of a suspect box): {restarted_s - alert_s:.1f} s "
          f"from the alert, {restarted_s - fault_s:.1f} s from the pause")
