"""The operator guide's EL9 chapter against the files it names: the Apptainer config loads, the venv block
copies files the wheel installs, the Podman sed finds its line, the image's build arguments exist."""
from __future__ import annotations

import os
import re
import tomllib

from agent.core import config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(*path: str) -> str:
    with open(os.path.join(REPO, *path)) as f:
        return f.read()


def _chapter() -> str:
    guide = _read("docs", "operator-guide.md")
    start = guide.index("## Install on EL9")
    return guide[start:guide.index("\n## ", start + 3)]


def test_every_step_says_what_it_was_checked_with():
    text = _chapter()
    assert "[Debian]" in text and "[not run]" in text
    for sub in ("### The RPM", "### Without the RPM", "### The units", "### SELinux", "### firewalld",
                "### Apptainer", "### The image on EL9"):
        part = text[text.index(sub):]
        part = part[:part.find("\n### ", 4)] if "\n### " in part[4:] else part
        assert "[Debian]" in part or "[not run]" in part, sub


def test_apptainer_config_is_a_valid_vm_box(tmp_path):
    block = re.search(r"### Apptainer instances.*?```toml\n(.*?)```", _chapter(), re.S).group(1)
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n\n' + block)
    cfg = config.load(str(cfg_file), check_files=False)
    (box,) = cfg.boxes
    assert box.kind == "vm" and box.remediate == ("command",) and box.ipv4 == "192.0.2.30"
    # the only file problem is the site's own restart script, which the guide says to write
    assert [e for e in config.file_errors(cfg) if "restart-apptainer-instance" not in e] == []


def test_venv_block_copies_files_the_wheel_installs():
    block = re.search(r"### Without the RPM.*?\n\n(    .*?)\n\n", _chapter(), re.S).group(1)
    assert "python3.11 -m venv /opt/vobox-agent" in block and "--no-index --find-links wheelhouse" in block
    data = tomllib.loads(_read("pyproject.toml"))["tool"]["setuptools"]["data-files"]["share/vobox-agent"]
    named = re.findall(r"/opt/vobox-agent/share/vobox-agent/(\S+)", block)
    assert named and all(f"deploy/{n}" in data for n in named), (named, data)


def test_podman_proxy_sed_finds_the_socket_line():
    sed = re.search(r"sed 's\|([^|]+)\|([^|]+)\|'", _chapter())
    assert sed and sed.group(2) == "/run/podman/podman.sock"
    assert re.search(rf"^\s*server \S+ {re.escape(sed.group(1))}$", _read("deploy", "socket-proxy", "haproxy.cfg"), re.M)


def test_image_build_arguments_exist():
    dockerfile = _read("deploy", "Dockerfile")
    args = set(re.findall(r"^ARG (\w+)", dockerfile, re.M))
    for arg in re.findall(r"--build-arg (\w+)=", _chapter()):
        assert arg in args, arg
    assert {"BASE_IMAGE", "PYTHON", "BASE_PACKAGES", "VOBOX_AGENT_VERSION"} <= args
