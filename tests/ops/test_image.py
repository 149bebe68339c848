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
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_TAG = "vobox-agent-base:bookworm"


def _docker(*args, timeout_s=900, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=check)


@pytest.fixture(scope="module")
def agent_image():
    """Build deploy/Dockerfile on a local base (made and cached by tag when missing); removed afterwards."""
    if _docker("image", "inspect", BASE_TAG, check=False).returncode != 0:
        subprocess.run([os.path.join(REPO, "deploy", "make-base-image.sh"), BASE_TAG], check=True, timeout=1800)
    tag = f"vobox-agent:ops-{uuid.uuid4().hex[:8]}"
    # This machine reaches PyPI through a TLS-inspecting proxy whose CA lives in
    # /usr/local/share/ca-certificates (pip on the host uses it via PIP_CERT).
    pem = "".join(open(p).read() for p in sorted(glob.glob("/usr/local/share/ca-certificates/*.crt")))
    args = ["build", "-q", "-f", "deploy/Dockerfile", "--build-arg", f"BASE_IMAGE={BASE_TAG}", "-t", tag]
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        if os.environ.get(var, "").startswith("http"):
            args += ["--build-arg", f"{var}={os.environ[var]}"]
    if pem:
        args += ["--build-arg", f"PIP_EXTRA_CA_PEM={pem}"]
    proc = subprocess.run(["docker", *args, "."], capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield tag
    _docker("image", "rm", "-f", tag, check=False)


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
