"""issue 31 item 1: without [influxdb] the commands that read InfluxDB say so in one line; those that record in it
say the record is not kept and succeed (the action itself stands)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
NO_INFLUX = "no [influxdb] section in the config: nothing is stored in InfluxDB to read"


def _run(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[[box]]\nname = "b"\nkind = "vm"\nipv4 = "192.0.2.9"\n')
    return subprocess.run([sys.executable, "-m", "agent", *argv, "-c", str(cfg)], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=120)


@pytest.mark.parametrize("argv, line", [
    pytest.param(("events",), f"vobox-agent events: {NO_INFLUX}", id="events"),
    pytest.param(("report",), f"vobox-agent report: {NO_INFLUX}", id="report"),
    pytest.param(("status",), f"; and {NO_INFLUX}", id="status-without-status-json"),
])
def test_reads_fail_with_one_line_naming_the_missing_section(tmp_path, argv, line):
    proc = _run(tmp_path, *argv)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and line in proc.stderr, proc.stderr


def test_a_maintenance_window_without_influxdb_is_in_effect_and_not_recorded(tmp_path):
    proc = _run(tmp_path, "maintenance", "start", "b", "--for", "1h")
    assert proc.returncode == 0, proc.stderr
    assert "not recorded in InfluxDB: no [influxdb] in the config" in proc.stdout
    assert (tmp_path / "state" / "maintenance.json").exists() and not (tmp_path / "state" / "spool").exists()
