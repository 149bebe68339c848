"""Lab tests of the whole agent: `vobox-agent --netns MON run -c FILE` against real boxes, dockerd and InfluxDB 1.6.

Each test runs the agent as users do (a subprocess inside the lab's monitor
namespace), injects faults with the lab, and asserts exact figures read back
from InfluxDB (each test writes to its own database).
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time

import pytest

from agent import netns
from agent.core.config import load as load_config
from agent.core.cycle import plan_cycle
from tests.agent.agent_proc import AgentProc, errors_in_log, free_port, query, read_status, write_config
from tests.lab_fixtures import ENGINES, lab_unavailable_reason

INTERVAL_S = 1.0
TIMEOUT_S = 0.5

# lab fault kind -> the layer the agent must record
EXPECTED_LAYER = {"l2": "l2", "l3": "l3", "l4": "l4", "stop": "l2"}


@pytest.fixture(scope="module", params=ENGINES)
def wide_lab(request):
    """A lab of its own with 4 containers + 4 VMs, so all eight (box kind, fault) pairs run in one agent run;
    once with the containers on dockerd, once on Podman."""
    reason = lab_unavailable_reason(engine=request.param)
    if reason:
        pytest.skip(reason)
    from lab import Lab

    the_lab = Lab.create(containers=4, vms=4, influx=True, engine=request.param)
    try:
        yield the_lab
    finally:
        the_lab.down()


def _start(agents, lab, cfg_path, log_name="agent.log", cycles=0) -> AgentProc:
    a = AgentProc(lab, cfg_path, os.path.join(os.path.dirname(cfg_path), log_name), cycles=cycles)
    agents.append(a)
    return a


def _db(request) -> str:
    return "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")


def _rows(lab, db, q):
    return query(lab, q, db)


def _started_at(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container], capture_output=True,
                          text=True, check=True).stdout.strip()


def _check_up_matches_freeze(lab, db, box, start_ms, duration_s, gaps=False):
    """box points: up=0 exactly from the freeze's first failing cycle up to its first healthy cycle."""
    rows = _rows(lab, db, f"SELECT up FROM box WHERE box = '{box}' ORDER BY time")
    times = [r["time"] for r in rows]
    down = [r["time"] for r in rows if r["up"] == 0]
    assert down, f"box {box}: no box point with up=0"
    assert down[0] == start_ms, f"box {box}: first up=0 at {down[0]}, freeze starts at {start_ms}"
    first_up_after = next(t for t in times if t > down[-1])
    assert abs(first_up_after - start_ms - duration_s * 1000) <= 2, (
        f"box {box}: up again at {first_up_after}, freeze ends at {start_ms + duration_s * 1000:.0f}")
    inside = [t for t in times if down[0] <= t <= down[-1]]
    assert inside == down, f"box {box}: up=1 points inside the freeze: {sorted(set(inside) - set(down))}"
    if gaps:  # the agent was down for a while: no cycles then, so no duration check from counts
        return
    mean = _rows(lab, db, f"SELECT mean(up) FROM box WHERE box = '{box}'")[0]["mean"]
    assert mean == pytest.approx(1 - len(down) / len(rows), abs=1e-9)
    # mean(up) agrees with the duration: each down cycle stands for one interval
    assert abs(len(down) * INTERVAL_S - duration_s) <= 0.25 * INTERVAL_S, (
        f"box {box}: {len(down)} down cycles vs freeze of {duration_s:.2f} s")


# ---------------------------------------------------------------------------------------------------------
def test_each_fault_kind_is_one_closed_freeze_with_its_layer(wide_lab, agents, tmp_path, request):
    """l2, l3, l4 and stop on containers and VMs at once: one closed freeze each, right layer and duration."""
    lab, db = wide_lab, _db(request)
    plan = {"ctr1": "l2", "ctr2": "l3", "ctr3": "l4", "ctr4": "stop",
            "vm1": "l2", "vm2": "l3", "vm3": "l4", "vm4": "stop"}
    assert sorted(b.name for b in lab.boxes) == sorted(plan)
    # A docker stop by hand is operator intent (state stopped, tests/agent/test_dockerstate_lab.py) unless the
    # box asks for it to be judged: restart_stopped makes the stop a failure, the l2 freeze this test wants.
    cfg = write_config(lab, str(tmp_path), database=db, sections={"correlation": {"enabled": False}},
                       box_keys={"ctr4": {"restart_stopped": True}})
    a = _start(agents, lab, cfg)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 20)
    a.wait_cycles(2)

    truth: dict[str, list[float]] = {}
    for box, kind in plan.items():
        t0 = time.time()
        lab.fault(box, kind)
        truth[box] = [t0, time.time()]
    a.wait_until("all boxes frozen", lambda st: all(b["state"] == "frozen" for b in st["boxes"].values()), 20)
    time.sleep(3 * INTERVAL_S)
    for box in plan:
        t0 = time.time()
        lab.clear(box, wait=True)
        truth[box] += [t0, time.time()]
    a.wait_until("all boxes up again", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    assert a.stop() == 0
    assert errors_in_log(a.log_text()) == []

    report = []
    for box, kind in plan.items():
        fs, fe, cs, ce = truth[box]
        rows = _rows(lab, db, f"SELECT * FROM freeze WHERE box = '{box}'")
        assert len(rows) == 1, f"box {box} ({kind}): {len(rows)} freeze points: {rows}"
        fr = rows[0]
        assert (fr["open"], fr["layer"]) == (0, EXPECTED_LAYER[kind]), f"box {box} ({kind}): {fr}"
        start_s, d = fr["time"] / 1000, fr["duration_s"]
        # The freeze starts at the first failing cycle and ends at the first healthy one: both within one
        # interval (plus the probes' timeout) after the fault went in / came out.
        assert fs - TIMEOUT_S - 0.1 <= start_s <= fe + INTERVAL_S + 0.1, (box, kind, fs, fe, start_s)
        lo, hi = cs - fe, ce - fs
        assert lo - INTERVAL_S - 0.1 <= d <= hi + INTERVAL_S + TIMEOUT_S, (
            f"box {box} ({kind}): duration {d:.2f} s, truth {lo:.2f}..{hi:.2f} s")
        report.append(f"{box}:{kind}->{fr['layer']} {d:.2f}s (truth {lo:.2f}..{hi:.2f})")
        _check_up_matches_freeze(lab, db, box, fr["time"], d)
        ev = fr.get("evidence")
        assert ev and os.path.isdir(ev), f"box {box}: evidence {ev!r} is not a directory"
        assert os.path.isfile(os.path.join(ev, "summary.json")), f"box {box}: no summary.json in {ev}"
        with open(os.path.join(ev, "summary.json"), encoding="utf-8") as fh:
            json.load(fh)
    print("\n" + "\n".join(report))


# ---------------------------------------------------------------------------------------------------------
def test_influx_outage_loses_and_duplicates_no_point(clean_lab, agents, tmp_path, request):
    """InfluxDB down for 30 s mid-run: exactly cycles x targets probe points and cycles x boxes box points."""
    lab, db, cycles = clean_lab, _db(request), 40
    cfg = write_config(lab, str(tmp_path), database=db)
    conf = load_config(cfg)
    targets_per_cycle = len(plan_cycle(conf.boxes).targets)
    assert targets_per_cycle == 8 * len(conf.boxes)  # icmp arp icmp6 ndp + 2 ports x (v4, v6)
    a = _start(agents, lab, cfg, cycles=cycles)
    a.wait_cycles(3)
    lab.influx_stop()
    try:
        time.sleep(30)
    finally:
        lab.influx_start()
    assert a.wait_exit(cycles * INTERVAL_S + 30) == 0
    assert errors_in_log(a.log_text()) == []

    def count(measurement: str, fld: str) -> int:
        rows = _rows(lab, db, f"SELECT count({fld}) FROM {measurement}")
        return rows[0]["count"] if rows else 0

    agent_rows = _rows(lab, db, "SELECT spool_points, write_errors FROM agent ORDER BY time")
    assert len(agent_rows) == cycles
    assert max(r["spool_points"] for r in agent_rows) >= 25 * targets_per_cycle, "the outage was not spooled"
    assert max(r["write_errors"] for r in agent_rows) >= 1
    # The pseudo probe `docker` (container state) is left out: it joins once the events watcher has synced.
    probes_n = _rows(lab, db, "SELECT count(ok) FROM probe WHERE probe != 'docker'")[0]["count"]
    assert probes_n == cycles * targets_per_cycle
    assert count("box", "up") == cycles * len(conf.boxes)
    assert count("box", "state") == cycles * len(conf.boxes)
    per_box = _rows(lab, db, "SELECT count(up) FROM box GROUP BY box")
    assert {r["box"]: r["count"] for r in per_box} == {b.name: cycles for b in conf.boxes}
    assert _rows(lab, db, "SELECT * FROM freeze") == []


# ---------------------------------------------------------------------------------------------------------
def test_kill9_mid_freeze_continues_the_same_freeze(clean_lab, agents, tmp_path, request):
    """kill -9 while suspect and while frozen: the same freeze goes on from its first failing cycle, closes once."""
    lab, db, box = clean_lab, _db(request), "vm1"
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=3)
    a = _start(agents, lab, cfg, "agent1.log")
    a.wait_state(box, "up")
    t_fault = time.time()
    lab.fault(box, "l3")
    first_fail_s = a.wait_state(box, "suspect")["boxes"][box]["since_s"]    # the first failing cycle
    assert a.stop(signal.SIGKILL) == -signal.SIGKILL
    assert _rows(lab, db, f"SELECT * FROM freeze WHERE box = '{box}'") == []

    b = _start(agents, lab, cfg, "agent2.log")
    st = b.wait_state(box, "frozen")
    assert st["boxes"][box]["open_freeze"]["start_s"] == first_fail_s
    assert b.stop(signal.SIGKILL) == -signal.SIGKILL
    open_rows = _rows(lab, db, f"SELECT * FROM freeze WHERE box = '{box}'")
    assert [(r["time"], r["open"]) for r in open_rows] == [(round(first_fail_s * 1000), 1)]
    evidence = open_rows[0]["evidence"]

    time.sleep(2)
    c = _start(agents, lab, cfg, "agent3.log")
    c.wait_cycles(2)
    assert read_status(c.state_dir)["boxes"][box]["open_freeze"]["start_s"] == first_fail_s
    lab.clear(box, wait=True)
    t_clear = time.time()
    c.wait_state(box, "up")
    assert c.stop() == 0
    assert "resuming open freezes of vm1" in c.log_text()
    assert errors_in_log(a.log_text() + b.log_text() + c.log_text()) == []

    rows = _rows(lab, db, f"SELECT * FROM freeze WHERE box = '{box}'")
    assert len(rows) == 1, rows
    fr = rows[0]
    assert (fr["time"], fr["open"], fr["layer"], fr["evidence"]) == (round(first_fail_s * 1000), 0, "l3", evidence)
    assert os.path.isfile(os.path.join(evidence, "summary.json"))
    assert abs(fr["duration_s"] - (t_clear - t_fault)) <= INTERVAL_S + TIMEOUT_S, (fr, t_clear - t_fault)
    # up=0 from the first failing cycle (written by the first agent as suspect, up=1) to the first healthy one
    _check_up_matches_freeze(lab, db, box, fr["time"], fr["duration_s"], gaps=True)
    assert _rows(lab, db, f"SELECT * FROM freeze WHERE box != '{box}'") == []


# ---------------------------------------------------------------------------------------------------------
def test_sigterm_finishes_the_cycle_flushes_and_exits_0(clean_lab, agents, tmp_path, request):
    """SIGTERM mid-cycle while points wait in the spool: the cycle completes, everything is flushed, exit 0."""
    lab, db = clean_lab, _db(request)
    # A box with an l3 fault makes each cycle last about one timeout, so the signal lands inside one.
    # retry_min 60 s: after the first failed write the agent spools for a minute, InfluxDB back or not.
    cfg = write_config(lab, str(tmp_path), database=db, interval=2, timeout=1.5, retry_min=60, retry_max=60)
    conf = load_config(cfg)
    targets = len(plan_cycle(conf.boxes).targets)
    lab.fault("vm1", "l3")
    a = _start(agents, lab, cfg)
    a.wait_cycles(2, timeout_s=20)
    # 5 s of outage: with retry_min 60 s the agent still spools after InfluxDB is back, so only the flush at
    # exit can deliver those points, and the last cycle's agent point says they were waiting (spool_points > 0).
    lab.influx_stop()
    try:
        time.sleep(5)
    finally:
        lab.influx_start()
    before = read_status(a.state_dir)["updated_s"]       # start of the last finished cycle
    # cycles start every 2 s and run about 1.5 s: signal 0.5 s into the next one
    t_next = before + 2.5
    while t_next < time.time() + 0.1:
        t_next += 2
    time.sleep(t_next - time.time())
    t_sig = time.time()
    assert a.stop() == 0
    assert "stopping: finishing the cycle in progress" in a.log_text()
    assert errors_in_log(a.log_text()) == []
    last = read_status(a.state_dir)["updated_s"]
    assert t_sig - 1.0 <= last <= t_sig, f"the cycle in progress at SIGTERM ({t_sig}) did not finish: last {last}"

    last_ms = round(last * 1000)
    assert len(_rows(lab, db, f"SELECT up FROM box WHERE time = {last_ms}ms")) == len(conf.boxes)
    assert len(_rows(lab, db, f"SELECT ok FROM probe WHERE time >= {last_ms}ms AND probe != 'docker'")) == targets
    agent_rows = _rows(lab, db, "SELECT spool_points FROM agent ORDER BY time")
    assert agent_rows[-1]["time"] == last_ms
    assert agent_rows[-1]["spool_points"] > 0, "nothing was spooled at the end: the flush at exit was not tested"
    n = len(agent_rows)
    assert _rows(lab, db, "SELECT count(ok) FROM probe WHERE probe != 'docker'")[0]["count"] == n * targets
    assert _rows(lab, db, "SELECT count(up) FROM box")[0]["count"] == n * len(conf.boxes)
    spool = os.path.join(a.state_dir, "spool")
    assert [f for f in os.listdir(spool) if os.path.getsize(os.path.join(spool, f))] == []


# ---------------------------------------------------------------------------------------------------------
def _post(ns: str, port: int, token: str, payload: dict) -> tuple[int, dict]:
    with netns.entered(ns):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.connect()
    try:
        conn.request("POST", "/webhook", body=json.dumps(payload),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _wait_rows(lab, db, q, n, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    rows = []
    while time.monotonic() < deadline:
        rows = _rows(lab, db, q)
        if len(rows) >= n:
            return rows
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {rows}")


def test_remediation_through_the_runner(clean_lab, agents, tmp_path, request):
    """A paused container is restarted, an l3-frozen VM gets its command, an Alertmanager alert acts once."""
    lab, db = clean_lab, _db(request)
    vm = lab.box("vm1")
    token = "s3cret-token-for-the-lab"
    token_file = tmp_path / "webhook.token"
    token_file.write_text(token + "\n")
    port = free_port(lab.monitor_ns)
    cfg = write_config(
        lab, str(tmp_path), database=db,
        sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 3, "stop_timeout": 2,
                                  "command_timeout": 10, "webhook_listen": f"127.0.0.1:{port}",
                                  "webhook_token_file": str(token_file)}},
        box_keys={"ctr1": {"remediate": ["reconnect_network", "restart_container"]},
                  "ctr2": {"remediate": ["restart_container"]},
                  "vm1": {"remediate": ["command"],
                          "command": ["ip", "netns", "exec", vm.netns, "nft", "delete", "table", "inet",
                                      "vobox_lab_l3"]}})
    ctr1, ctr2 = lab.box("ctr1").container, lab.box("ctr2").container
    started1, started2 = _started_at(ctr1), _started_at(ctr2)
    a = _start(agents, lab, cfg)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 20)
    lab.fault("ctr1", "l4")
    lab.fault("vm1", "l3")
    rows = _wait_rows(lab, db, "SELECT * FROM remediation WHERE trigger = 'auto'", 2, 40, "two auto remediations")
    lab.wait_box("ctr1", timeout_s=10)       # the agent restarted it: TCP answers again, no help from the lab
    lab.wait_box("vm1", timeout_s=10)        # the agent's command removed the drop table
    a.wait_until("ctr1 and vm1 up", lambda st: st["boxes"]["ctr1"]["state"] == "up"
                 and st["boxes"]["vm1"]["state"] == "up", 20)
    by_box = {r["box"]: r for r in rows}
    assert sorted(by_box) == ["ctr1", "vm1"], rows
    r1, rv = by_box["ctr1"], by_box["vm1"]
    assert (r1["action"], r1["outcome"], r1["ok"], r1["recovered"], r1["dry_run"]) == (
        "restart_container", "done", 1, 1, 0), r1
    assert (rv["action"], rv["outcome"], rv["ok"], rv["recovered"], rv["dry_run"]) == ("command", "done", 1, 1, 0), rv
    assert _started_at(ctr1) != started1
    assert subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", ctr1], capture_output=True,
                          text=True).stdout.strip() == "running"

    status, body = _post(lab.monitor_ns, port, token, {
        "receiver": "vobox", "status": "firing", "version": "4", "groupKey": "{}:{box=\"ctr2\"}",
        "alerts": [{"status": "firing", "labels": {"alertname": "VOBoxFrozen", "box": "ctr2"},
                    "annotations": {}, "startsAt": "2026-01-01T00:00:00Z"}]})
    assert status == 202, body
    # ctr2 is healthy: the alert is refused, and that is recorded and answered (issue 14.6).
    assert body["queued"] == [] and body["refused"][0]["outcome"] == "refused", body
    assert body["refused"][0]["reason"].startswith("box 'ctr2' is not frozen"), body
    alert = _wait_rows(lab, db, "SELECT * FROM remediation WHERE trigger = 'alert'", 1, 30, "alert remediation")
    a.wait_cycles(2)
    assert a.stop() == 0
    alert = _rows(lab, db, "SELECT * FROM remediation WHERE trigger = 'alert'")
    assert [(r["box"], r["action"], r["outcome"], r["ok"]) for r in alert] == [("ctr2", "restart_container",
                                                                                  "refused", None)]
    assert alert[0]["reason"].startswith("box 'ctr2' is not frozen")
    assert _started_at(ctr2) == started2
    assert errors_in_log(a.log_text()) == []
    assert len(_rows(lab, db, "SELECT * FROM remediation")) == 3
    freezes = {r["box"]: r for r in _rows(lab, db, "SELECT * FROM freeze")}
    assert sorted(freezes) == ["ctr1", "vm1"]
    assert (freezes["ctr1"]["layer"], freezes["ctr1"]["open"]) == ("l4", 0)
    assert (freezes["vm1"]["layer"], freezes["vm1"]["open"]) == ("l3", 0)


# ---------------------------------------------------------------------------------------------------------
def test_segment_freeze_holds_remediation(clean_lab, agents, tmp_path, request):
    """The whole segment down: one closed segment_freeze, remediation only deferred, nothing restarted."""
    lab, db = clean_lab, _db(request)
    marker = tmp_path / "command-ran"
    cfg = write_config(
        lab, str(tmp_path), database=db,
        sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2, "stop_timeout": 2}},
        box_keys={"ctr1": {"remediate": ["reconnect_network", "restart_container"]},
                  "ctr2": {"remediate": ["reconnect_network", "restart_container"]},
                  # the VM stand-in hangs off the same parent link and subnet: the same L2 domain, no segment key
                  "vm1": {"remediate": ["command"], "command": ["touch", str(marker)]}})
    names = [b.name for b in lab.boxes]
    started = {b.container: _started_at(b.container) for b in lab.boxes if b.container}
    a = _start(agents, lab, cfg)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 20)
    lab.segment_down()
    try:
        a.wait_until("all boxes frozen", lambda st: all(b["state"] == "frozen" for b in st["boxes"].values()), 20)
        a.wait_cycles(4)
    finally:
        lab.segment_up()
    a.wait_until("all boxes up again", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    a.wait_cycles(2)
    assert a.stop() == 0

    seg = _rows(lab, db, "SELECT * FROM segment_freeze")
    assert len(seg) == 1, seg
    segment = f"{lab.monitor_link} {lab.ipv4_subnet}"   # the L2 domain the agent reaches every box through
    assert (seg[0]["segment"], seg[0]["boxes"], seg[0]["open"], seg[0]["layer"]) == (segment, 3, 0, "l2")
    assert sorted(seg[0]["box_names"].split(",")) == sorted(names)
    rem = _rows(lab, db, "SELECT * FROM remediation")
    # a box that froze a cycle before the others waited (settling, recorded too) before the segment held it
    seg_held = [r for r in rem if not r["reason"].startswith("waiting a cycle")]
    assert sorted(r["box"] for r in seg_held) == sorted(names), rem
    for r in rem:   # recorded as held (nothing ran): no ok/recovered
        assert (r["trigger"], r["outcome"], r.get("ok"), r.get("recovered"), r["deferred"]) == ("auto", "held", None, None, 0), r
    for r in seg_held:
        assert r["reason"].startswith(f"segment freeze of {segment} open since"), r
    assert {c: _started_at(c) for c in started} == started
    assert not marker.exists()
    assert _rows(lab, db, "SELECT * FROM container_event") == []
    assert len(_rows(lab, db, "SELECT * FROM freeze")) == 3
    assert errors_in_log(a.log_text()) == []


# ---------------------------------------------------------------------------------------------------------
def _recreate_container(lab, name: str, mac: str) -> None:
    """Remove a container box and run it again as the lab does (same IPs, env, mounts) with the given MAC."""
    lab.recreate_container(name, mac)


def test_mac_change_is_recorded(clean_lab, agents, tmp_path, request):
    """A container recreated with the same IPs but another MAC: one mac_change point per address, old -> new."""
    lab, db, name = clean_lab, _db(request), "ctr2"
    b = lab.box(name)
    old = b.mac
    new = "02:00:5e:10:00:" + ("42" if not old.endswith(":42") else "43")
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=3)
    a = _start(agents, lab, cfg)
    try:
        a.wait_cycles(3)
        _recreate_container(lab, name, new)
        a.wait_cycles(4)
    finally:
        a.stop()
        _recreate_container(lab, name, old)
    rows = _rows(lab, db, "SELECT * FROM mac_change")
    got = sorted((r["box"], r["address"], r["old"], r["new"]) for r in rows)
    assert got == sorted([(name, b.ipv4, old, new), (name, b.ipv6, old, new)])
    arp = _rows(lab, db, f"SELECT last(mac) FROM probe WHERE box = '{name}' AND probe = 'arp'")
    assert arp[0]["last"] == new
    assert errors_in_log(a.log_text()) == []


# ---------------------------------------------------------------------------------------------------------
def test_restart_with_a_full_spool_replays_it(clean_lab, agents, tmp_path, request):
    """Agent run and stopped while InfluxDB is down, started again once it is back: every point arrives once."""
    lab, db = clean_lab, _db(request)
    cfg = write_config(lab, str(tmp_path), database=db)
    conf = load_config(cfg)
    targets = len(plan_cycle(conf.boxes).targets)
    spool = os.path.join(str(tmp_path), "state", "spool")
    lab.influx_stop()
    try:
        a = _start(agents, lab, cfg, "agent1.log", cycles=4)
        assert a.wait_exit(30) == 0
        assert sum(os.path.getsize(os.path.join(spool, f)) for f in os.listdir(spool)) > 0
    finally:
        lab.influx_start()
    b = _start(agents, lab, cfg, "agent2.log", cycles=3)
    assert b.wait_exit(30) == 0
    assert errors_in_log(b.log_text()) == []
    assert len(_rows(lab, db, "SELECT cycle_s FROM agent")) == 7
    assert _rows(lab, db, "SELECT count(ok) FROM probe WHERE probe != 'docker'")[0]["count"] == 7 * targets
    assert _rows(lab, db, "SELECT count(up) FROM box")[0]["count"] == 7 * len(conf.boxes)
    assert [f for f in os.listdir(spool) if os.path.getsize(os.path.join(spool, f))] == []


def test_sigterm_delivered_to_another_thread_still_stops_the_agent(clean_lab, agents, tmp_path, request):
    """The kernel may hand a process's SIGTERM to any of its threads: the agent must still stop (it did not:
    its main thread slept in a lock wait that only a signal to itself interrupts, and the handler never ran)."""
    import ctypes

    lab = clean_lab
    cfg = write_config(lab, str(tmp_path), database=_db(request), interval=1, timeout=0.5)
    a = _start(agents, lab, cfg)
    a.wait_cycles(2, timeout_s=20)
    others = [int(t) for t in os.listdir(f"/proc/{a.pid}/task") if int(t) != a.pid]
    assert others, "the agent has worker threads"
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_tgkill = 234   # x86_64 (linux/arch/x86/entry/syscalls/syscall_64.tbl)
    assert libc.syscall(SYS_tgkill, a.pid, others[-1], signal.SIGTERM) == 0, ctypes.get_errno()
    assert a.wait_exit(15) == 0, a.log_text()[-2000:]
    assert "stopping: finishing the cycle in progress" in a.log_text()
