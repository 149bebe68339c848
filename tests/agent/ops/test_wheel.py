"""Packaging: the vobox-agent wheel, built offline from this tree, holds the product only; the CLI's user texts."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile

import pytest

from agent import cli, version
from agent.status import STATUS_FILE, STATUS_VERSION

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# The version of this checkout by its git tags (agent.version, tested in tests/agent/test_version.py): 0.1.0 without
# a tag, as this assertion said before versions came from tags; X.Y.Z.postN+gSHA N commits after vX.Y.Z.
VERSION = version.version(REPO)
DIST = f"vobox_agent-{VERSION}"
DATA = f"{DIST}.data/data/"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel `python -m build --wheel --no-isolation` makes from the checkout (no index needed)."""
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), REPO],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (path,) = out.glob("vobox_agent-*.whl")
    return path


def test_wheel_holds_the_product_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"agent", "probes", "remediations", f"{DIST}.dist-info", f"{DIST}.data"}, tops
    assert not [n for n in names if n.startswith(("lab/", "tests/", "bench/", "scripts/")) or "/tests/" in n]
    assert "agent/cli.py" in names and "probes/icmp.py" in names
    assert f"{DIST}.dist-info/licenses/LICENSE" in names


def test_wheel_metadata_says_apache_and_has_no_lab_script(wheel):
    zf = zipfile.ZipFile(wheel)
    meta = zf.read(f"{DIST}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta
    assert zf.read(f"{DIST}.dist-info/licenses/LICENSE").decode().lstrip().startswith("Apache License")
    scripts = zf.read(f"{DIST}.dist-info/entry_points.txt").decode()
    assert "vobox-agent = agent.cli:main" in scripts and "vobox-lab" not in scripts


def test_unit_documentation_points_where_the_wheel_installs_the_guide(wheel, tmp_path):
    """pip install --prefix P puts the guide at P/share/doc/vobox-agent/: the unit's Documentation= with P=/opt/vobox-agent."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for unit in ("vobox-agent.service", "vobox-agent-docker-group.service"):
        with open(os.path.join(REPO, "deploy", unit)) as f:
            doc = re.search(r"^Documentation=file://(\S+)$", f.read(), re.M).group(1)
        assert doc.startswith("/opt/vobox-agent/")
        assert DATA + doc.removeprefix("/opt/vobox-agent/") in names, doc
        assert DATA + "share/vobox-agent/" + unit in names
    assert DATA + "share/vobox-agent/agent.example.toml" in names
    assert DATA + "share/vobox-agent/socket-proxy/haproxy.cfg" in names
    # a fresh venv standing for /opt/vobox-agent; pip --python installs there without touching this one
    prefix = tmp_path / "opt"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True, timeout=120)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python"), "install", "-q",
                           "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "share/doc/vobox-agent/operator-guide.md").read_text().startswith("#")
    assert (prefix / "share/vobox-agent/vobox-agent.service").is_file()
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "agent" / "cli.py").is_file() and not (site / "lab").exists()
    # the installed copy answers --version; the dependencies come from this venv, after its own site-packages
    (site / "deps.pth").write_text(next(p for p in sys.path if p.endswith("site-packages")) + "\n")
    out = subprocess.run([str(prefix / "bin" / "vobox-agent"), "--version"], capture_output=True, text=True,
                         timeout=60, cwd=str(tmp_path))
    assert out.stdout.strip() == f"vobox-agent {VERSION}", out
    which = subprocess.run([str(prefix / "bin" / "python"), "-c", "import agent; print(agent.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert which.stdout.strip() == str(site / "agent" / "__init__.py"), which


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"vobox-agent {VERSION}"


def _helps() -> dict[str, str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {"": parser.format_help(), **{name: p.format_help() for name, p in sub.choices.items()}}


def test_every_help_is_a_user_text():
    helps = _helps()
    assert set(helps) == {"", *cli.COMMANDS}
    for name, text in helps.items():
        # a description paragraph after the usage, no developer docstring wording
        body = text.split("\n\n", 1)[1]
        assert not body.startswith(("positional arguments", "options")), f"{name or 'top'} has no description"
        for dev in ("entry point", "wires", "registry", "module", "argparse", "`register"):
            assert dev not in text, (name, dev)
    assert "--version" in helps[""] and "doctor" in helps[""]


def test_no_verify_and_until_are_documented():
    helps = _helps()
    assert "--no-verify" in helps["remediate"] and "re-probe" in helps["remediate"]
    assert "--until" in helps["report"]
    for doc in ("README.md", "docs/operator-guide.md"):
        with open(os.path.join(REPO, doc)) as f:
            text = f.read()
        assert "--no-verify" in text and "--until" in text, doc


@pytest.mark.parametrize("age_s, code", [pytest.param(5, 0, id="fresh"), pytest.param(3600, 1, id="stale"),
                                         pytest.param(None, 1, id="missing")])
def test_status_check_is_the_health_check(tmp_path, capsys, age_s, code):
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "agent.toml"
    with open(os.path.join(REPO, "deploy", "agent.example.toml")) as f:
        example = f.read()
    cfg.write_text(re.sub(r'(?m)^state_dir\s*=.*$', f'state_dir = "{state}"', example)
                   if re.search(r'(?m)^state_dir\s*=', example)
                   else example.replace("[agent]\n", f'[agent]\nstate_dir = "{state}"\n', 1))
    if age_s is not None:
        (state / STATUS_FILE).write_text(json.dumps({"version": STATUS_VERSION, "updated_s": time.time() - age_s,
                                                     "interval_s": 10, "boxes": {}}))
    assert cli.main(["status", "-c", str(cfg), "--check"]) == code
    out = capsys.readouterr()
    assert ("healthy" in out.out) if code == 0 else ("unhealthy" in out.err)
