"""The `exec` remediation step (a command run inside the container): config, ladder choice, and the real thing.

Pure tables for the config and the engine's choice; the lab tests run the whole agent against the real
dockerd: an l7 fault healed by `exec` without a container restart, and a hung `exec` killed at its
timeout, after which the ladder escalates to restart_container.
"""
from __future__ import annotations

import os
import time

import pytest

from agent.core import config
from remediations.actions import ACTIONS, applicable_steps
from remediations.model import RemediationTarget
from tests.remediations.test_engine import POLICY, Sim

E, S, R = "exec", "restart_container", "reconnect_network"
CTR = RemediationTarget(box="c1", kind="container", ipv4="192.0.2.10", container="ctr1", network="net1",
                        exec=("/bin/sh", "-c", "service monalisa restart"), ladder=(R, E, S))
NO_EXEC = RemediationTarget(box="c2", kind="container", ipv4="192.0.2.11", container="ctr2", network="net1",
                            ladder=(E, S))


@pytest.mark.parametrize("layer, expected", [
    pytest.param("l2", [R, S], id="l2-no-exec"), pytest.param("l3", [R, S], id="l3-no-exec"),
    pytest.param("l4", [E, S], id="l4-exec-first"), pytest.param("l7", [E, S], id="l7-exec-first"),
])
def test_exec_suits_l4_and_l7_only(layer, expected):
    assert applicable_steps(CTR.ladder, layer) == expected
    assert ACTIONS[E].needs_container


@pytest.mark.parametrize("box, steps, expected", [
    pytest.param("c1", ["open:l7"], [E], id="l7-starts-at-exec"),
    pytest.param("c1", ["open:l7", "fail"], [E, S], id="failed-exec-escalates-to-restart"),
    pytest.param("c1", ["open:l2", "fail"], [R, S], id="l2-skips-exec"),
    pytest.param("c1", ["open:l7", "fail", "deepen:l2", "cool"], [E, S, R], id="deepened-to-l2-reconnects"),
    pytest.param("c2", ["open:l7"], [S], id="no-exec-configured-is-not-a-step"),
])
def test_engine_choice(box, steps, expected):
    sim = Sim(targets=(CTR, NO_EXEC))
    for step in steps:
        word, _, layer = step.partition(":")
        if word == "open":
            sim.freeze(box, layer)
        elif word == "deepen":
            sim.deepen(box, layer)
        elif word == "fail":
            sim.advance(POLICY.verify_s + POLICY.cooldown_s + 1)
        elif word == "cool":
            sim.advance(POLICY.cooldown_s + 1)
    assert sim.actions(box) == expected


BOX = {"name": "c1", "kind": "container", "ipv4": "192.0.2.10", "container": "ctr1", "network": "net1"}


def errors(box: dict, remediation: dict | None = None) -> list[str]:
    try:
        config.parse({"box": [box], "remediation": remediation or {}})
    except config.ConfigError as exc:
        return list(exc.errors)
    return []


@pytest.mark.parametrize("box, remediation, want", [
    pytest.param(BOX | {"remediate": ["exec"]}, None,
                 '[[box]] "c1" (#1).exec: missing (required because remediate lists "exec")', id="missing"),
    pytest.param(BOX | {"remediate": ["exec"], "exec": []}, None, "[[box]] \"c1\" (#1).exec: ", id="empty"),
    pytest.param(BOX | {"remediate": ["exec"], "exec": ["kill", "{pid}"]}, None,
                 "[[box]] \"c1\" (#1).exec[1]: unknown placeholder {pid}", id="bad-placeholder"),
    pytest.param({"name": "v", "kind": "vm", "ipv4": "192.0.2.20", "exec": ["true"]}, None,
                 '[[box]] "v" (#1).exec: only for kind = "container"', id="vm-exec-key"),
    pytest.param({"name": "v", "kind": "vm", "ipv4": "192.0.2.20", "remediate": ["exec"], "exec": ["true"]}, None,
                 '[[box]] "v" (#1).remediate[0]: "exec" only works on containers', id="vm-exec-step"),
    pytest.param(BOX | {"remediate": ["exec"], "exec": ["true"]}, {"exec_timeout": 0},
                 "remediation.exec_timeout: ", id="zero-timeout"),
])
def test_config_errors_name_the_key(box, remediation, want):
    errs = errors(box, remediation)
    assert any(e.startswith(want) for e in errs), errs


def test_config_is_passed_to_the_target_and_policy():
    cfg = config.parse({"box": [BOX | {"remediate": ["exec", "restart_container"],
                                       "exec": ["/bin/sh", "-c", "echo {box} {container}"]}],
                        "remediation": {"exec_timeout": 12.5}})
    t = cfg.boxes[0].remediation_target()
    assert t.exec == ("/bin/sh", "-c", "echo {box} {container}") and t.ladder == (E, S)
    assert cfg.remediation.policy().exec_timeout_s == 12.5
    assert config.RemediationConfig().policy().exec_timeout_s == 60.0


# ----- lab: the whole agent, the real dockerd (and Podman: clean_engine_lab) -----------------------
RESUME = ["/bin/sh", "-c", "kill -CONT $(pidof httpd openssl)"]   # the lab's "restart the service"


def _started_at(container: str) -> str:
    import docker

    return docker.from_env().api.inspect_container(container)["State"]["StartedAt"]


def _agent(lab, tmp_path, db: str, box: str, exec_argv: list[str], exec_timeout_s: float):
    from tests.agent.agent_proc import AgentProc, write_config

    for b in lab.boxes:
        if b.kind == "container":
            lab.set_proxy(b.name, 30)
    cfg = write_config(lab, str(tmp_path), database=db, services=True, interval=1.0, timeout=0.5,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 6, "stop_timeout": 1,
                                                 "exec_timeout": exec_timeout_s}},
                       box_keys={box: {"remediate": ["reconnect_network", "exec", "restart_container"],
                                       "exec": exec_argv}})
    proc = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
    for b in lab.boxes:
        proc.wait_state(b.name, "up", 30.0)
    return proc


def _remediations(lab, db: str, box: str, done: int, timeout_s: float = 30.0) -> list[dict]:
    """The box's remediation points once DONE of them ran and were verified and one recovered it (the record
    follows verification)."""
    from tests.agent.agent_proc import query

    end = time.time() + timeout_s
    while True:
        rows = query(lab, f"SELECT action, outcome, ok, recovered, detail FROM remediation WHERE box = '{box}' "
                          "ORDER BY time", db)
        ran = [r for r in rows if r["outcome"] == "done"]
        if (len(ran) >= done and any(r["recovered"] for r in ran)) or time.time() > end:
            return rows
        time.sleep(0.5)


@pytest.mark.lab
def test_lab_l7_hang_is_healed_by_exec_without_a_container_restart(clean_engine_lab, tmp_path):
    lab = clean_engine_lab
    box = lab.box("ctr1")
    db = "t_exec_heals"
    proc = _agent(lab, tmp_path, db, box.name, RESUME, 20)
    try:
        started = _started_at(box.container)
        lab.fault(box.name, "hang")
        st = proc.wait_until("frozen", lambda s: s["boxes"][box.name]["state"] == "frozen", 30)
        assert st["boxes"][box.name]["layer"] in ("l7", "l4"), st["boxes"][box.name]
        proc.wait_state(box.name, "up", 60)
        rows = _remediations(lab, db, box.name, 1)
        print("remediations:", rows)
        assert [r["action"] for r in rows if r["outcome"] == "done"] == ["exec"], rows
        done = rows[-1]
        assert done["ok"] and done["recovered"] and "exit 0" in done["detail"], done
        assert _started_at(box.container) == started, "the container was restarted"
        assert proc.stop() == 0
    finally:
        proc.ensure_gone()


@pytest.mark.lab
def test_lab_hung_exec_is_killed_at_its_timeout_then_the_ladder_restarts_the_container(clean_lab, tmp_path):
    lab = clean_lab
    box = lab.box("ctr1")
    db = "t_exec_hangs"
    timeout_s = 2.0
    proc = _agent(lab, tmp_path, db, box.name, ["/bin/sleep", "3600"], timeout_s)
    try:
        started = _started_at(box.container)
        lab.fault(box.name, "hang")
        proc.wait_until("frozen", lambda s: s["boxes"][box.name]["state"] == "frozen", 30)
        proc.wait_state(box.name, "up", 90)
        rows = _remediations(lab, db, box.name, 2)
        print("remediations:", rows)
        ran = [r for r in rows if r["outcome"] == "done"]
        # under load a restarted box may answer only after the verify window: the restart is then repeated
        assert ran[0]["action"] == "exec" and {r["action"] for r in ran[1:]} == {"restart_container"}, rows
        assert not ran[0]["ok"] and f"killed after timeout {timeout_s:g} s (killed 1 process" in ran[0]["detail"], ran[0]
        assert ran[-1]["ok"] and ran[-1]["recovered"], ran
        assert _started_at(box.container) != started
        assert proc.stop() == 0
    finally:
        proc.ensure_gone()


@pytest.mark.lab
def test_lab_exec_action_kills_the_whole_hung_command_and_reports_its_output(clean_engine_lab):
    """The action alone on a running box: output tail recorded, a hung shell and its child both killed."""
    import docker

    from remediations import ActionContext, PlannedAction, RemediationPolicy, default_docker_factory, execute

    lab = clean_engine_lab
    b = lab.box("ctr2")

    def run(argv, timeout_s):
        t = RemediationTarget(box=b.name, kind="container", ipv4=b.ipv4, container=b.container, network=b.network,
                              exec=tuple(argv))
        ctx = ActionContext(default_docker_factory(), RemediationPolicy(exec_timeout_s=timeout_s))
        return execute(PlannedAction(b.name, "exec", "manual", t, False, -1, time.time()), ctx)

    out = run(["/bin/sh", "-c", "echo restarting {box}; echo failed >&2; exit 3"], 10)
    assert not out.ok and "exit 3" in out.detail and f"restarting {b.name}" in out.detail and "failed" in out.detail
    out = run(["/bin/sh", "-c", "echo started; sleep 3600; echo never"], 1.5)
    assert not out.ok and "killed after timeout 1.5 s (killed 2 process" in out.detail, out.detail
    assert out.detail.endswith("output: started"), out.detail
    assert out.duration_s < 1.5 + 5, out.duration_s
    top = docker.from_env().api.top(b.container)
    assert not any("sleep 3600" in " ".join(p) for p in top["Processes"]), top
    out = run(["/nonexistent"], 5)
    assert not out.ok and "/nonexistent" in out.detail, out.detail


def test_the_timeout_kill_never_touches_a_process_outside_the_container():
    """A PID from exec_inspect read in another PID namespace (or reused) names another process: never killed."""
    import subprocess

    from remediations import actions
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        done = actions._kill_tree(bystander.pid, "6a4072d64e2984c24d446ec84d7734f2ead6e5f63fc3d614b04642a336d53d7a")
        assert "nothing killed" in done, done
        assert bystander.poll() is None   # still running
        assert actions._kill_tree(0, "x") == "no process id known"
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("info, started, reading, ended", [
    pytest.param({"Running": False, "ExitCode": 0, "Pid": 0}, False, True, False, id="podman-created-not-started"),
    pytest.param({"Running": False, "ExitCode": None, "Pid": 0}, False, True, False, id="docker-created-not-started"),
    pytest.param({"Running": True, "ExitCode": None, "Pid": 4242}, True, True, False, id="running"),
    pytest.param({"Running": False, "ExitCode": 0, "Pid": 4242}, True, True, True, id="exited-stream-still-open"),
    pytest.param({"Running": False, "ExitCode": 0, "Pid": 0}, False, False, True, id="stream-closed"),
    pytest.param({"Running": False, "ExitCode": 127, "Pid": 0}, False, False, True, id="failed-to-start"),
])
def test_an_exec_has_ended_only_once_it_was_seen_started_or_its_stream_closed(info, started, reading, ended):
    """Podman 4.3's compat API inspects a created exec as Running false, ExitCode 0: not an exit (issue 29)."""
    from remediations import actions

    assert actions._exec_ended(info, started or actions._exec_started(info), reading) is ended
