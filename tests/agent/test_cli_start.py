"""`vobox-agent` starts light: building the parser, --version and --help import none of the heavy libraries.

A command imports what it uses when it runs (issue 25.3); the start-up time itself is measured by
bench/bench_cli.py. Each case runs in a fresh interpreter and reports the modules it ended with.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.cli import COMMANDS

# What a CLI start must not pay for: packet crafting, the engine client, the InfluxDB client, X.509,
# the Prometheus client, the terminal UI (each costs tens of milliseconds to import).
HEAVY = ("scapy", "docker", "influxdb_client", "cryptography", "prometheus_client", "rich")

HARNESS = """
import json, sys
{preload}
from agent import cli
try:
    cli.main({argv!r})
except SystemExit:
    pass
sys.stdout.flush()
print("\\n" + json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def modules_after(argv: list[str], preload: str = "") -> set[str]:
    """Top-level packages imported by a fresh `vobox-agent ARGV` (run in-process in a child interpreter)."""
    proc = subprocess.run([sys.executable, "-c", HARNESS.format(argv=argv, preload=preload)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [
    pytest.param(["--version"], id="version"),
    pytest.param(["--help"], id="help"),
    *[pytest.param([name, "--help"], id=f"{name}-help") for name in COMMANDS],
])
def test_parser_and_help_import_no_heavy_library(argv):
    assert sorted(modules_after(argv) & set(HEAVY)) == []


def test_version_prints_on_stdout_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "agent", "--version"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("vobox-agent ") and len(proc.stdout.split()) == 2


def test_the_check_sees_a_heavy_import():
    """The harness itself: a library imported before the parser is built is reported (the test above can fail)."""
    assert "docker" in modules_after(["--version"], preload="import docker")


@pytest.mark.parametrize("package", ["remediations", "agent.storage", "agent.forensics"])
def test_lazy_packages_export_every_name_they_list(package):
    """The packages that load their names on first use (PEP 562) still give each name in __all__, and only those."""
    code = (f"import {package} as p, sys; names = sorted(p.__all__); "
            "print(all(getattr(p, n) is getattr(sys.modules[p._HOME[n]], n) for n in names), names == sorted(p._HOME))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["True", "True"], proc.stderr
