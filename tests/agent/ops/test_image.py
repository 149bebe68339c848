"""Lab test: the agent image builds from deploy/Dockerfile on the lab's engine, and its container probes the lab.

The base image is made once from Debian packages (deploy/make-base-image.sh:
debootstrap from apt's mirror + docker import) and cached by tag. The agent
container joins the lab's macvlan network with its own address, so it is a
macvlan sibling of the boxes (bridge mode), which reach each other.
"""
from __future__ import annotations

import glob
import ipaddress
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BASE_TAG = "vobox-agent-base:bookworm"


def _docker(*args, timeout_s=900, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=check)


def buildkit_docker() -> list[str]:
    """A docker CLI that builds with BuildKit: `docker buildx build --load`, else a 20.10 CLI's built-in BuildKit.

    Docker CLIs >= 23 need the buildx plugin for BuildKit; Debian's docker.io 20.10 CLI
    (/usr/bin/docker) has it built in (DOCKER_BUILDKIT=1).
    """
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0:
        return ["docker", "buildx", "build", "--load"]
    for cli in ("docker", "/usr/bin/docker"):
        proc = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip().split(".")[0].isdigit() \
                and int(proc.stdout.strip().split(".")[0]) < 23:
            return [cli, "build"]
    pytest.fail("no docker CLI with BuildKit here: install buildx (docker-buildx) or Debian's docker.io CLI")


PEM = "".join(Path(p).read_text() for p in sorted(glob.glob("/usr/local/share/ca-certificates/*.crt")))
INDEX_MARK = "https://vobox-build-secret.invalid/simple"  # a pip.conf line that must not reach the image


@pytest.fixture(scope="module")
def agent_image(tmp_path_factory):
    """Build deploy/Dockerfile with BuildKit on a local base (made and cached by tag when missing); removed afterwards.

    The build secrets are real: this machine reaches PyPI through a TLS-inspecting proxy whose CA
    lives in /usr/local/share/ca-certificates (secret `pipca`), and a pip.conf (secret `pipconf`)
    carries the index settings plus a marker line that must not be in `docker history`.
    """
    if _docker("image", "inspect", BASE_TAG, check=False).returncode != 0:
        subprocess.run([os.path.join(REPO, "deploy", "make-base-image.sh"), BASE_TAG], check=True, timeout=1800)
    tag = f"vobox-agent:ops-{uuid.uuid4().hex[:8]}"
    secrets = tmp_path_factory.mktemp("secrets")
    conf = ["[global]", "disable-pip-version-check = true", f"# {INDEX_MARK}"]
    for var, key in (("PIP_INDEX_URL", "index-url"), ("PIP_EXTRA_INDEX_URL", "extra-index-url")):
        if os.environ.get(var, "").startswith("http"):
            conf.append(f"{key} = {os.environ[var]}")
    (secrets / "pip.conf").write_text("\n".join(conf) + "\n")
    args = [*buildkit_docker(), "-q", "-f", "deploy/Dockerfile", "--build-arg", f"BASE_IMAGE={BASE_TAG}", "-t", tag,
            "--secret", f"id=pipconf,src={secrets / 'pip.conf'}"]
    if PEM:
        (secrets / "ca.pem").write_text(PEM)
        args += ["--secret", f"id=pipca,src={secrets / 'ca.pem'}"]
    proc = subprocess.run([*args, "."], capture_output=True, text=True, timeout=1800, cwd=REPO,
                          env=dict(os.environ, DOCKER_BUILDKIT="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield tag
    _docker("image", "rm", "-f", tag, check=False)


@pytest.mark.lab
def test_build_secrets_are_not_in_the_image_history(ops_lab, agent_image):
    history = _docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", agent_image).stdout
    assert "vobox-agent" in history and "HEALTHCHECK" in history  # the history is really there
    assert INDEX_MARK not in history and "PIP_EXTRA_CA_PEM" not in history
    if PEM:
        body = [line for line in PEM.splitlines() if line and not line.startswith("-----")]
        assert not any(line in history for line in body[:3])
    # nor in the files: no pip.conf or CA copy left in the image
    out = _docker("run", "--rm", "--cap-add", "NET_RAW", "--cap-add", "NET_ADMIN", "--entrypoint", "sh", agent_image,
                  "-c", "ls /run/secrets /tmp/pip-ca.pem 2>&1; grep -rl vobox-build-secret /etc /opt 2>/dev/null; true")
    assert "No such file" in out.stdout and "vobox-build-secret" not in out.stdout, out.stdout


@pytest.mark.lab
def test_image_runs_as_a_non_root_user_with_file_capabilities(ops_lab, agent_image):
    inspect = json.loads(_docker("image", "inspect", agent_image).stdout)[0]
    assert inspect["Config"]["User"] == "vobox-agent"
    probe = ("import os, socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close(); "
             "print(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])")
    out = _docker("run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_RAW", "--cap-add", "NET_ADMIN",
                  "--network", "none", "--entrypoint", "/opt/vobox-agent/bin/python3", agent_image, "-c", probe)
    assert out.stdout.split() == ["10001", "0000000000003000"]  # not root; exactly NET_ADMIN and NET_RAW
    # without the capabilities in the container's bounding set the interpreter cannot start: said in the guide
    bare = _docker("run", "--rm", "--cap-drop", "ALL", "--network", "none", agent_image, "--version", check=False)
    assert bare.returncode != 0 and "operation not permitted" in (bare.stdout + bare.stderr).lower()


@pytest.mark.lab
def test_healthcheck_reads_the_agents_status(ops_lab, agent_image, tmp_path):
    from agent.listeners.status import STATUS_FILE, STATUS_VERSION

    inspect = json.loads(_docker("image", "inspect", agent_image).stdout)[0]
    assert inspect["Config"]["Healthcheck"]["Test"] == ["CMD", "vobox-agent", "status", "-c",
                                                        "/etc/vobox-agent/agent.toml", "--check"]
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    run = ["run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_RAW", "--cap-add", "NET_ADMIN", "--network", "none",
           "-v", f"{os.path.join(REPO, 'deploy', 'agent.example.toml')}:/etc/vobox-agent/agent.toml:ro",
           "-v", f"{state}:/var/lib/vobox-agent", "--entrypoint", "sh", agent_image, "-c"]
    check = inspect["Config"]["Healthcheck"]["Test"][1:]
    missing = _docker(*run, " ".join(check), check=False)
    assert missing.returncode == 1 and "unhealthy" in missing.stderr
    (state / STATUS_FILE).write_text(json.dumps({"version": STATUS_VERSION, "updated_s": time.time(),
                                                 "interval_s": 10, "boxes": {}}))
    fresh = _docker(*run, " ".join(check), check=False)
    assert fresh.returncode == 0 and "healthy" in fresh.stdout, fresh.stderr


@pytest.mark.lab
def test_image_size_is_what_the_guide_says(ops_lab, agent_image):
    size_mb = int(json.loads(_docker("image", "inspect", agent_image).stdout)[0]["Size"]) / 1e6
    with open(os.path.join(REPO, "docs", "operator-guide.md")) as f:
        guide = f.read()
    import re
    stated = [int(m) for m in re.findall(r"image is about (\d+) MB", guide)]
    assert stated and abs(stated[0] - size_mb) <= 0.15 * stated[0], (stated, size_mb)


@pytest.mark.lab
def test_image_runs_the_cli_with_only_net_raw_and_net_admin(ops_lab, agent_image):
    out = _docker("run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_RAW", "--cap-add", "NET_ADMIN",
                  "--network", "none", agent_image, "--help").stdout
    assert "doctor" in out and "status" in out
    cmd = _docker("image", "inspect", agent_image, "--format", "{{json .Config.Entrypoint}} {{json .Config.Cmd}}")
    assert cmd.stdout.strip() == '["vobox-agent"] ["run","-c","/etc/vobox-agent/agent.toml"]'


@pytest.mark.lab
def test_agent_container_on_the_lab_segment_probes_the_boxes(ops_lab, agent_image):
    boxes = [b for b in ops_lab.boxes if b.kind == "container"]
    subnet = ipaddress.ip_network(ops_lab.ipv4_subnet)
    used = {b.ipv4 for b in ops_lab.boxes} | {ops_lab.monitor_ipv4}
    free = next(str(a) for a in reversed(list(subnet.hosts())) if str(a) not in used)
    name = f"vbxops-agent-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    box = boxes[0]
    try:
        proc = _docker("run", "--rm", "--name", name, "--cap-drop", "ALL", "--cap-add", "NET_RAW",
                       "--cap-add", "NET_ADMIN", "--network", ops_lab.network, "--ip", free, agent_image,
                       "probe", "--probe", "icmp,arp,tcp", "--port", str(box.tcp_ports[0]), "--json", box.ipv4,
                       timeout_s=120, check=False)
    finally:
        _docker("rm", "-f", name, check=False)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert {r["probe"]: r["ok"] for r in results} == {"icmp": True, "arp": True, "tcp": True}, results
    assert all(r["target"] == box.ipv4 and r["rtt_ms"] is not None and r["rtt_ms"] < 1000 for r in results)


@pytest.mark.lab
def test_agent_container_probe_of_a_paused_box_fails_at_l4(ops_lab, agent_image):
    """The same container run sees a fault: a paused box still answers ping and ARP, not TCP."""
    box = [b for b in ops_lab.boxes if b.kind == "container"][1]
    subnet = ipaddress.ip_network(ops_lab.ipv4_subnet)
    used = {b.ipv4 for b in ops_lab.boxes} | {ops_lab.monitor_ipv4}
    free = [str(a) for a in reversed(list(subnet.hosts())) if str(a) not in used][1]
    name = f"vbxops-agent-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ops_lab.fault(box.name, "l4")
    try:
        proc = _docker("run", "--rm", "--name", name, "--cap-drop", "ALL", "--cap-add", "NET_RAW",
                       "--cap-add", "NET_ADMIN", "--network", ops_lab.network, "--ip", free, agent_image,
                       "probe", "--probe", "icmp,arp,tcp", "--port", str(box.tcp_ports[0]), "--timeout", "1",
                       "--json", box.ipv4, timeout_s=120, check=False)
    finally:
        _docker("rm", "-f", name, check=False)
        ops_lab.clear(box.name)
    results = json.loads(proc.stdout)
    assert {r["probe"]: r["ok"] for r in results} == {"icmp": True, "arp": True, "tcp": False}, results
