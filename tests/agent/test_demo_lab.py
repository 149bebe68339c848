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


def test_demo_detects_and_heals_a_freeze_then_removes_its_lab():
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run([sys.executable, "-m", "lab", "demo", "--duration", "30", "--interval", "1",
                           "--fault-every", "12"], capture_output=True, text=True, cwd=ROOT, timeout=180)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    run_id = re.search(r"lab (\w+) removed", out).group(1)
    # The first scenario step: ctr1 paused (l4), seen as an l4 freeze, healed by restart_container.
    assert ">>> injected l4 into ctr1" in out
    assert re.search(r">>> ctr1 is up again after \d+ s", out), out[-3000:]
    assert re.search(r"ctr1\s+freeze, layer l4", out), out[-3000:]
    assert re.search(r"ctr1\s+remediation restart_container \(auto\): ok, recovered", out), out[-3000:]
    assert run_id not in state.run_ids()
    assert not any(run_id in ns for ns in subprocess.run(["ip", "netns"], capture_output=True,
                                                          text=True).stdout.split())
