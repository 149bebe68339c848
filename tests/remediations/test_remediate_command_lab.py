"""`vobox-agent remediate` end to end: real config, real lab containers, history persisted across runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import docker
import pytest

from agent import netns
from agent.storage.influx import query
from tests.remediations.conftest import tcp_ok

pytestmark = pytest.mark.lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_config(lab, tmp_path, cooldown, max_per_box, site="lab", influx_url="http://127.0.0.1:8086"):
    lines = [f"""
[agent]
interval = 2
timeout = 1.0
state_dir = "{tmp_path / 'state'}"
site = "{site}"

[influxdb]
url = "{influx_url}"

[remediation]
enabled = true
cooldown = {cooldown}
max_per_box_per_hour = {max_per_box}
max_per_hour = 20
verify = 1
stop_timeout = 1
"""]
    for b in lab.boxes:
        lines.append(f"""
[[box]]
name = "{b.name}"
kind = "{b.kind}"
ipv4 = "{b.ipv4}"
ipv6 = "{b.ipv6}"
tcp_ports = {list(b.tcp_ports)}
""")
        if b.container:
            lines.append(f'container = "{b.container}"\nnetwork = "{b.network}"\n'
                         f'remediate = ["reconnect_network", "restart_container"]\n')
        else:
            lines.append('remediate = ["command"]\ncommand = ["true", "{box}"]\n')
    path = tmp_path / "agent.toml"
    path.write_text("".join(lines))
    return str(path)


def remediate(lab, cfg, *args):
    proc = subprocess.run([sys.executable, "-m", "agent", "--netns", lab.monitor_ns, "remediate", "--json", "-c", cfg,
                           *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, records, proc.stderr


def test_manual_restart_then_cap_counts_across_runs(rlab, tmp_path):
    lab = rlab
    b = lab.box("ctr1")
    ctr = docker.from_env().containers.get(b.container)
    ctr.pause()
    try:
        site = f"manual-{uuid.uuid4().hex[:8]}"
        cfg = write_config(lab, tmp_path, cooldown=0, max_per_box=1, site=site)
        code, records, err = remediate(lab, cfg, "ctr1", "restart_container")
        assert code == 0, err
        r, = records
        assert (r["action"], r["trigger"], r["ok"], r["recovered"], r["dry_run"]) == \
            ("restart_container", "manual", True, True, False)
        assert tcp_ok(lab, b.ipv4, b.tcp_ports[0])
        saved = json.loads((tmp_path / "state" / "remediation-history.json").read_text())
        assert [(a["box"], a["trigger"]) for a in saved["actions"]] == [("ctr1", "manual")]
        # A second process sees the first action: the per-box cap (1/hour) refuses, and says so.
        code, records, err = remediate(lab, cfg, "ctr1", "restart_container")
        assert code == 2 and "cap reached" in err
        assert records and records[0]["reason"].startswith("cap reached") and records[0]["outcome"] == "refused"
        # --force bypasses the cap once, recorded with who and why; it needs a reason.
        code, _, err = remediate(lab, cfg, "ctr1", "restart_container", "--force", "--no-verify")
        assert code == 2 and "--force needs --reason" in err
        code, records, err = remediate(lab, cfg, "ctr1", "restart_container", "--force", "--reason", "ticket 42",
                                       "--no-verify")
        assert code in (0, 1), err
        assert (records[0]["outcome"], records[0]["forced"], records[0]["why"]) == ("done", True, "ticket 42")
        assert records[0]["who"]
        # reset clears the box's budget (recorded); a plain request runs again.
        code, records, err = remediate(lab, cfg, "reset", "ctr1")
        assert code == 0, err
        assert (records[0]["action"], records[0]["outcome"]) == ("reset", "reset")
        code, records, err = remediate(lab, cfg, "ctr1", "restart_container", "--no-verify")
        assert code in (0, 1) and records[0]["outcome"] == "done", err
        # Every record reached InfluxDB as a `remediation` point (trigger=manual); ok only where an action ran.
        with netns.entered(lab.monitor_ns):
            rows = query(lab.influx_url, f"SELECT ok, recovered, reason, outcome, action FROM remediation "
                         f"WHERE site = '{site}' AND box = 'ctr1' AND \"trigger\" = 'manual'", db=lab.influx_database)
        assert [(r["outcome"], r["action"], r["ok"]) for r in rows] == [
            ("done", "restart_container", 1), ("refused", "restart_container", None),
            ("done", "restart_container", 1), ("reset", "reset", None), ("done", "restart_container", 1)]
        assert rows[1]["reason"].startswith("cap reached")
    finally:
        ctr.reload()
        if ctr.attrs["State"]["Paused"]:
            ctr.unpause()


def test_dry_run_returns_at_once_and_spends_nothing(rlab, tmp_path):
    import time

    lab = rlab
    b = lab.box("ctr2")
    started = docker.from_env().containers.get(b.container).attrs["State"]["StartedAt"]
    cfg = write_config(lab, tmp_path, cooldown=600, max_per_box=1)
    for _ in range(2):   # neither the cooldown nor the cap of 1 is spent by a dry run
        t0 = time.monotonic()
        code, records, err = remediate(lab, cfg, "ctr2", "restart_container", "--dry-run")
        assert code == 0, err
        assert time.monotonic() - t0 < 15   # no verify wait (and no reprobe)
        r, = records
        assert (r["outcome"], r["dry_run"], r["ok"]) == ("dry_run", True, False)
        assert r["detail"].startswith("dry-run: would")
    assert docker.from_env().containers.get(b.container).attrs["State"]["StartedAt"] == started
    history = tmp_path / "state" / "remediation-history.json"
    assert not history.exists() or json.loads(history.read_text())["actions"] == []


def test_a_record_that_cannot_be_written_is_said_and_exits_non_zero(rlab, tmp_path):
    cfg = write_config(rlab, tmp_path, cooldown=0, max_per_box=5, influx_url="http://127.0.0.1:9")
    code, records, err = remediate(rlab, cfg, "vm1", "command", "--no-verify")
    assert code == 3 and "NOT RECORDED" in err and "Traceback" not in err
    assert records and records[0]["outcome"] == "done"   # what was done is still printed


@pytest.mark.parametrize("box, action, message", [
    pytest.param("nosuch", "restart_container", "unknown box 'nosuch'", id="unknown-box"),
    pytest.param("ctr1", "reboot", "unknown action 'reboot'", id="unknown-action"),
    pytest.param("vm1", "restart_container", "has no container configured", id="vm-has-no-container"),
])
def test_refusals_exit_2(rlab, tmp_path, box, action, message):
    cfg = write_config(rlab, tmp_path, cooldown=0, max_per_box=5)
    code, _, err = remediate(rlab, cfg, box, action)
    assert code == 2 and message in err


def test_vm_command_placeholder_and_exit_status(rlab, tmp_path):
    cfg = write_config(rlab, tmp_path, cooldown=0, max_per_box=5)
    code, records, err = remediate(rlab, cfg, "vm1", "command", "--no-verify")
    assert code == 0, err
    assert "['true', 'vm1'] exit 0" in records[0]["detail"]
