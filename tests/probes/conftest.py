"""Throwaway segments for probe tests: a monitor namespace (no route out) and a target namespace on one veth."""
from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PREFIX = "vbxp"
HERE = Path(__file__).resolve().parent
_counter = itertools.count()


def run(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a command, capturing text output."""
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


def segment_unavailable_reason() -> str | None:
    """Why throwaway namespaces cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "probe segment tests need root (network namespaces, raw sockets)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed (run scripts/setup)"
    return None


def cleanup_leftovers() -> None:
    """Remove namespaces of earlier test runs whose pytest process is gone."""
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        m = re.fullmatch(rf"{PREFIX}-[mt](\d+)-\d+", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            run("ip", "netns", "del", name, check=False)


@dataclass
class Segment:
    """monitor <-veth-> target; target holds ipv4/ipv6 host addresses and a TCP listener on `port`."""

    monitor: str
    target: str
    monitor_link: str
    target_link: str
    monitor_ipv4: str
    monitor_ipv6: str
    ipv4: list[str]
    ipv6: list[str]
    absent_ipv4: str
    absent_ipv6: str
    target_mac: str
    monitor_mac: str
    port: int
    closed_port: int
    listener: subprocess.Popen


def make_segment(hosts: int = 4, net4_third: int | None = None) -> Segment:
    """Create a segment with HOSTS addresses per family on the target (from 198.18.x.0/24, 2001:db8:x::/64)."""
    n = next(_counter)
    pid = os.getpid()
    third = net4_third if net4_third is not None else (pid + n * 7) % 200 + 20
    monitor, target = f"{PREFIX}-m{pid}-{n}", f"{PREFIX}-t{pid}-{n}"
    mlink, tlink = f"{PREFIX}m{pid % 100000}x{n}", f"{PREFIX}t{pid % 100000}x{n}"
    net4 = f"198.19.{third}"  # 198.18.0.0/15's upper half; the bench picks /21s from all of it
    net6 = str(ipaddress.IPv6Address(f"2001:db8:{third:x}:{n:x}::"))[:-1].rstrip(":") or "2001:db8"
    run("ip", "netns", "add", monitor)
    run("ip", "netns", "add", target)
    try:
        run("ip", "link", "add", mlink, "netns", monitor, "type", "veth", "peer", "name", tlink, "netns", target)
        ipv4 = [f"{net4}.{10 + i}" for i in range(hosts)]
        ipv6 = [str(ipaddress.IPv6Address(f"{net6}::{10 + i:x}")) for i in range(hosts)]
        tb = ["link set lo up", f"link set {tlink} up"]
        tb += [f"addr add {a}/24 dev {tlink}" for a in ipv4] + [f"addr add {a}/64 dev {tlink} nodad" for a in ipv6]
        run("ip", "-n", target, "-batch", "-", input="\n".join(tb) + "\n")
        run("ip", "-n", monitor, "-batch", "-", input=f"link set lo up\nlink set {mlink} up\n"
            f"addr add {net4}.1/24 dev {mlink}\naddr add {net6}::1/64 dev {mlink} nodad\n")
        port = 18000 + n
        listener = subprocess.Popen(["ip", "netns", "exec", target, sys.executable, str(HERE / "listener.py"),
                                     str(port)], stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
        def mac(ns: str, link: str) -> str:
            return run("ip", "-n", ns, "-br", "link", "show", link).stdout.split()[2]

        def v6(tail: object) -> str:
            return str(ipaddress.IPv6Address(f"{net6}::{tail}"))
        return Segment(monitor, target, mlink, tlink, f"{net4}.1", v6(1), ipv4, ipv6, f"{net4}.250", v6("fa"),
                       mac(target, tlink), mac(monitor, mlink), port, port + 1000, listener)
    except BaseException:
        run("ip", "netns", "del", monitor, check=False)
        run("ip", "netns", "del", target, check=False)
        raise


def remove_segment(seg: Segment) -> None:
    """Stop the listener and delete both namespaces (the veth goes with them)."""
    seg.listener.terminate()
    seg.listener.wait(5)
    run("ip", "netns", "del", seg.monitor, check=False)
    run("ip", "netns", "del", seg.target, check=False)


@pytest.fixture(scope="module")
def segment():
    """A module-wide throwaway segment with 4 IPv4 and 4 IPv6 target addresses."""
    reason = segment_unavailable_reason()
    if reason:
        pytest.skip(reason)
    cleanup_leftovers()
    seg = make_segment(4)
    try:
        yield seg
    finally:
        remove_segment(seg)
