"""packaging/selinux: the policy module compiles with checkpolicy's checkmodule and semodule_package (syntax, and
every type and class it names declared); its file contexts name the paths the unit and the RPM use.

Only that: no enforcing SELinux host can be had here, so the module stays permissive and the guide says so.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SELINUX = os.path.join(REPO, "packaging", "selinux")
TE = os.path.join(SELINUX, "vobox_agent.te")
FC = os.path.join(SELINUX, "vobox_agent.fc")


def _tools() -> None:
    missing = [t for t in ("checkmodule", "semodule_package") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/setup: checkpolicy semodule-utils)")


def _compile(te: str, fc: str, out) -> subprocess.CompletedProcess[str]:
    mod, pp = out / "vobox_agent.mod", out / "vobox_agent.pp"
    proc = subprocess.run(["checkmodule", "-M", "-m", "-o", str(mod), te], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return proc
    return subprocess.run(["semodule_package", "-o", str(pp), "-m", str(mod), "-f", fc],
                          capture_output=True, text=True, timeout=60)


def test_module_compiles_and_packages(tmp_path):
    _tools()
    proc = _compile(TE, FC, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "vobox_agent.pp").stat().st_size > 1000


@pytest.mark.parametrize("edit", [
    pytest.param(("allow vobox_agent_t self:capability { net_raw net_admin };",
                  "allow vobox_agent_t undeclared_t:capability { net_raw };"), id="undeclared-type"),
    pytest.param(("permissive vobox_agent_t;", "permissive vobox_agent_t"), id="syntax"),
])
def test_a_broken_module_fails_the_same_check(tmp_path, edit):
    """The compile is a real check: a type nobody declared, or a missing semicolon, fails it."""
    _tools()
    with open(TE) as f:
        text = f.read()
    assert edit[0] in text
    broken = tmp_path / "broken.te"
    broken.write_text(text.replace(edit[0], edit[1]))
    assert _compile(str(broken), FC, tmp_path).returncode != 0


def test_module_is_permissive_and_says_it_is_untested():
    with open(TE) as f:
        text = f.read()
    assert re.search(r"^permissive vobox_agent_t;$", text, re.M)
    assert "UNTESTED ON AN ENFORCING HOST" in text
    with open(os.path.join(REPO, "docs", "operator-guide.md")) as f:
        guide = f.read()
    assert "untested on an enforcing host" in guide.lower()


def test_file_contexts_label_what_the_unit_runs_and_where_it_keeps_state():
    with open(os.path.join(REPO, "deploy", "vobox-agent.service")) as f:
        unit = f.read()
    exec_start = re.search(r"^ExecStart=(\S+)", unit, re.M).group(1)
    state = "/var/lib/" + re.search(r"^StateDirectory=(\S+)", unit, re.M).group(1)
    with open(FC) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    labels = {row[0]: row[-1] for row in rows}
    assert labels[exec_start] == "system_u:object_r:vobox_agent_exec_t:s0"
    assert labels[state + "(/.*)?"] == "system_u:object_r:vobox_agent_var_lib_t:s0"
