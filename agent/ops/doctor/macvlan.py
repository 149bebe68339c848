"""Topic macvlan host trap: on the Docker host of macvlan boxes without a shim, the agent cannot reach them."""
from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.ops.doctor.boxes import container_boxes
from agent.ops.doctor.results import CheckResult, cfg_value, failed, passed, warned

SHIM_NAME = "vobox-shim"


@dataclass(frozen=True, slots=True)
class Route:
    """Where the kernel of this network namespace sends packets for an address."""

    dev: str | None          # None: no route (unreachable)
    kind: str | None         # link kind of dev: "macvlan", "veth", None for a plain device
    link: str | None         # dev's parent link (macvlan, vlan), if any


class IpToolMissing(Exception):
    """iproute2's `ip` is not installed, so routes cannot be inspected."""


def _ip_json(argv: list[str]) -> list[dict]:
    try:
        proc = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise IpToolMissing("`ip` (iproute2) not found") from None
    if proc.returncode != 0:
        return []
    return json.loads(proc.stdout or "[]")


def link_exists(name: str) -> bool:
    """True when a link NAME exists in this thread's network namespace (if_nametoindex)."""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def route_to(address: str) -> Route:
    """`ip route get ADDRESS` and the kind of the device it goes out of, in this network namespace."""
    routes = _ip_json(["route", "get", address])
    if not routes or not routes[0].get("dev"):
        return Route(None, None, None)
    dev = routes[0]["dev"]
    links = _ip_json(["-d", "link", "show", "dev", dev])
    info = links[0] if links else {}
    return Route(dev, (info.get("linkinfo") or {}).get("info_kind"), info.get("link"))


def _subnets(network_attrs: dict) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for cfg in (network_attrs.get("IPAM") or {}).get("Config") or []:
        if cfg.get("Subnet"):
            nets.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
    return nets


def free_address(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, used: Iterable[str]) -> str | None:
    """The highest host address of SUBNET not in USED (container, gateway and configured addresses)."""
    taken = {ipaddress.ip_address(a.split("/")[0]) for a in used if a}
    last = subnet.broadcast_address - (1 if subnet.version == 4 else 0)
    candidate = last
    for _ in range(4096):
        if candidate not in taken and candidate != subnet.network_address:
            return str(candidate)
        candidate -= 1
        if candidate not in subnet:
            return None
    return None


def shim_commands(parent: str, network_attrs: dict, boxes: Sequence[Any], shim: str = SHIM_NAME) -> list[str]:
    """The commands that give this host a macvlan shim on PARENT with a /32 (/128) route per box."""
    used = []
    for cfg in (network_attrs.get("IPAM") or {}).get("Config") or []:
        used.append(cfg.get("Gateway"))
    for ep in (network_attrs.get("Containers") or {}).values():
        used += [ep.get("IPv4Address"), ep.get("IPv6Address")]
    for box in boxes:
        used += [cfg_value(box, "ipv4"), cfg_value(box, "ipv6")]
    cmds = [f"ip link add {shim} link {parent} type macvlan mode bridge"]
    routes = []
    for subnet in _subnets(network_attrs):
        addr = free_address(subnet, [u for u in used if u]) or "<a free address in " + str(subnet) + ">"
        if subnet.version == 4:
            cmds.append(f"ip addr add {addr}/32 dev {shim}")
            routes += [f"ip route add {cfg_value(b, 'ipv4')}/32 dev {shim}" for b in boxes if cfg_value(b, "ipv4")]
        else:
            cmds.append(f"ip -6 addr add {addr}/128 dev {shim}")
            routes += [f"ip -6 route add {cfg_value(b, 'ipv6')}/128 dev {shim}" for b in boxes if cfg_value(b, "ipv6")]
    cmds.append(f"ip link set {shim} up")
    return cmds + routes


def check_macvlan_trap(boxes: Sequence[Any], networks: dict[str, dict],
                       exists: Callable[[str], bool] = link_exists,
                       route: Callable[[str], Route] = route_to) -> list[CheckResult]:
    """Is the agent on the Docker host of macvlan boxes (parent link here) without a shim to reach them?

    NETWORKS maps a network name to its `docker network inspect` attrs. The
    kernel never delivers packets from a macvlan parent to its own macvlan
    children, so the host must talk to them through a macvlan "shim" on the
    same parent (bridge mode) with a host route per container.
    """
    out = []
    by_network: dict[str, list[Any]] = {}
    for box in container_boxes(boxes):
        by_network.setdefault(cfg_value(box, "network"), []).append(box)
    for nname, nboxes in by_network.items():
        attrs = networks.get(nname)
        if not attrs or attrs.get("Driver") != "macvlan":
            continue
        parent = (attrs.get("Options") or {}).get("parent")
        name = f"macvlan host trap ({nname})"
        if not parent or not exists(parent):
            out.append(passed(name, f"parent link {parent!r} of {nname!r} is not in this network namespace: "
                                   "the agent is not on the macvlan network's own host side"))
            continue
        unreached = []
        try:
            for box in nboxes:
                for addr in (cfg_value(box, "ipv4"), cfg_value(box, "ipv6")):
                    if not addr:
                        continue
                    r = route(addr)
                    if not (r.kind == "macvlan" and r.link == parent):
                        unreached.append((cfg_value(box, "name"), addr, r.dev))
        except IpToolMissing as exc:
            out.append(warned(name, f"parent {parent} of {nname!r} is here (the agent is on its Docker host) but "
                                   f"routes cannot be checked: {exc}", "install iproute2 and run doctor again"))
            continue
        if not unreached:
            out.append(passed(name, f"on the Docker host of {nname!r} (parent {parent}), and every box "
                                   "address is routed through a macvlan shim on that parent"))
            continue
        lost = ", ".join(f"{b} {a} (via {d or 'no route'})" for b, a, d in unreached)
        cmds = shim_commands(parent, attrs, nboxes)
        out.append(failed(name, f"the agent runs on the Docker host of macvlan network {nname!r} (parent {parent} "
                               f"is here) and cannot reach its containers: {lost}",
                         "add a macvlan shim on the same parent (pick an address that is free on the LAN):\n"
                         + "\n".join("  " + c for c in cmds)
                         + "\n  (or run the agent on another host of the LAN, or in a container on "
                           f"{nname!r} itself)"))
    return out
