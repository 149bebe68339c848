"""`vobox-agent init`: a commented starting config for this host that check-config accepts (issue 33 item 1)."""
from __future__ import annotations

import json
import os
import re
import tomllib

import pytest

from agent.commands.init import config_text
from agent.core import config as C
from agent.core.discovery import discover
from tests.agent.commands.cli_helpers import run_cli

CASES = os.path.join(os.path.dirname(__file__), "..", "..", "cases")


def _found():
    """The containers of tests/cases/discovery-inherited-labels-inspect.json that discovery takes (real inspect)."""
    with open(os.path.join(CASES, "discovery-inherited-labels-inspect.json"), encoding="utf-8") as f:
        inspect = json.load(f)["inspect"]
    return list(discover(inspect, C.parse({"discovery": {"docker": True}})).found)


def _uncommented(text: str) -> str:
    """TEXT with the commented [[box]] tables of the containers found made live (a pinned box each)."""
    head, vm = text.split("# A VM (EXAMPLE", 1)
    out = []
    for line in head.splitlines():
        m = re.match(r"^# (\[\[box\]\]|[a-z0-9_]+ = .*)$", line)
        out.append(m.group(1) if m else line)
    return "\n".join(out) + "\n# A VM (EXAMPLE" + vm


def test_the_text_passes_check_config_with_the_networks_and_containers_found():
    found = _found()
    assert found, "the case file has containers discovery takes"
    text = config_text("host1", 1764288000, ["docknet", "docknet6"], found, None)
    cfg = C.loads(text, source="init")
    assert cfg.discovery.docker and cfg.discovery.networks == ("docknet", "docknet6")
    assert cfg.boxes == () and cfg.remediation.dry_run and cfg.agent.timeout_s == 1.0
    for f in found:   # each container found is listed, commented, with its MAC
        assert f"# container {f.box.container} id {f.container_id[:12]} mac {f.mac or '?'}" in text
    assert "# A VM (EXAMPLE" in text
    data = tomllib.loads(text)
    assert "box" not in data


def test_a_pinned_container_is_a_valid_box():
    found = _found()
    text = _uncommented(config_text("host1", 1764288000, ["docknet"], found, None))
    cfg = C.loads(text, source="init")
    assert [b.name for b in cfg.boxes] == [f.box.name for f in found]


def test_without_an_engine_it_says_why_and_still_passes():
    text = config_text("host1", 1764288000, [], [], "cannot ask the container engine at unix:///x (refused)")
    assert "# The container engine could not be asked (cannot ask the container engine" in text
    cfg = C.loads(text, source="init")
    assert cfg.discovery.docker and cfg.discovery.networks == ()


def test_init_refuses_to_overwrite_and_writes_0640(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    out = tmp_path / "etc" / "agent.toml"
    code, stdout, err = run_cli(["init", "--output", str(out)])
    assert code == 0, err
    assert f"cannot ask the container engine at unix://{tmp_path}/no-engine.sock" in err and "Traceback" not in err
    assert oct(out.stat().st_mode & 0o777) == "0o640"
    code, _, err = run_cli(["check-config", "-c", str(out)])
    assert code == 0, err
    code, _, err = run_cli(["init", "--output", str(out)])
    assert code == 1 and err.strip() == f"vobox-agent init: {out} exists; --force replaces it"
    code, _, err = run_cli(["init", "--output", str(out), "--force"])
    assert code == 0, err


@pytest.mark.lab
def test_init_on_the_lab_host_finds_its_macvlan_network_and_containers(lab, tmp_path):
    """The real engine: the lab's macvlan network is in [discovery] networks, its containers are listed."""
    out = tmp_path / "agent.toml"
    code, _, err = run_cli(["init", "--output", str(out)])
    assert code == 0, err
    text = out.read_text()
    cfg = C.loads(text, source="init")
    assert lab.network in cfg.discovery.networks, (lab.network, cfg.discovery.networks)
    for b in lab.boxes:
        if b.kind == "container":
            assert f"# container {b.container} id " in text, b.container
    code, _, err = run_cli(["check-config", "-c", str(out)])
    assert code == 0, err
