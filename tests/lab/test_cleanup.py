"""down() leaves nothing behind; leftovers of crashed labs are found by name and removed; live labs are kept."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.lab_fixtures import box_symptoms, lab_traces, lab_unavailable_reason

pytestmark = pytest.mark.lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A process that builds a lab and is killed (SIGKILL, no cleanup) at a chosen point.
CRASH = textwrap.dedent("""
    import os, subprocess, sys, time
    from lab import Lab, state
    where, engine = sys.argv[1], sys.argv[2]
    def crash(*a, **k):
        if where == "unrecorded":
            os.unlink(state.state_path(lab_id[0]))  # as if the state file had never been written
        print(lab_id[0], flush=True)
        os.kill(os.getpid(), 9)
    lab_id = []
    orig = Lab._build
    def build(self, timeout):
        lab_id.append(self.run_id)
        if where == "after":
            orig(self, timeout)
        else:
            Lab.wait_ready = crash
            orig(self, timeout)
    Lab._build = build
    lab = Lab.create(containers=1, vms=1, influx=True, engine=engine)
    if where == "cvmfs-hang":  # a hung /cvmfs with an operation blocked in it
        lab.fault("ctr1", "cvmfs-hang")
        subprocess.Popen([*lab.engine.cmd("exec"), lab.box("ctr1").container, "stat", "/cvmfs/alice.cern.ch/etc"],
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
    crash()
""")


def _crashed_lab(where: str, engine: str = "docker") -> str:
    proc = subprocess.run([sys.executable, "-c", CRASH, where, engine], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.parametrize("engine", [
    "docker", pytest.param("podman", marks=pytest.mark.podman)])
def test_down_leaves_nothing(engine):
    reason = lab_unavailable_reason(engine=engine)
    if reason:
        pytest.skip(reason)
    from lab import Lab

    small = Lab.create(containers=2, vms=1, influx=True, engine=engine)
    run_id = small.run_id
    small.fault("ctr1", "pause")  # a paused container too
    small.fault("ctr2", "cvmfs-hang")  # and a hung /cvmfs with an operation blocked in it
    blocked = subprocess.Popen([*small.engine.cmd("exec"), small.box("ctr2").container, "stat", "/cvmfs/alice.cern.ch"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    small.fault("vm1", "l3")
    traces = lab_traces(run_id)
    assert any(t.startswith("container") for t in traces) and any(t.startswith("process") for t in traces)
    assert any(t.startswith("mount") and t.endswith("/cvmfs-fuse") for t in traces), traces
    if engine == "podman":   # the lab's own API service, on a socket in its run dir
        assert os.path.exists(small.engine.socket_path), traces
        assert any(t.startswith("process") and "system service" in _cmdline(t) for t in traces), traces
    assert blocked.poll() is None
    small.down()
    assert lab_traces(run_id) == []
    assert blocked.wait(10) is not None


def _cmdline(trace: str) -> str:
    """The command line of the process a lab trace ("process PID") names, or ""."""
    try:
        with open(f"/proc/{trace.split()[1]}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.podman
@pytest.mark.parametrize("where", ["before-ready", "after"])
def test_leftovers_of_a_crashed_podman_lab_are_removed(lab, where):
    """A crashed Podman lab leaves containers, a network and its podman service: cleanup removes them all."""
    from lab import cleanup_leftovers

    reason = lab_unavailable_reason(engine="podman")
    if reason:
        pytest.skip(reason)
    run_id = _crashed_lab(where, "podman")
    traces = lab_traces(run_id)
    assert any(t.startswith("container") for t in traces) and any(t.startswith("network") for t in traces), traces
    assert any(t.startswith("process") and "system service" in _cmdline(t) for t in traces), traces
    removed = cleanup_leftovers()
    assert run_id in removed or not lab_traces(run_id)
    assert lab.run_id not in removed
    assert lab_traces(run_id) == []


@pytest.mark.parametrize("where", ["before-ready", "after", "unrecorded", "cvmfs-hang"])
def test_leftovers_of_a_crashed_lab_are_removed(lab, where):
    from lab import cleanup_leftovers

    run_id = _crashed_lab(where)
    assert len(run_id) == 6
    traces = lab_traces(run_id)
    assert traces, "the crashed lab left nothing to clean: the test proves nothing"
    if where != "before-ready":
        assert any(t.startswith("mount") for t in traces), traces
    removed = cleanup_leftovers()
    # Other test sessions on this machine clean leftovers too and may have been first.
    assert run_id in removed or not lab_traces(run_id)
    assert lab.run_id not in removed
    assert lab_traces(run_id) == []
    assert box_symptoms(lab, "ctr1")["tcp6"], "cleanup hurt the live session lab"
