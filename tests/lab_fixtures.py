"""Pytest fixtures exposing the lab, and plain-tool checks run from its monitor namespace.

Fixtures:
  lab_available  (session) None, or the reason the lab cannot run here
  lab            (session) a Lab with 2 containers + 1 VM + InfluxDB; leftovers cleaned first, down at the end
  clean_lab      (function) the same lab; after the test every fault is cleared (segment, InfluxDB too)
  podman_lab     (session) the same lab with its containers on rootful Podman (lab.engine)
  engine_lab     (session, parametrized over ENGINES: ids "docker", "podman") `lab`, then `podman_lab`
  engine_docker_host (function) engine_lab with DOCKER_HOST set to its engine (docker.from_env() follows)
  clean_engine_lab (function) engine_docker_host; after the test every fault is cleared

A test that takes engine_lab (or clean_engine_lab) runs once per engine; its podman run carries the mark
`podman` (tests/conftest.py), so `-m podman` runs the Podman subset alone. An agent started on such a lab
needs lab.agent_env() (DOCKER_HOST of the lab's engine); tests.agent.agent_proc.AgentProc adds it.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import struct
import subprocess
import time

import pytest

log = logging.getLogger(__name__)


ENGINES = ("docker", "podman")   # lab.engine.ENGINES (not imported here: collection stays import-light)


def lab_unavailable_reason(influx: bool = True, engine: str = "docker") -> str | None:
    """Why the lab cannot run on this machine with ENGINE's containers (None when it can)."""
    if os.geteuid() != 0:
        return "the lab needs root"
    if engine != "docker":
        from lab.engine import unavailable_reason

        tools = ["ip", "nft", "nsenter", "arping"] + (["influxd"] if influx else [])
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            return f"missing tools: {', '.join(missing)} (run scripts/setup)"
        return unavailable_reason(engine)
    tools = ["ip", "docker", "nft", "nsenter", "arping"] + (["influxd"] if influx else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (run scripts/setup)"
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if proc.returncode != 0:
        return f"no Docker engine answers: {proc.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="session")
def lab_available() -> str | None:
    """None when the lab can run here, else the reason it cannot."""
    return lab_unavailable_reason()


@pytest.fixture(scope="session")
def lab(lab_available):
    """A lab (containers ctr1, ctr2; VM vm1; InfluxDB) shared by the session; removed at the end."""
    if lab_available:
        pytest.skip(lab_available)
    from lab import Lab, cleanup_leftovers

    cleanup_leftovers()
    the_lab = Lab.create(containers=2, vms=1, influx=True)
    try:
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def clean_lab(lab):
    """The session lab; every fault (boxes, segment, InfluxDB) is undone after the test."""
    yield lab
    lab.clear_all(wait=True)


@pytest.fixture(scope="session")
def podman_lab():
    """The session lab's twin on rootful Podman (containers ctr1, ctr2; VM vm1; InfluxDB); removed at the end."""
    reason = lab_unavailable_reason(engine="podman")
    if reason:
        pytest.skip(reason)
    from lab import Lab, cleanup_leftovers

    cleanup_leftovers()
    the_lab = Lab.create(containers=2, vms=1, influx=True, engine="podman")
    try:
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture(scope="session", params=ENGINES)
def engine_lab(request):
    """The session lab of each engine in turn: `lab` (dockerd), then `podman_lab`."""
    return request.getfixturevalue("lab" if request.param == "docker" else f"{request.param}_lab")


@pytest.fixture
def engine_docker_host(engine_lab, monkeypatch):
    """engine_lab, with DOCKER_HOST pointing at its engine for the test: docker.from_env() and the agent's
    client factory (and an agent started from the test) talk to the lab's engine, dockerd or Podman."""
    monkeypatch.setenv("DOCKER_HOST", engine_lab.docker_host)
    return engine_lab


@pytest.fixture
def clean_engine_lab(engine_docker_host):
    """engine_lab (DOCKER_HOST set to its engine); every fault (boxes, segment, InfluxDB) is undone after."""
    yield engine_docker_host
    engine_docker_host.clear_all(wait=True)


# ----- plain-tool checks from the monitor namespace -------------------------------------------
def in_monitor(lab, *argv: str, timeout_s: float = 10.0) -> subprocess.CompletedProcess:
    """Run a command inside the lab's monitor namespace."""
    return subprocess.run(["ip", "netns", "exec", lab.monitor_ns, *argv], capture_output=True, text=True,
                          timeout=timeout_s)


def ping_ok(lab, address: str) -> bool:
    """One ICMP/ICMPv6 echo from the monitor namespace (iputils ping, 1 s deadline)."""
    return in_monitor(lab, "ping", "-n", "-c1", "-W1", address).returncode == 0


def arp_answers(lab, ipv4: str) -> bool:
    """One ARP who-has from the monitor link (iputils arping); True when answered."""
    return in_monitor(lab, "arping", "-c1", "-w1", "-I", lab.monitor_link, ipv4).returncode == 0


def tcp_ok(lab, address: str, port: int, timeout_s: float = 1.0) -> bool:
    """A TCP connect from the monitor namespace."""
    return lab.tcp_ok(address, port, timeout_s)


def _monitor_mac(lab) -> bytes:
    out = in_monitor(lab, "ip", "-br", "link", "show", lab.monitor_link).stdout.split()
    return bytes.fromhex(out[2].replace(":", ""))


def ndp_answer(lab, ipv6: str, timeout_s: float = 1.0) -> str | None:
    """Send one neighbour solicitation for ipv6 from the monitor link; the advertised MAC, or None."""
    from agent import netns

    target = socket.inet_pton(socket.AF_INET6, ipv6)
    group = socket.inet_ntop(socket.AF_INET6, bytes.fromhex("ff02" + "00" * 9 + "01ff") + target[13:])
    mac = _monitor_mac(lab)
    with netns.entered(lab.monitor_ns):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        ifindex = socket.if_nametoindex(lab.monitor_link)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        # type 135 NS, code 0, checksum (kernel), reserved; target; option 1 (source link-layer address)
        solicit = struct.pack("!BBHI", 135, 0, 0, 0) + target + bytes([1, 1]) + mac
        sock.sendto(solicit, (group, 0, 0, ifindex))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(2048)
            except TimeoutError:
                break
            if len(data) >= 24 and data[0] == 136 and data[8:24] == target:
                opts = data[24:]
                while len(opts) >= 8 and opts[1]:
                    if opts[0] == 2:  # target link-layer address
                        return ":".join(f"{b:02x}" for b in opts[2:8])
                    opts = opts[opts[1] * 8:]
                return "?"
        return None
    finally:
        sock.close()


def box_symptoms(lab, name: str) -> dict[str, bool]:
    """What the plain tools see of a box right now: arp, ndp, ping4, ping6, tcp4, tcp6 (all ports)."""
    b = lab.box(name)
    return {
        "arp": arp_answers(lab, b.ipv4),
        "ndp": ndp_answer(lab, b.ipv6) is not None,
        "ping4": ping_ok(lab, b.ipv4),
        "ping6": ping_ok(lab, b.ipv6),
        "tcp4": all(tcp_ok(lab, b.ipv4, p) for p in b.tcp_ports),
        "tcp6": all(tcp_ok(lab, b.ipv6, p) for p in b.tcp_ports),
    }


def lab_traces(run_id: str) -> list[str]:
    """Everything on the machine that still carries run_id: namespaces, links, containers, networks, processes,
    mounts (the CVMFS stand-in), files."""
    from lab import cleanup, names, state

    found = []
    for regex, kind, items in ((names.NETNS_RE, "netns", cleanup.list_netns()),
                               (names.LINK_RE, "link", cleanup.list_links()),
                               (names.CONTAINER_RE, "container", cleanup.list_containers()),
                               (names.NETWORK_RE, "network", cleanup.list_networks())):
        found += [f"{kind} {i}" for i in items if (m := regex.match(i)) and m.group(1) == run_id]
    found += [f"process {p}" for p in cleanup._pids_using_run_dir(run_id)]
    found += [f"mount {m}" for m in cleanup.mounts_under(state.run_dir(run_id))]
    for path in (state.state_path(run_id), state.run_dir(run_id)):
        if os.path.exists(path):
            found.append(f"file {path}")
    return found
