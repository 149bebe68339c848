"""Lab tests of the container state in the verdict: a real agent process, the real engine, plain docker commands.

Pause, a stop by hand and its resync across an agent restart run on both engines (clean_engine_lab).

A plain `docker pause` (no nft crutch) must be an l7 freeze within the usual thresholds that
stays open while paused; a `docker stop` by hand must put the box in state `stopped`: no
freeze, no remediation, the container left stopped.
"""
from __future__ import annotations

import os
import subprocess
import time

from lab.faults import restore_container
from tests.agent.agent_proc import AgentProc, errors_in_log, query, read_status, write_config

INTERVAL_S = 1.0
TIMEOUT_S = 0.5
FAIL_CYCLES = 2


def _start(agents, lab, cfg_path) -> AgentProc:
    a = AgentProc(lab, cfg_path, os.path.join(os.path.dirname(cfg_path), "agent.log"))
    agents.append(a)
    return a


def _db(request) -> str:
    return "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")


def _docker_state(lab, container: str) -> str:
    return subprocess.run([*lab.engine.cmd(), "inspect", "-f", "{{.State.Status}}", container], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_a_plain_docker_pause_is_an_l7_freeze_in_time_that_stays_open_until_unpaused(
        clean_engine_lab, agents, tmp_path, request):
    lab, db, box = clean_engine_lab, _db(request), "ctr1"
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=FAIL_CYCLES)
    a = _start(agents, lab, cfg)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 20)
    a.wait_cycles(2)
    t_pause = time.time()
    lab.fault(box, "pause")          # plain docker pause: ping and TCP handshakes still answered
    st = a.wait_state(box, "frozen", timeout_s=15)
    detect_s = time.time() - t_pause
    b = st["boxes"][box]
    assert b["layer"] == "l7" and b["open_freeze"]["layer"] == "l7", b
    assert b["container"]["state"] == "paused", b
    # Detected within the usual thresholds: fail_cycles cycles from the first one after the pause.
    limit_s = (FAIL_CYCLES + 1) * INTERVAL_S + TIMEOUT_S + 0.5
    print(f"\npause detected as a freeze after {detect_s:.2f} s (limit {limit_s:.2f} s)")
    assert detect_s <= limit_s
    # It must not close while paused (the backlogs fill, TCP starts failing too: still l7, still open).
    seen = set()
    deadline = time.monotonic() + 8.0
    while time.monotonic() < deadline:
        a.wait_cycles(1)
        s = read_status(a.state_dir)["boxes"][box]
        seen.add((s["state"], s["layer"]))
    assert seen == {("frozen", "l7")}, seen
    t_unpause = time.time()
    lab.clear(box, wait=True)
    a.wait_state(box, "up", timeout_s=15)
    assert a.stop() == 0
    assert errors_in_log(a.log_text()) == []
    rows = query(lab, f"SELECT * FROM freeze WHERE box = '{box}'", db)
    assert len(rows) == 1, rows
    fr = rows[0]
    assert (fr["open"], fr["layer"]) == (0, "l7"), fr
    truth_s = t_unpause - t_pause
    assert truth_s - INTERVAL_S - TIMEOUT_S <= fr["duration_s"] <= truth_s + INTERVAL_S + TIMEOUT_S, (fr, truth_s)
    # Stored: the box points carry the container's state, the pseudo probe `docker` failed while paused.
    states = {r["container_state"] for r in query(lab, f"SELECT container_state FROM box WHERE box = '{box}'", db)}
    assert {"running", "paused"} <= states, states
    docker = query(lab, f"SELECT ok, error FROM probe WHERE box = '{box}' AND probe = 'docker' AND ok = 0", db)
    assert docker and {r["error"] for r in docker} == {"paused"}
    print(f"pause of {truth_s:.2f} s -> one l7 freeze of {fr['duration_s']:.2f} s")


def test_a_docker_stop_by_hand_is_state_stopped_not_a_freeze_not_remediated(clean_engine_lab, agents, tmp_path,
                                                                            request):
    lab, db, box = clean_engine_lab, _db(request), "ctr1"
    ctr = lab.box(box).container
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=FAIL_CYCLES,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2, "stop_timeout": 2}},
                       box_keys={box: {"remediate": ["reconnect_network", "restart_container"]}})
    a = _start(agents, lab, cfg)
    try:
        a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 20)
        a.wait_cycles(2)
        subprocess.run([*lab.engine.cmd(), "stop", "-t", "1", ctr], check=True, capture_output=True)
        st = a.wait_state(box, "stopped", timeout_s=10)
        c = st["boxes"][box]["container"]
        assert c["state"] == "exited" and c["operator_stopped"] is True, c
        # It stays stopped: nothing restarts it, no freeze opens, for well over fail_cycles + cooldown + verify.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            a.wait_cycles(1)
            s = read_status(a.state_dir)["boxes"][box]
            assert s["state"] == "stopped" and s["open_freeze"] is None, s
            assert _docker_state(lab, ctr) == "exited"
        assert a.stop() == 0
    finally:
        if _docker_state(lab, ctr) != "running":
            subprocess.run([*lab.engine.cmd(), "start", ctr], check=True, capture_output=True)
            restore_container(lab, lab.box(box))   # Podman gives a started container another MAC
            lab.wait_box(box, timeout_s=20)
    assert errors_in_log(a.log_text()) == []
    assert query(lab, f"SELECT * FROM freeze WHERE box = '{box}'", db) == []
    assert query(lab, "SELECT * FROM remediation", db) == []
    stopped = query(lab, f"SELECT * FROM box WHERE box = '{box}' AND state = 'stopped'", db)
    assert len(stopped) >= 8 and all(r["up"] is None for r in stopped), stopped[:3]  # not observed
    assert {r["container_state"] for r in stopped} == {"exited"}
    ev = query(lab, f"SELECT * FROM container_event WHERE box = '{box}' AND event = 'die'", db)
    assert ev and ev[-1]["operator"] == 1 and ev[-1]["container_state"] == "exited", ev


def test_a_box_stopped_by_hand_stays_stopped_across_an_agent_restart(clean_engine_lab, agents, tmp_path, request):
    """The upgrade path restarts the agent: a VO-Box an admin stopped must not be 'healed' by the new agent.

    The lab's service exits 0 on SIGTERM (as supervisord and many services do), so the new agent's inspect
    cannot tell the stop from a crash by the exit code; the box's own `stopped` state, kept in state_dir, can.
    """
    lab, db, box = clean_engine_lab, _db(request), "ctr1"
    ctr = lab.box(box).container
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=FAIL_CYCLES,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2, "stop_timeout": 2}},
                       box_keys={box: {"remediate": ["reconnect_network", "restart_container"]}})
    a = _start(agents, lab, cfg)
    try:
        a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 20)
        a.wait_cycles(2)
        subprocess.run([*lab.engine.cmd(), "stop", "-t", "5", ctr], check=True, capture_output=True)
        code = subprocess.run([*lab.engine.cmd(), "inspect", "-f", "{{.State.ExitCode}}", ctr], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert code not in ("137", "143"), f"the lab's service should exit 0 on SIGTERM, got {code}"
        a.wait_state(box, "stopped", timeout_s=10)
        assert a.stop() == 0
        b = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent2.log"))
        agents.append(b)
        b.wait_cycles(2)
        deadline = time.monotonic() + (FAIL_CYCLES + 6) * INTERVAL_S
        while time.monotonic() < deadline:
            b.wait_cycles(1)
            s = read_status(b.state_dir)["boxes"][box]
            assert s["state"] == "stopped" and s["open_freeze"] is None, s
            assert _docker_state(lab, ctr) == "exited"
        assert b.stop() == 0
    finally:
        if _docker_state(lab, ctr) != "running":
            subprocess.run([*lab.engine.cmd(), "start", ctr], check=True, capture_output=True)
            restore_container(lab, lab.box(box))   # Podman gives a started container another MAC
            lab.wait_box(box, timeout_s=20)
    assert errors_in_log(b.log_text()) == []
    assert query(lab, f"SELECT * FROM freeze WHERE box = '{box}'", db) == []
    assert query(lab, "SELECT * FROM remediation", db) == []


def test_restart_stopped_makes_a_stop_by_hand_a_freeze_that_is_remediated(clean_lab, agents, tmp_path, request):
    lab, db, box = clean_lab, _db(request), "ctr1"
    ctr = lab.box(box).container
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=FAIL_CYCLES,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2, "stop_timeout": 2}},
                       box_keys={box: {"remediate": ["restart_container"], "restart_stopped": True}})
    a = _start(agents, lab, cfg)
    try:
        a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 20)
        subprocess.run([*lab.engine.cmd(), "stop", "-t", "1", ctr], check=True, capture_output=True)
        a.wait_state(box, "frozen", timeout_s=10)
        a.wait_state(box, "up", timeout_s=30)   # restarted by our restart_container, no help from the test
        assert _docker_state(lab, ctr) == "running"
        a.wait_cycles(2)
        st = read_status(a.state_dir)["boxes"][box]
        assert st["state"] == "up" and st["container"]["operator_stopped"] is False, st
        assert a.stop() == 0
    finally:
        if _docker_state(lab, ctr) != "running":
            subprocess.run([*lab.engine.cmd(), "start", ctr], check=True, capture_output=True)
            restore_container(lab, lab.box(box))   # Podman gives a started container another MAC
            lab.wait_box(box, timeout_s=20)
    assert errors_in_log(a.log_text()) == []
    rem = query(lab, "SELECT * FROM remediation", db)
    assert [(r["box"], r["action"], r["ok"], r["recovered"]) for r in rem] == [(box, "restart_container", 1, 1)]
    fr = query(lab, f"SELECT * FROM freeze WHERE box = '{box}'", db)
    assert [(r["open"], r["layer"]) for r in fr] == [(0, "l2")]
    # Our own restart's events are not operator intent (the action's client marked the container).
    starts = query(lab, f"SELECT * FROM container_event WHERE box = '{box}' AND event = 'start'", db)
    assert starts and starts[-1]["operator"] == 0


def test_a_restart_by_dockers_restart_policy_is_recorded_not_fought(clean_lab, agents, tmp_path, request):
    lab, db, box = clean_lab, _db(request), "ctr1"
    ctr = lab.box(box).container
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=FAIL_CYCLES,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2, "stop_timeout": 2}},
                       box_keys={box: {"remediate": ["restart_container"]}})
    subprocess.run([*lab.engine.cmd(), "update", "--restart", "on-failure", ctr], check=True, capture_output=True)
    a = _start(agents, lab, cfg)
    try:
        a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 20)
        pid = subprocess.run([*lab.engine.cmd(), "inspect", "-f", "{{.State.Pid}}", ctr], capture_output=True, text=True,
                             check=True).stdout.strip()
        subprocess.run(["kill", "-9", pid], check=True)   # a crash: no docker stop/kill, Docker restarts it
        lab.wait_box(box, timeout_s=20)
        a.wait_state(box, "up", timeout_s=20)
        a.wait_cycles(3)
        assert a.stop() == 0
    finally:
        subprocess.run([*lab.engine.cmd(), "update", "--restart", "no", ctr], check=True, capture_output=True)
        if _docker_state(lab, ctr) != "running":
            subprocess.run([*lab.engine.cmd(), "start", ctr], check=True, capture_output=True)
            restore_container(lab, lab.box(box))   # Podman gives a started container another MAC
            lab.wait_box(box, timeout_s=20)
    assert errors_in_log(a.log_text()) == []
    ev = query(lab, f"SELECT * FROM container_event WHERE box = '{box}'", db)
    kinds = [r["event"] for r in ev]
    assert "die" in kinds and "start" in kinds[kinds.index("die"):], kinds
    assert all(r["operator"] in (0, None) for r in ev), ev      # a crash is not operator intent
    box_states = {r["state"] for r in query(lab, f"SELECT state FROM box WHERE box = '{box}'", db)}
    assert "stopped" not in box_states
    assert query(lab, "SELECT * FROM remediation", db) == []   # Docker restarted it; nothing of ours ran


def test_a_box_paused_before_the_agent_starts_is_read_at_its_first_resync(clean_engine_lab, agents, tmp_path,
                                                                           request):
    """An agent (re)started while a container is paused reads it from the engine at its start (the resync, no
    event to follow): an l7 freeze with container state paused from the first cycles, up once unpaused."""
    lab, db, box = clean_engine_lab, _db(request), "ctr2"
    lab.fault(box, "pause")
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=FAIL_CYCLES)
    a = _start(agents, lab, cfg)
    st = a.wait_state(box, "frozen", timeout_s=(FAIL_CYCLES + 4) * INTERVAL_S + 10)
    b = st["boxes"][box]
    # paused and l7 come from the engine's answer at the start (the paused kernel still completes handshakes)
    assert (b["layer"], b["container"]["state"]) == ("l7", "paused"), b
    lab.clear(box, wait=True)
    a.wait_state(box, "up", timeout_s=15)
    assert a.stop() == 0
    assert errors_in_log(a.log_text()) == []
    rows = query(lab, f"SELECT * FROM freeze WHERE box = '{box}'", db)
    assert [(r["open"], r["layer"]) for r in rows] == [(0, "l7")], rows
