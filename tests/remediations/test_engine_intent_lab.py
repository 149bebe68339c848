"""The one reading of an exit against the real engine: a real OOM kill (cgroup v1 here), a `docker kill` by hand,
each read live by the watcher and again by a fresh watcher's resync (an agent restart), with the same answer.

cgroup v2's OOM kill (exit 137, OOMKilled false) cannot be made on this machine: tests/remediations/
test_engine_events.py replays it from tests/cases/engine-resync-exit-codes.json.
"""
from __future__ import annotations

import subprocess
import threading
import uuid

import docker
import pytest

from agent.engines.watcher import ContainerStates, DockerEventWatcher
from remediations import RemediationTarget
from tests.remediations.conftest import wait_for

pytestmark = pytest.mark.lab

LABEL = "vobox-engine-test"


def _cleanup() -> None:
    """Remove this module's containers, also those a crashed earlier run left."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}"], capture_output=True,
                         text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


@pytest.fixture
def image(rlab):
    from lab.image import ensure_image
    _cleanup()
    yield ensure_image()
    _cleanup()


def _watch(name: str, states: ContainerStates):
    got, lock = [], threading.Lock()

    def sink(rec):
        with lock:
            got.append(rec)

    w = DockerEventWatcher([RemediationTarget(box="b", kind="container", container=name)],
                           lambda: docker.from_env(version="1.41"), sink, retry_s=0.5, states=states)
    w.start()
    assert w.connected.wait(15)
    return w, got


def test_a_real_oom_kill_is_a_failure_live_and_after_a_restart(image, tmp_path):
    name = f"vbl-oom-{uuid.uuid4().hex[:8]}"
    path = str(tmp_path / "containers.json")
    w, got = _watch(name, ContainerStates(path))
    try:
        assert w.cgroup_version in (1, 2)
        # PID 1 allocates 64 MiB under a 16 MiB limit (no swap): the kernel's OOM killer ends it.
        subprocess.run(["docker", "run", "-d", "--name", name, "--label", LABEL, "--network", "none",
                        "--memory", "16m", "--memory-swap", "16m", "--entrypoint", "/bin/sh", image, "-c",
                        "sleep 1; exec dd if=/dev/zero of=/dev/null bs=64M count=1"], check=True, capture_output=True)
        assert wait_for(lambda: w.states().get("b") and w.states()["b"].state == "exited", 30), (w.states(), got)
        live = w.states()["b"]
        inspect = docker.from_env().api.inspect_container(name)["State"]
        assert (inspect["ExitCode"], inspect["OOMKilled"]) == (137, True), inspect
        assert "oom" in [r.event for r in got], [(r.event, r.detail) for r in got]
        assert (live.exit_code, live.oom_killed, live.operator_stopped) == (137, True, False), live
        assert live.reason.startswith("failed: exit 137, OOM-killed at "), live.reason
        die = [r for r in got if r.event == "die"][-1]
        assert not die.operator and "OOM-killed" in die.detail
    finally:
        w.stop()
    # An agent restart: a fresh watcher re-reads it (inspect, the engine's history, the saved state): same answer.
    again, _ = _watch(name, ContainerStates(path))
    try:
        st = again.states()["b"]
        assert (st.state, st.exit_code, st.oom_killed, st.operator_stopped) == ("exited", 137, True, False), st
        assert st.reason == live.reason
    finally:
        again.stop()
    # Without the saved state (a new state_dir): the inspect's OOMKilled alone says the same.
    fresh, _ = _watch(name, ContainerStates(str(tmp_path / "other.json")))
    try:
        st = fresh.states()["b"]
        assert (st.oom_killed, st.operator_stopped) == (True, False) and st.reason.startswith("failed: exit 137, OOM")
    finally:
        fresh.stop()


def test_a_docker_kill_by_hand_is_an_operator_stop_live_and_after_a_restart(image, tmp_path):
    name = f"vbl-kill-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--label", LABEL, "--network", "none", image],
                   check=True, capture_output=True)
    w, got = _watch(name, ContainerStates(str(tmp_path / "a.json")))
    try:
        assert wait_for(lambda: w.states()["b"].state == "running", 10)
        subprocess.run(["docker", "kill", name], check=True, capture_output=True)
        assert wait_for(lambda: w.states()["b"].state == "exited", 15), w.states()
        live = w.states()["b"]
        assert live.operator_stopped and live.reason.startswith("stopped by operator: docker kill (signal")
        if w.cgroup_version == 1:
            assert "SIGKILL; not an OOM kill" in live.reason, live.reason
    finally:
        w.stop()
    # A fresh watcher with no saved state: the engine's history (kept, dockerd did not restart) names the kill.
    fresh, _ = _watch(name, ContainerStates(str(tmp_path / "b.json")))
    try:
        st = fresh.states()["b"]
        assert st.operator_stopped and st.reason.startswith("stopped by operator: docker kill (signal"), st
    finally:
        fresh.stop()
