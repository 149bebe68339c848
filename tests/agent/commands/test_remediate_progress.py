"""`remediate` says the action, then counts the verify wait down (issue 33 item 4)."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from agent.commands import countdown
from tests.agent.commands.cli_helpers import dead_port
from tests.agent.storage.conftest import bare_netns  # noqa: F401 - the namespace fixture, shared

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


class FakeClock:
    """A monotonic clock the fake sleep moves (time is moved, not waited for)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_counts_down_each_second():
    clock, out = FakeClock(), Tty()
    countdown(3.5, "vm1 to answer icmp, arp", stream=out, clock=clock, sleep=clock.sleep)
    assert clock.slept == [1.0, 1.0, 1.0, 0.5] and clock.now == 103.5
    frames = out.getvalue().split("\r")[1:]
    assert [f.split(" s left")[0] for f in frames[:-1]] == ["verify: 4", "verify: 3", "verify: 2", "verify: 1"]
    assert all("waiting for vm1 to answer icmp, arp" in f for f in frames[:-1])
    assert frames[-1] == "verify: waited 3.5 s for vm1 to answer icmp, arp; re-probing\x1b[K\n"
    assert out.getvalue().count("\n") == 1   # one line, redrawn


def test_not_a_terminal_one_line_per_step():
    clock, out = FakeClock(), io.StringIO()
    countdown(30, "vm1 to answer icmp", stream=out, clock=clock, sleep=clock.sleep)
    assert out.getvalue().splitlines() == ["verify: waiting 30 s for vm1 to answer icmp",
                                           "verify: waited 30 s for vm1 to answer icmp; re-probing"]
    assert sum(clock.slept) == 30 and "\r" not in out.getvalue()


@pytest.mark.lab
def test_remediate_shows_the_action_then_the_verify_wait(bare_netns, tmp_path):  # noqa: F811 - the fixture
    """A real `remediate` in a namespace with no route out: the action (a `command` hook), then the wait and the
    re-probe of the box, which does not answer there (not recovered)."""
    state = tmp_path / "state"
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nstate_dir = "{state}"\ntimeout = "200ms"\n\n[influxdb]\n'
                    f'url = "http://127.0.0.1:{dead_port()}"\nwrite_timeout = "1s"\n\n[remediation]\nenabled = true\n'
                    'verify = "2s"\n\n[[box]]\nname = "vm1"\nkind = "vm"\nipv4 = "192.0.2.5"\ntcp_ports = [1093]\n'
                    'remediate = ["command"]\ncommand = ["true", "{box}"]\n')
    proc = subprocess.run([sys.executable, "-m", "agent", "--netns", bare_netns, "remediate", "-c", str(path), "vm1",
                           "command", "--json"], capture_output=True, text=True, timeout=60, cwd=REPO)
    steps = [ln for ln in proc.stderr.splitlines() if ln.startswith(("remediate:", "verify:"))]
    assert steps[:4] == ["remediate: running command on vm1 ...", steps[1],
                         "verify: waiting 2 s for vm1 to answer arp, icmp, tcp/1093",
                         "verify: waited 2 s for vm1 to answer arp, icmp, tcp/1093; re-probing"], proc.stderr
    assert steps[1].startswith("remediate: command on vm1 done after ")
    assert "Traceback" not in proc.stderr
    records = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert '"recovered": false' in records[-1], proc.stdout   # nothing answers in a namespace without links
    assert proc.returncode == 3, proc.stderr   # done, but InfluxDB refused the record
