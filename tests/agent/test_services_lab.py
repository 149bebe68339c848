"""Lab tests of service probes and in-container checks: the real agent against real boxes, dockerd (and Podman)
and InfluxDB.

One agent run (services=True: http on 8084, tls on 8443, path /cvmfs/alice.cern.ch, x509 of
the proxy file) while the lab hangs the service, hangs and breaks CVMFS, and serves expired and
nearly expired certificates. Each must be an l7 freeze (or, for a certificate 3 days from
expiry, a warning and no freeze), and a hung mount must never stall a cycle.
"""
from __future__ import annotations

import os
import time

import pytest

from lab import agent_config
from tests.agent.agent_proc import AgentProc, query, read_status, write_config

INTERVAL_S = 1.0
TIMEOUT_S = 0.5
FAIL_CYCLES = 2
# Detection: fail_cycles failing cycles (confirmation passes at 1 s), plus a cycle of slack and the
# time the lab takes to apply the fault.
DETECT_S = (FAIL_CYCLES + 2) * INTERVAL_S + 4.0


@pytest.fixture
def agent(clean_engine_lab, tmp_path, request):
    """The agent with the lab's service probes and checks, both container boxes with a 30-day proxy."""
    lab = clean_engine_lab
    ctrs = [b for b in lab.boxes if b.kind == "container"]
    for b in ctrs:
        lab.set_proxy(b.name, 30)
    db = "t_" + request.node.name
    cfg = write_config(lab, str(tmp_path), database=db, services=True, interval=INTERVAL_S, timeout=TIMEOUT_S,
                       fail_cycles=FAIL_CYCLES)
    proc = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
    try:
        for b in lab.boxes:
            proc.wait_state(b.name, "up", 30.0)
        yield lab, proc, db, ctrs
    finally:
        proc.ensure_gone()
        for b in ctrs:   # the session lab's certificates back to the default
            lab.set_tls_cert(b.name, 365)


def _freeze(lab, proc, box: str, fault_at_s: float) -> dict:
    st = proc.wait_until(f"box {box} frozen", lambda s: s["boxes"][box]["state"] == "frozen", DETECT_S + 10)
    took_s = time.time() - fault_at_s
    assert took_s <= DETECT_S, f"box {box}: frozen after {took_s:.1f} s (> {DETECT_S:g} s)"
    return st["boxes"][box]


def test_proxy_path_matches_the_lab():
    from lab.lab import PROXY_PATH

    assert agent_config.PROXY_PATH == PROXY_PATH


@pytest.mark.parametrize("fault", ["hang", "cvmfs-hang", "cvmfs-error"])
def test_service_and_cvmfs_faults_are_l7_freezes(agent, fault):
    lab, proc, db, ctrs = agent
    box, other = ctrs[0].name, ctrs[1].name
    t0 = time.time()
    lab.fault(box, fault)
    st = _freeze(lab, proc, box, t0)
    assert st["layer"] == "l7" and st["open_freeze"]["layer"] == "l7", st
    proc.wait_cycles(3)
    now = read_status(proc.state_dir)
    assert now["boxes"][box]["state"] == "frozen" and now["boxes"][other]["state"] == "up", now
    # Cycle times while the fault holds: a hung mount must never stall a cycle.
    rows = query(lab, f"SELECT cycle_s FROM agent WHERE time >= {int(t0 * 1000)}ms", db)
    cycles = [r["cycle_s"] for r in rows]
    print(f"{fault}: cycle_s during the fault: max {max(cycles):.3f} s, mean {sum(cycles) / len(cycles):.3f} s "
          f"over {len(cycles)} cycles (interval {INTERVAL_S:g} s)")
    assert len(cycles) >= 3 and max(cycles) < INTERVAL_S, cycles
    lab.clear(box)
    proc.wait_state(box, "up", 20.0)
    frz = query(lab, f"SELECT layer, open FROM freeze WHERE box = '{box}'", db)
    # A hung service keeps accepting connections until its listen backlog is full; then connects
    # time out too and the freeze (l7 when detected, asserted above) deepens to l4, as it should.
    assert len(frz) == 1 and frz[0]["open"] == 0, frz
    assert frz[0]["layer"] == "l7" or (fault == "hang" and frz[0]["layer"] == "l4"), frz
    failed = query(lab, f"SELECT probe, error, layer FROM probe WHERE box = '{box}' AND ok = 0", db)
    probes_failed = {r["probe"] for r in failed}
    want = {"hang": "http", "cvmfs-hang": "check:path", "cvmfs-error": "check:path"}[fault]
    assert want in probes_failed, failed
    first = min(r["time"] for r in failed)
    assert {r["layer"] for r in failed if r["time"] == first} == {"l7"}, failed   # l4 later for hang only
    if fault != "hang":
        assert {r["layer"] for r in failed} == {"l7"}, failed
    if fault == "cvmfs-hang":
        assert any(r["error"].startswith("hung") for r in failed if r["probe"] == "check:path"), failed
    assert proc.stop() == 0


def test_expired_certificate_is_an_l7_failure_and_nearly_expired_a_warning(agent):
    lab, proc, db, ctrs = agent
    box = ctrs[1].name
    t0 = time.time()
    lab.set_tls_cert(box, 3)
    st = proc.wait_until(f"box {box} warning", lambda s: s["boxes"][box]["warnings"], 15.0)
    warns = st["boxes"][box]["warnings"]
    assert [w["check"] for w in warns] == ["tls"] * len(warns) and 2.9 < warns[0]["days_left"] < 3.1, warns
    proc.wait_cycles(FAIL_CYCLES + 2)
    assert read_status(proc.state_dir)["boxes"][box]["state"] == "up"
    rows = query(lab, f"SELECT message, days_left FROM warning WHERE box = '{box}' AND \"check\" = 'tls' "
                      f"AND time >= {int(t0 * 1000)}ms", db)
    assert rows and all(2.9 < r["days_left"] < 3.1 for r in rows), rows
    assert query(lab, f"SELECT * FROM freeze WHERE box = '{box}'", db) == []

    t1 = time.time()
    lab.set_tls_cert(box, -1)   # restarts the TLS server: a refused connect (l4) while it restarts
    served = time.time()
    _freeze(lab, proc, box, t1)
    proc.wait_cycles(2)
    failed = query(lab, f"SELECT error, layer FROM probe WHERE box = '{box}' AND probe = 'tls' "
                        f"AND ok = 0 AND time >= {int(served * 1000)}ms", db)
    print("expired certificate:", failed[-1])
    assert failed and {r["layer"] for r in failed} == {"l7"}, failed
    assert all("expired" in r["error"] for r in failed), failed
    st = read_status(proc.state_dir)["boxes"][box]
    assert st["state"] == "frozen" and st["layer"] in ("l7", "l4"), st   # l4: the restart's refused connects
    lab.set_tls_cert(box, 365)
    proc.wait_state(box, "up", 20.0)
    assert proc.stop() == 0


def test_proxy_expiry_warns_then_fails(agent):
    lab, proc, db, ctrs = agent
    box = ctrs[0].name
    lab.set_proxy(box, 2)
    st = proc.wait_until(f"box {box} proxy warning",
                         lambda s: any(w["check"] == "check:x509" for w in s["boxes"][box]["warnings"]), 15.0)
    assert st["boxes"][box]["state"] == "up"
    t1 = time.time()
    lab.set_proxy(box, -1)
    st = _freeze(lab, proc, box, t1)
    assert st["layer"] == "l7"
    lab.set_proxy(box, 30)
    proc.wait_state(box, "up", 20.0)
    assert proc.stop() == 0
