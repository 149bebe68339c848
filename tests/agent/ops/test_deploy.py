"""deploy/: the systemd unit verifies, the example config is valid, the socket proxy allows only the agent's calls."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from agent.core import config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEPLOY = os.path.join(REPO, "deploy")


UNITS = ("vobox-agent.service", "vobox-agent-docker-group.service")


def _unit(name: str = "vobox-agent.service") -> str:
    with open(os.path.join(DEPLOY, name)) as f:
        return f.read()


@pytest.mark.parametrize("name", UNITS)
def test_unit_has_the_required_settings(name):
    unit = _unit(name)
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN", "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN",
                 "ProtectSystem=strict", "StateDirectory=vobox-agent", "ReadWritePaths=/var/lib/vobox-agent",
                 "SystemCallFilter=@system-service", "User=vobox-agent",
                 "vobox-agent --log-level INFO run -c /etc/vobox-agent/agent.toml"):
        assert line in unit, line


def test_socket_proxy_unit_has_no_docker_group_and_the_other_says_the_risk():
    proxy, group = _unit(UNITS[0]), _unit(UNITS[1])
    assert "SupplementaryGroups" not in proxy and "Environment=DOCKER_HOST=tcp://127.0.0.1:2375" in proxy
    assert "SupplementaryGroups=docker" in group and "DOCKER_HOST" not in group
    assert "root-equivalent" in group
    # the same sandbox otherwise
    def strip(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert set(strip(proxy)) ^ set(strip(group)) == {"Environment=DOCKER_HOST=tcp://127.0.0.1:2375",
                                                    "SupplementaryGroups=docker"}


def _verifiable(tmp_path, name):
    # verify checks that ExecStart exists: point it at this venv's entry point
    venv_bin = os.path.dirname(shutil.which("vobox-agent") or os.path.join(REPO, ".venv", "bin", "vobox-agent"))
    unit = tmp_path / name
    unit.write_text(_unit(name).replace("/opt/vobox-agent/bin/", venv_bin + "/"))
    return unit


@pytest.mark.parametrize("name", UNITS)
def test_unit_passes_systemd_analyze_verify(tmp_path, name):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze (apt-get install systemd)")
    unit = _verifiable(tmp_path, name)
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and name not in proc.stderr, proc.stderr


def security_score(path) -> float:
    """`systemd-analyze security --offline=true` exposure of a unit file (systemd >= 252, no running systemd needed)."""
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout + proc.stderr)
    assert m, proc.stdout[-1000:] + proc.stderr[-1000:]
    return float(m.group(1))


@pytest.mark.parametrize("name", UNITS)
def test_security_score_is_the_guides_and_below_the_old_3_8(tmp_path, name):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze (apt-get install systemd)")
    score = security_score(_verifiable(tmp_path, name))
    assert score < 3.8
    with open(os.path.join(REPO, "docs", "operator-guide.md")) as f:
        row = next(ln for ln in f if ln.startswith(f"| `{name}`"))
    assert f"{score:.1f}" in row, (score, row)


def test_example_config_is_valid():
    """Valid everywhere; the files it names (the VM hook's `virsh`) are checked on the site's host only."""
    cfg = config.load(os.path.join(DEPLOY, "agent.example.toml"), check_files=False)
    assert all("'virsh'" in e for e in config.file_errors(cfg)), config.file_errors(cfg)
    assert {b.kind for b in cfg.boxes} == {"container", "vm"}
    assert cfg.remediation.dry_run


def test_tecnativa_env_grants_only_what_the_agent_needs():
    env = {}
    with open(os.path.join(DEPLOY, "socket-proxy", "tecnativa.env")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k] = v
    granted = {k for k, v in env.items() if v == "1"}
    assert granted == {"EVENTS", "PING", "VERSION", "CONTAINERS", "NETWORKS", "POST", "ALLOW_RESTARTS"}
    for dangerous in ("EXEC", "IMAGES", "BUILD", "VOLUMES", "AUTH", "SECRETS", "SWARM", "SYSTEM"):
        assert env[dangerous] == "0"


@pytest.fixture
def haproxy_proxy(tmp_path):
    """deploy/socket-proxy/haproxy.cfg run against the real dockerd, on a free loopback port."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the Docker socket)")
    if shutil.which("haproxy") is None:
        pytest.skip("needs haproxy (apt-get install haproxy)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(os.path.join(DEPLOY, "socket-proxy", "haproxy.cfg")) as f:
        cfg = f.read().replace("bind 127.0.0.1:2375", f"bind 127.0.0.1:{port}")
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"tcp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.lab
def test_haproxy_proxy_allows_the_agents_calls_and_refuses_the_rest(haproxy_proxy, ops_lab):
    import docker

    client = docker.DockerClient(base_url=haproxy_proxy, timeout=10)
    assert client.ping()
    assert client.version()["ApiVersion"]
    ctr = next(b for b in ops_lab.boxes if b.kind == "container")
    c = client.containers.get(ctr.container)
    assert c.status == "running"
    client.networks.get(ctr.network)
    assert any(x.name == ctr.container for x in client.containers.list())
    c.pause()
    c.unpause()
    for refused in (lambda: client.images.list(),
                    lambda: client.containers.create("busybox", name=f"vbxops-{uuid.uuid4().hex[:6]}"),
                    lambda: c.exec_run("true"),
                    lambda: client.volumes.list(),
                    lambda: client.info()):
        with pytest.raises(docker.errors.APIError) as exc:
            refused()
        assert exc.value.status_code == 403
    ops_lab.wait_box(ctr.name)


def test_the_image_copies_every_file_the_wheel_installs():
    """deploy/Dockerfile builds the wheel from /src: every path pyproject's data-files names must be COPYed there
    (a missing one fails `pip install /src` only in the image build)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    copied: set[str] = set()
    for line in (root / "deploy" / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied.update(w.rstrip("/") for w in words[1:-1])
    missing = sorted(p for paths in data.values() for p in paths if p not in copied and p.split("/")[0] not in copied)
    assert not missing, f"deploy/Dockerfile does not COPY {missing}"
