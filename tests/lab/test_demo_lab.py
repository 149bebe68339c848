"""The README's demo command (`vobox-lab demo`) end to end: lab up, agent, a freeze injected and healed, lab down."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from lab import state
from tests.lab_fixtures import lab_unavailable_reason

pytestmark = pytest.mark.lab
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("engine", ["docker", pytest.param("podman", marks=pytest.mark.podman)])
def test_demo_detects_and_heals_a_freeze_then_removes_its_lab(engine):
    """`scripts/demo` (and `scripts/demo --engine podman`): the containers on the engine asked for."""
    reason = lab_unavailable_reason(engine=engine)
    if reason:
        pytest.skip(reason)
    proc = subprocess.run([sys.executable, "-m", "lab", "demo", "--duration", "30", "--interval", "1",
                           "--fault-every", "12", "--engine", engine], capture_output=True, text=True, cwd=ROOT,
                          timeout=180)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert f"2 containers on {engine}" in out, out[:1000]
    run_id = re.search(r"lab (\w+) removed", out).group(1)
    # The first scenario step: ctr1 paused (l4), seen as an l4 freeze, healed by restart_container.
    assert ">>> injected l4 into ctr1" in out
    assert re.search(r">>> ctr1 is up again after \d+ s", out), out[-3000:]
    assert re.search(r"ctr1\s+freeze, layer l4", out), out[-3000:]
    assert re.search(r"ctr1\s+remediation restart_container \(auto\): ok, recovered", out), out[-3000:]
    assert run_id not in state.run_ids()
    assert not any(run_id in ns for ns in subprocess.run(["ip", "netns"], capture_output=True,
                                                          text=True).stdout.split())


def test_a_running_demo_is_seen_by_lab_status_and_a_hang_up_removes_its_lab():
    """The demo's lab is like any other: `vobox-lab status` finds it; a closed terminal (SIGHUP) removes it."""
    import signal
    import time

    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    proc = subprocess.Popen([sys.executable, "-m", "lab", "demo", "--interval", "1", "--fault-every", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    run_id = None
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            m = re.search(r"agent pid \d+ probing from namespace vbl-(\w+)-mon", line)
            if m:
                run_id = m.group(1)
                break
            assert time.monotonic() < deadline, "the demo did not start"
        assert run_id, "no run id in the demo's output"
        st = subprocess.run([sys.executable, "-m", "lab", "status", "--json"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
        assert st.returncode == 0, st.stderr
        assert __import__("json").loads(st.stdout)["run_id"] == run_id
        proc.send_signal(signal.SIGHUP)
        proc.stdout.close()        # the terminal is gone: writes fail from now on
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert run_id not in state.run_ids()
    assert not any(run_id in ns for ns in subprocess.run(["ip", "netns"], capture_output=True,
                                                          text=True).stdout.split())
    ps = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
    assert f"vbl-{run_id}-" not in ps
