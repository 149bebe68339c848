"""A Podman service restart under a running agent: a stream gap and a resync, never N failures (issue 29 item 2).

The podman lab's own `podman system service` is stopped and started again (lab.engine_restart) while the
agent watches its boxes through it (DOCKER_HOST, set by AgentProc from lab.agent_env()). The containers
are children of conmon, not of the service: they keep running with the same PID. The agent must keep
every box up, take no action, and read the containers again once the API answers (a `resync` record).
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.agent.agent_proc import AgentProc, errors_in_log, query, read_status, write_config

pytestmark = [pytest.mark.lab, pytest.mark.podman]

SERVICE_DOWN_S = 5.0


def _pid(lab, container: str) -> int:
    out = subprocess.run(lab.engine.cmd("inspect", "-f", "{{.State.Pid}}", container), capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return int(out.strip())


@pytest.fixture
def clean_podman_lab(podman_lab):
    """The session's podman lab; its faults cleared and its service answering after the test."""
    yield podman_lab
    from lab.engine import api_answers

    if not api_answers(podman_lab.engine.socket_path):
        podman_lab.engine_restart()
    podman_lab.clear_all(wait=True)


def test_a_podman_service_restart_is_a_gap_and_a_resync_not_a_failure(clean_podman_lab, agents, tmp_path):
    lab = clean_podman_lab
    db = "t_podman_service_restart"
    ctrs = [b for b in lab.boxes if b.kind == "container"]
    cfg = write_config(lab, str(tmp_path), database=db,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 6}},
                       box_keys={b.name: {"remediate": ["reconnect_network", "restart_container"]} for b in ctrs})
    a = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
    agents.append(a)
    a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    a.wait_cycles(2)
    pids = {b.name: _pid(lab, b.container_name) for b in ctrs}
    t_restart = time.time()
    lab.engine_restart(down_s=SERVICE_DOWN_S)
    t_back = time.time()
    # Every cycle until well after the return: every box up, no freeze, nothing held for longer than the gap.
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        a.wait_cycles(1)
        st = read_status(a.state_dir)
        assert st is not None
        seen |= {(name, b["state"]) for name, b in st["boxes"].items()}
    assert {s for _, s in seen} == {"up"}, seen
    for b in ctrs:   # conmon kept them: the same process, never restarted
        assert _pid(lab, b.container_name) == pids[b.name], b.name
        assert st["boxes"][b.name]["container"]["state"] == "running", st["boxes"][b.name]
    assert a.stop() == 0
    log = a.log_text()
    assert query(lab, "SELECT * FROM freeze", db) == []
    assert query(lab, "SELECT * FROM remediation", db) == []
    # The stream was read again after the gap: one resync record per container box, after the service returned.
    rows = query(lab, "SELECT * FROM container_event WHERE event = 'resync'", db)   # InfluxQL needs a field
    late = {r["box"] for r in rows if r["time"] / 1000.0 >= t_restart}
    assert late == {b.name for b in ctrs}, (rows, t_restart, t_back)
    # At most one engine-down episode for the whole gap, whatever the number of boxes.
    assert log.count("container engine down since") <= 1 and log.count("container engine back after") <= 1
    assert not [x for x in errors_in_log(log) if "InfluxDB" not in x], errors_in_log(log)
