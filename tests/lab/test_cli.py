"""`vobox-lab up / status / fault / clear / config / down` round trip, each a separate process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.lab_fixtures import lab_traces, lab_unavailable_reason

pytestmark = pytest.mark.lab


def cli(*args: str, run_id: str | None = None, timeout_s: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("VOBOX_LAB_RUN_ID", None)
    if run_id:
        env["VOBOX_LAB_RUN_ID"] = run_id
    return subprocess.run([sys.executable, "-m", "lab", "--log-level", "WARNING", *args],
                          capture_output=True, text=True, timeout=timeout_s, env=env)


@pytest.mark.parametrize("engine", [
    "docker", pytest.param("podman", marks=pytest.mark.podman)])
def test_cli_round_trip(engine):
    reason = lab_unavailable_reason(engine=engine)
    if reason:
        pytest.skip(reason)
    from lab import Lab, cleanup_leftovers

    up = cli("up", "--new", "--containers", "1", "--vms", "1", "--json", "--engine", engine)
    assert up.returncode == 0, up.stderr
    st = json.loads(up.stdout)
    run_id = st["run_id"]
    try:
        assert st["persistent"] and [b["name"] for b in st["boxes"]] == ["ctr1", "vm1"]
        assert st["engine"] == engine
        client = Lab.load(run_id).engine_client()   # the engine's API, where the agent is pointed
        try:
            assert client.version()["Components"][0]["Name"] == {"docker": "Engine",
                                                                  "podman": "Podman Engine"}[engine]
            assert client.containers.get(st["boxes"][0]["container"]).status == "running"
        finally:
            client.close()
        assert st["influx"]["answers"] is True
        # the `up` process is gone, yet its lab is no leftover
        assert run_id not in cleanup_leftovers()
        lab = Lab.load(run_id)
        assert lab.box_answers("ctr1") and lab.box_answers("vm1")

        fault = cli("fault", "ctr1", "l4", run_id=run_id)
        assert fault.returncode == 0, fault.stderr
        assert not lab.tcp_ok(lab.box("ctr1").ipv4, 1093)
        status = cli("status", run_id=run_id)
        assert status.returncode == 0
        line = next(ln for ln in status.stdout.splitlines() if ln.strip().startswith("ctr1"))
        assert "running" in line and "fault=l4" in line
        pause = cli("fault", "ctr1", "pause", run_id=run_id)
        assert pause.returncode == 0, pause.stderr
        line = next(ln for ln in cli("status", run_id=run_id).stdout.splitlines() if ln.strip().startswith("ctr1"))
        assert "paused" in line and "fault=pause" in line

        bad = cli("fault", "nosuchbox", "l2", run_id=run_id)
        assert bad.returncode == 1 and "boxes: ctr1, vm1" in bad.stderr

        config = cli("config", "--run-id", run_id)
        assert config.returncode == 0 and 'name = "vm1"' in config.stdout

        clear = cli("clear", "ctr1", run_id=run_id)
        assert clear.returncode == 0, clear.stderr
        assert lab.box_answers("ctr1")

        # InfluxDB outage and the whole segment, each driven from a process that did not start it
        assert cli("influx", "stop", run_id=run_id).returncode == 0
        assert json.loads(cli("status", "--json", run_id=run_id).stdout)["influx"]["running"] is False
        start = cli("influx", "start", run_id=run_id)
        assert start.returncode == 0, start.stderr
        assert json.loads(cli("status", "--json", run_id=run_id).stdout)["influx"]["answers"] is True
        assert cli("segment", "down", run_id=run_id).returncode == 0
        assert not lab.tcp_ok(lab.box("vm1").ipv4, 1093, 0.5)
        assert cli("segment", "up", run_id=run_id).returncode == 0
        assert lab.box_answers("vm1") and lab.box_answers("ctr1")
    finally:
        down = cli("down", "--run-id", run_id)
    assert down.returncode == 0, down.stderr
    assert lab_traces(run_id) == []


def test_cli_unknown_run_id_is_an_error():
    proc = cli("status", run_id="000000")
    assert proc.returncode == 1
    assert "no lab with run id '000000'" in proc.stderr


@pytest.mark.parametrize("action", [("status",), ("fault", "ctr1", "l2"), ("down",), ("config",)])
def test_cli_without_a_lab_says_how_to_make_one(tmp_path, monkeypatch, action):
    monkeypatch.setenv("VOBOX_LAB_STATE_DIR", str(tmp_path))  # an empty lab registry
    proc = cli(*action)
    assert proc.returncode == 1
    assert "no lab is up; make one with `vobox-lab up`" in proc.stderr
