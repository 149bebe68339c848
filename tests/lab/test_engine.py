"""lab.engine: names, command lines, the lab-owned containers.conf (nothing under /etc); a service restart."""
from __future__ import annotations

import os
import tomllib

import pytest

from lab import engine, state
from lab.errors import LabError


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "STATE_DIR", str(tmp_path))
    return tmp_path


def test_unknown_engine_is_an_error_listing_the_valid_ones():
    with pytest.raises(LabError, match=r"unknown container engine 'rkt'; valid: docker, podman"):
        engine.for_lab("rkt", "abcdef")


def test_docker_uses_dockerds_socket_and_needs_no_agent_environment():
    eng = engine.for_lab("docker", "abcdef")
    assert eng.cmd("ps", "-a") == ["docker", "ps", "-a"]
    assert eng.docker_host == "unix:///var/run/docker.sock"
    assert eng.agent_env == {}
    assert eng.rm_force("c") == ["docker", "rm", "-f", "-v", "c"]


def test_podman_commands_carry_the_lab_conf_and_the_agent_gets_the_labs_socket(state_dir):
    eng = engine.for_lab("podman", "abcdef")
    conf = os.path.join(str(state_dir), "podman", "containers.conf")
    assert eng.cmd("ps") == ["env", f"CONTAINERS_CONF={conf}", "podman", "ps"]
    assert eng.socket_path == os.path.join(str(state_dir), "abcdef", "podman.sock")
    assert eng.agent_env == {"DOCKER_HOST": f"unix://{state_dir}/abcdef/podman.sock"}
    # a forced remove must not wait for the stop timeout (busybox as PID 1 ignores SIGTERM)
    assert eng.rm_force("c") == ["env", f"CONTAINERS_CONF={conf}", "podman", "rm", "-f", "-t", "0", "-v", "c"]


def test_the_podman_conf_sets_only_what_this_machine_needs_and_keeps_networks_out_of_etc(state_dir):
    path = engine.podman_conf()
    assert path.startswith(str(state_dir)) and not path.startswith("/etc")
    with open(path, "rb") as f:
        conf = tomllib.load(f)
    assert conf == {
        "containers": {"default_ulimits": ["nofile=20000:20000", "nproc=4096:4096"]},
        "engine": {"runtime": "runc"},
        "network": {"network_config_dir": os.path.join(str(state_dir), "podman", "networks")},
    }
    assert os.path.isdir(conf["network"]["network_config_dir"])
    before = os.stat(path).st_mtime_ns
    assert engine.podman_conf() == path and os.stat(path).st_mtime_ns == before   # unchanged: not rewritten


def test_a_podman_lab_refuses_an_engine_restart_on_dockerd():
    from lab import Lab

    lab = Lab({"run_id": "abcdef", "engine": "docker"})
    with pytest.raises(LabError, match="runs on docker; only a podman lab restarts its service"):
        lab.engine_restart()


@pytest.mark.lab
@pytest.mark.podman
def test_a_podman_service_restart_keeps_the_containers_and_the_socket_answers_again(podman_lab):
    """engine_restart(): the lab's service goes away (its socket does not answer) and comes back; the containers
    run on under conmon with the same PIDs, and the Docker-compatible API sees them again."""
    lab = podman_lab
    pids = {b.name: lab.container_pid(b.name) for b in lab.boxes if b.kind == "container"}
    before = state.read(lab.run_id)["podman_service_pid"]
    lab.engine_restart(down_s=0.5)
    after = state.read(lab.run_id)["podman_service_pid"]
    assert after != before
    assert not engine._is_service_of(before, lab.run_id), "the old service still runs"
    assert engine.api_answers(lab.engine.socket_path)
    assert {name: lab.container_pid(name) for name in pids} == pids
    client = lab.engine_client()
    try:
        assert client.version()["Components"][0]["Name"] == "Podman Engine"
        assert {c.name for c in client.containers.list()} >= {lab.box(n).container_name for n in pids}
    finally:
        client.close()
    for name in pids:
        assert lab.box_answers(name)
