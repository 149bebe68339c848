"""Lab: a box failing every other cycle (a real l3 fault toggled in step with the agent's cycles) is degraded with
about 50 % loss; no freeze is opened and nothing is remediated (issue 13, item 5)."""
from __future__ import annotations

import os

from tests.agent.agent_proc import AgentProc, errors_in_log, query, read_status, write_config

INTERVAL_S = 2.0
TIMEOUT_S = 0.5
BOX = "vm1"
TOGGLED_CYCLES = 30     # more than the 21-cycle window


def test_a_box_failing_every_other_cycle_is_degraded_not_frozen_not_remediated(clean_lab, agents, tmp_path):
    lab, db = clean_lab, "t_flapping_every_other_cycle"
    vm = lab.box(BOX)
    # confirm_interval = 0: each failing cycle stays alone (with fast confirmation a fault lasting a whole
    # interval is re-probed within it and is, rightly, a freeze). fail_cycles 2: two failures in a row would freeze.
    # vm1's ladder removes the lab's l3 drop table: a remediation would end the fault, and be recorded.
    cfg = write_config(lab, str(tmp_path), database=db, interval=INTERVAL_S, timeout=TIMEOUT_S, confirm_interval=0,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2},
                                 "flapping": {"window_cycles": 21}},
                       box_keys={BOX: {"remediate": ["command"],
                                       "command": ["ip", "netns", "exec", vm.netns, "nft", "delete", "table", "inet",
                                                   "vobox_lab_l3"]}})
    a = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
    agents.append(a)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)

    # Toggle the real fault right after each cycle ends (status.json is written at the end of every cycle), so
    # the next cycle sees it on, the one after off: the box fails every other cycle.
    last = read_status(a.state_dir)["updated_s"]
    on = False
    start_ms = None
    states: set[str] = set()
    for _ in range(TOGGLED_CYCLES):
        st = a.wait_until("the next cycle", lambda s, t=last: s["updated_s"] != t, 20)
        last = st["updated_s"]
        states.add(st["boxes"][BOX]["state"])
        on = not on
        if on:
            lab.fault(BOX, "l3")
        else:
            lab.clear(BOX, wait=False)
        if start_ms is None:
            start_ms = round(last * 1000) + 1
    st = a.wait_until("the last toggled cycle", lambda s, t=last: s["updated_s"] != t, 20)
    lab.clear(BOX, wait=True)
    states.add(st["boxes"][BOX]["state"])
    degraded = st["boxes"][BOX]["degraded"]
    end_ms = round(st["updated_s"] * 1000) + 1
    assert a.stop() == 0
    assert errors_in_log(a.log_text()) == []

    assert states <= {"up", "suspect"}, states                       # never frozen
    assert degraded["degraded"] is True, degraded
    assert 0.38 <= degraded["failed_share"] <= 0.62, degraded       # about 50 % of the window failed
    assert degraded["percent_state_change"] > 30, degraded
    assert f"box {BOX}: DEGRADED" in a.log_text()
    assert query(lab, f"SELECT * FROM freeze WHERE box = '{BOX}'", db) == []
    assert query(lab, "SELECT * FROM remediation", db) == []
    w = f"box = '{BOX}' AND time >= {start_ms}ms AND time < {end_ms}ms"
    (row,) = query(lab, f'SELECT count("up") AS n, mean("up") AS up, mean("healthy") AS healthy, '
                        f'max("degraded") AS degraded FROM box WHERE {w}', db)
    print(f"\n{BOX} over {row['n']} cycles: status {degraded}; InfluxDB mean(up) {row['up']:.3f}, "
          f"mean(healthy) {row['healthy']:.3f}, max(degraded) {row['degraded']}")
    assert row["n"] >= TOGGLED_CYCLES - 2, row
    assert row["up"] == 1.0 and row["degraded"] == 1, row             # freeze-based: 100 %; degraded stored
    assert 0.4 <= row["healthy"] <= 0.6, row                           # every failed cycle: about 50 %
    others = query(lab, f"SELECT max(\"degraded\") AS d FROM box WHERE box != '{BOX}' AND time >= {start_ms}ms "
                        "GROUP BY box", db)
    assert others and all(r["d"] == 0 for r in others), others
