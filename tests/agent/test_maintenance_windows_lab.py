"""Lab test of a maintenance window: a real agent process, the real engine, a real fault on a container box.

A window started mid-fault (`vobox-agent maintenance start`, while the box is suspect): no freeze,
no remediation (the agent's ladder would reconnect the container; `remediate --force` is refused
with the reason), points stored tagged maintenance=true without up, the report's availability
leaves the window out and shows it, the Grafana annotation query finds it. `maintenance end` while
the fault persists: a freeze opens within the usual thresholds and is remediated as usual.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from agent import netns
from agent.cli import build_parser
from tests.agent.agent_proc import AgentProc, errors_in_log, query, read_status, write_config
from tests.lab_fixtures import arp_answers

INTERVAL_S = 1.0
TIMEOUT_S = 0.5
FAIL_CYCLES = 5          # room for the command to land while the box is still suspect
REASON = "lab kernel upgrade"
GRAFANA = os.path.join(os.path.dirname(__file__), "..", "..", "grafana", "dashboards")


def _maintenance(lab, *argv: str) -> int:
    """`vobox-agent maintenance ARGV` in this process, inside the lab's monitor namespace (its InfluxDB is there)."""
    args = build_parser().parse_args(["maintenance", *argv])
    with netns.entered(lab.monitor_ns):
        return args.func(args)


def _annotation_query(box: str, from_ms: int, to_ms: int) -> str:
    """The fleet dashboard's Maintenance annotation query, expanded as Grafana does for one box."""
    with open(os.path.join(GRAFANA, "fleet-stability.json"), encoding="utf-8") as fh:
        dash = json.load(fh)
    q = next(a["target"]["query"] for a in dash["annotations"]["list"] if a.get("name") == "Maintenance")
    return (q.replace("/^$site$/", "/^.*$/").replace("/^$kind$/", "/^.*$/").replace("/^$box$/", f"/^{box}$/")
            .replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms"))


def test_a_maintenance_window_mid_fault_opens_no_freeze_acts_on_nothing_and_leaves_availability(
        clean_lab, agents, tmp_path, request, capsys):
    from agent.report import build_report, read_fleet, render_text

    lab, box = clean_lab, "ctr1"
    db = "t_" + request.node.name.replace("-", "_")[:60]
    ipv4 = lab.box(box).ipv4
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=FAIL_CYCLES,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2}},
                       box_keys={box: {"remediate": ["reconnect_network"]}})
    a = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
    agents.append(a)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 20)
    a.wait_cycles(2)
    t0_ms = int(time.time() * 1000)

    lab.fault(box, "l2")                          # docker network disconnect: no ARP, no ping, no TCP
    a.wait_state(box, "suspect", timeout_s=10)
    assert _maintenance(lab, "start", "-c", cfg, box, "--for", "1h", "--reason", REASON) == 0
    t_start = time.time()
    out = capsys.readouterr()
    assert "recorded in InfluxDB" in out.out, out
    assert oct(os.stat(os.path.join(a.state_dir, "maintenance.json")).st_mode & 0o777) == "0o600"

    st = a.wait_state(box, "maintenance", timeout_s=5)
    m = st["boxes"][box]["maintenance"]
    assert m["reason"] == REASON and m["source"] == "command" and "uid" in m["who"], m
    # Well over fail_cycles + cooldown + verify: still in maintenance, no freeze, the fault left alone.
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        a.wait_cycles(1)
        s = read_status(a.state_dir)["boxes"][box]
        assert s["state"] == "maintenance" and s["open_freeze"] is None, s
    assert not arp_answers(lab, ipv4), "the container was reconnected during its maintenance"

    # A forced manual action is refused too, with the reason (issue 18), and recorded.
    proc = subprocess.run([sys.executable, "-m", "agent", "--netns", lab.monitor_ns, "remediate", "-c", cfg, box,
                           "reconnect_network", "--force", "--reason", "test"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and f"maintenance: {REASON}" in proc.stderr, proc
    assert not arp_answers(lab, ipv4)

    # The end, while the fault persists: a freeze opens within the usual thresholds, then remediation acts.
    assert _maintenance(lab, "end", "-c", cfg, box) == 0
    t_end = time.time()
    st = a.wait_state(box, "frozen", timeout_s=20)
    detect_s = time.time() - t_end
    limit_s = (FAIL_CYCLES + 1) * INTERVAL_S + TIMEOUT_S + 1.0
    print(f"\nafter `maintenance end` the persisting fault froze the box in {detect_s:.2f} s (limit {limit_s:.2f} s)")
    assert detect_s <= limit_s
    assert st["boxes"][box]["maintenance"] is None
    a.wait_state(box, "up", timeout_s=30)        # reconnect_network healed it
    a.wait_cycles(2)
    t_stop_ms = int(time.time() * 1000)
    assert a.stop() == 0
    assert errors_in_log(a.log_text()) == []

    start_ms, end_ms = int(t_start * 1000), int(t_end * 1000)
    # No freeze but the one after the end.
    freezes = query(lab, f"SELECT * FROM freeze WHERE box = '{box}'", db)
    assert len(freezes) == 1 and freezes[0]["time"] >= end_ms - 1000 * (INTERVAL_S + TIMEOUT_S), freezes
    # Nothing ran before the end; the forced request is a refusal with the reason.
    rem = query(lab, f"SELECT * FROM remediation WHERE box = '{box}'", db)
    before = [r for r in rem if r["time"] < end_ms]
    assert [(r["outcome"], r["reason"]) for r in before] == [("refused", f"maintenance: {REASON}")], before
    after = [r for r in rem if r["time"] >= end_ms]
    assert any(r["outcome"] == "done" and r["recovered"] == 1 for r in after), after
    # Points of the window: tagged, no up, state maintenance; the probes there failed (the fault went on).
    marked = query(lab, f"SELECT * FROM box WHERE box = '{box}' AND maintenance = 'true'", db)
    assert len(marked) >= 8 and all(r["up"] is None and r["state"] == "maintenance" for r in marked), marked[:3]
    edge_ms = int(1000 * (INTERVAL_S + TIMEOUT_S))   # a point's time is its cycle's start; the window is read
    assert all(start_ms - edge_ms <= r["time"] <= end_ms for r in marked)   # after the sweep: up to a cycle
    failed = query(lab, f"SELECT ok FROM probe WHERE box = '{box}' AND maintenance = 'true' AND ok = 0", db)
    assert failed, "no failed probe point stored during the window"
    unmarked = query(lab, f"SELECT * FROM box WHERE box = '{box}' AND maintenance != 'true' "
                          f"AND time > {start_ms + edge_ms}ms AND time < {end_ms - edge_ms}ms", db)
    assert unmarked == [], unmarked[:3]
    # The agent's start and end points (the dashboards' annotations) and the command's records (who).
    events = query(lab, f"SELECT * FROM maintenance WHERE box = '{box}'", db)
    assert sorted((r["origin"], r["event"]) for r in events) == [("agent", "end"), ("agent", "start"),
                                                                 ("command", "end"), ("command", "start")], events
    anno = query(lab, _annotation_query(box, t0_ms, t_stop_ms), db)
    assert [(r["event"], r["reason"]) for r in anno] == [("start", REASON), ("end", REASON)], anno

    # The report: the window is shown per box and left out of availability.
    def rows(q: str) -> list:
        return query(lab, q, db)

    report = build_report(read_fleet(rows, t0_ms, t_stop_ms, INTERVAL_S))
    g = next(x for x in report.boxes if x.name == box)
    window_s = t_end - t_start
    print(f"window {window_s:.1f} s; report: maintenance {g.maintenance_s:.0f} s, availability "
          f"{g.availability.value:.4f}, freezes {g.freezes}")
    assert window_s - 3 * INTERVAL_S <= g.maintenance_s <= window_s + 3 * INTERVAL_S
    frozen_s = (g.box_days * 86400) * (1 - g.availability.value)
    assert g.freezes == 1 and frozen_s < window_s / 2, (frozen_s, window_s)   # the down window is not counted
    text = render_text(report)
    assert "maintenance" in text.splitlines()[3] and "left out of" in text
