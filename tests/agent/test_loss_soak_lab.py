"""Short soak on a lossy segment (issue 15.4): 1 % random loss each way, interval 2 s, the default thresholds.

No false freeze over the run, and an injected fault is still detected within the thresholds.
bench/bench_loss.py is the long version (1 % and 5 %, intervals 10 s and 2 s, many faults).
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.agent.agent_proc import AgentProc, errors_in_log, query, write_config

pytestmark = pytest.mark.lab

LOSS_PERCENT = 1.0
INTERVAL_S, TIMEOUT_S, JITTER_S = 2.0, 1.0, 0.5    # [agent] timeout and jitter at their defaults
FAIL_CYCLES, CONFIRM_S = 3, 1.0                      # [freeze] defaults
SOAK_S = 150.0
FAULT_AT_S = 100.0
# the first failing cycle starts within interval + jitter of the fault and lasts a timeout; the probe loop runs
# the fail_cycles - 1 confirmation passes back to back after it (start to start max(confirm, timeout)), a
# cycle falling due meanwhile waiting for them; 1 s of slack for a loaded machine
DETECT_BOUND_S = INTERVAL_S + JITTER_S + FAIL_CYCLES * max(CONFIRM_S, TIMEOUT_S) + 1.0


def _frozen_at(log_text: str, box: str) -> list[float]:
    """Epoch times of the agent's `box BOX: FROZEN` log records (JSON log lines)."""
    out = []
    for line in log_text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("message", "").startswith(f"box {box}: FROZEN"):
            out.append(datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp())
    return out


def test_no_false_freeze_at_1_percent_loss_and_a_fault_is_still_detected(clean_lab, tmp_path):
    lab, db = clean_lab, "t_loss_soak"
    cfg = write_config(lab, str(tmp_path), database=db, interval=INTERVAL_S, timeout=TIMEOUT_S, jitter=JITTER_S,
                       fail_cycles=FAIL_CYCLES, recover_cycles=2)
    assert "confirm_interval" not in Path(cfg).read_text()   # the default
    lab.loss(LOSS_PERCENT)
    a = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"), global_args=("--log-json",))
    t_start = time.time()
    try:
        a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
        time.sleep(max(0.0, t_start + FAULT_AT_S - time.time()))
        t_fault = time.time()
        lab.fault("vm1", "l3")
        a.wait_state("vm1", "frozen", timeout_s=DETECT_BOUND_S + 10)
        lab.clear("vm1")
        t_clear = time.time()
        a.wait_state("vm1", "up", timeout_s=30)
        time.sleep(max(0.0, t_start + SOAK_S - time.time()))
        counters = lab.loss_counters()
        assert a.stop() == 0
    finally:
        a.ensure_gone()
    assert errors_in_log(a.log_text()) == []
    # the loss really was there: about 1 % of what the monitor received was dropped
    seen, dropped = counters["monitor"]
    assert seen > 1000 and 0.003 < dropped / seen < 0.02, counters
    freezes = query(lab, "SELECT * FROM freeze", db)
    assert [(f["box"], f["layer"], f["open"]) for f in freezes] == [("vm1", "l3", 0)], freezes
    f = freezes[0]
    assert t_fault * 1000 <= f["time"] <= t_clear * 1000
    detected = [t for t in _frozen_at(a.log_text(), "vm1") if t >= t_fault]
    assert detected and detected[0] - t_fault <= DETECT_BOUND_S, (detected, t_fault, DETECT_BOUND_S)
    cycles = len(query(lab, "SELECT cycle_s FROM agent", db))
    assert cycles >= 0.8 * SOAK_S / (INTERVAL_S + JITTER_S)
