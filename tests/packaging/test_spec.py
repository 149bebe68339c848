"""packaging/vobox-agent.spec as rpm parses it (rpmspec -P, no build): EL9's systemd macros are used where they
exist and the spec's fallbacks where they do not (Debian's rpm 4.18); every scriptlet is valid sh."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(REPO, "packaging", "vobox-agent.spec")
# What EL9's systemd-rpm-macros define (as markers: their bodies are EL's business)
EL_MACROS = ["systemd_post() EL_SYSTEMD_POST %{?*}", "systemd_preun() EL_SYSTEMD_PREUN %{?*}",
             "systemd_postun_with_restart() EL_SYSTEMD_POSTUN %{?*}", "_unitdir /usr/lib/el9/systemd/system"]


def _parsed(*defines: str) -> str:
    if shutil.which("rpmspec") is None:
        pytest.skip("rpmspec not installed (scripts/setup: rpm)")
    args = ["rpmspec", "-P", "--define", "rpmversion 1.2.3", "--define", "pyversion 1.2.3"]
    for d in defines:
        args += ["--define", d]
    proc = subprocess.run([*args, SPEC], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _section(text: str, name: str) -> str:
    m = re.search(rf"^%{name}\n(.*?)(?=^%(pre|post|preun|postun|files|changelog)\b|\Z)", text, re.M | re.S)
    assert m, name
    return m.group(1)


def test_el9_macros_are_used_where_they_exist():
    text = _parsed(*EL_MACROS)
    assert _section(text, "post").strip() == "EL_SYSTEMD_POST vobox-agent.service"
    assert _section(text, "preun").strip() == "EL_SYSTEMD_PREUN vobox-agent.service"
    assert _section(text, "postun").strip() == "EL_SYSTEMD_POSTUN vobox-agent.service"
    assert "/usr/lib/el9/systemd/system/vobox-agent.service" in _section(text, "files")


@pytest.mark.parametrize("name", ["pre", "post", "preun", "postun"])
def test_fallback_scriptlets_are_valid_sh(name, tmp_path):
    body = _section(_parsed(), name)
    assert body.strip()
    script = tmp_path / f"{name}.sh"
    script.write_text(body)
    proc = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr + body


def test_fallbacks_on_a_system_without_the_macros():
    text = _parsed()
    assert "systemctl --no-reload preset vobox-agent.service" in _section(text, "post")
    assert "systemctl try-restart vobox-agent.service" in _section(text, "postun")
    files = _section(text, "files")
    assert "/usr/lib/systemd/system/vobox-agent.service" in files
    assert re.search(r"^%config\(noreplace\) %attr\(0640,root,vobox-agent\) /etc/vobox-agent/agent\.toml$", files, re.M)
    assert re.search(r"^Requires:\s+python3\.11$", text, re.M)
    assert "/usr/bin/python3.11 -m venv" in text and "--only-binary=:all:" in text and "--no-index" in text
