"""`vobox-lab down` says what it could not remove (a container of someone else's on the lab's network), exit 1."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.lab


def cli(*args, timeout_s=300):
    env = dict(os.environ)
    env.pop("VOBOX_LAB_RUN_ID", None)
    return subprocess.run([sys.executable, "-m", "lab", "--log-level", "ERROR", *args], capture_output=True,
                          text=True, timeout=timeout_s, env=env, cwd=ROOT)


def test_down_names_a_network_it_could_not_remove_and_cleanup_finishes_the_job(lab_available):
    if lab_available:
        pytest.skip(lab_available)
    up = cli("up", "--new", "--containers", "1", "--vms", "0", "--no-influx", "--json")
    assert up.returncode == 0, up.stderr
    st = json.loads(up.stdout)
    run_id = st["run_id"]
    net = f"vbl-{run_id}-net"
    image = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}}", f"vbl-{run_id}-ctr1"],
                           capture_output=True, text=True, check=True).stdout.strip()
    stranger = f"stranger-of-lab-{run_id}"
    try:
        subprocess.run(["docker", "run", "-d", "--name", stranger, "--network", net, image, "1093"],
                       capture_output=True, text=True, check=True)
        down = cli("down", "--run-id", run_id)
        assert down.returncode == 1, down.stdout + down.stderr
        assert f"lab {run_id} removed except: network {net}" in down.stderr
        assert stranger in down.stderr and "vobox-lab cleanup" in down.stderr
        assert "removed" not in down.stdout
    finally:
        subprocess.run(["docker", "rm", "-f", stranger], capture_output=True)
        clean = cli("cleanup")
    assert run_id not in clean.stderr, clean.stderr   # (other labs' leftovers on this machine are not ours)
    assert net not in subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True,
                                     text=True).stdout.split()
