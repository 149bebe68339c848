"""Pick a free /24 in 198.18.0.0/15 and its matching /64 in 2001:db8::/32 for a new lab."""
from __future__ import annotations

import ipaddress
import json
import random

from lab import shell, state
from lab.errors import LabError

V4_POOL = ipaddress.ip_network("198.18.0.0/15")
SUBNET_COUNT = 512  # /24s in the /15; index 0 (198.18.0.0/24) is left alone


def subnets(index: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    """The IPv4 /24 and IPv6 /64 of subnet number `index` (1..511)."""
    if not 1 <= index < SUBNET_COUNT:
        raise ValueError(f"lab subnet index must be 1..{SUBNET_COUNT - 1}, got {index}")
    v4 = ipaddress.IPv4Network((int(V4_POOL.network_address) + (index << 8), 24))
    v6 = ipaddress.IPv6Network(f"2001:db8:18:{index:x}::/64")
    return v4, v6


def host(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, number: int) -> str:
    """Address `number` of a subnet, e.g. .11 / ::11 (the same digits in both families)."""
    if subnet.version == 4:
        return str(subnet.network_address + number)
    return str(ipaddress.ip_address(f"{subnet.network_address}{number}"))


def docker_subnets() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every subnet some network of an installed engine already uses (Docker and Podman refuse overlaps)."""
    from lab.engine import installed

    out: list = []
    for eng in installed():
        ids = shell.run(eng.cmd("network", "ls", "-q"), check=False).stdout.split()
        if not ids:
            continue
        proc = shell.run(eng.cmd("network", "inspect", *ids), check=False)
        try:
            nets = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            nets = []
        for net in nets or []:
            # dockerd: IPAM.Config[].Subnet; Podman (netavark): subnets[].subnet
            cfgs = [c.get("Subnet", "") for c in (net.get("IPAM") or {}).get("Config") or []]
            cfgs += [c.get("subnet", "") for c in net.get("subnets") or []]
            for cfg in cfgs:
                try:
                    out.append(ipaddress.ip_network(cfg, strict=False))
                except ValueError:
                    continue
    return out


def pick_index(exclude: set[int] | None = None) -> int:
    """A subnet index whose /24 and /64 overlap no engine's network and no other lab's state file."""
    used = set(exclude or ())
    for rid in state.run_ids():
        st = state.read(rid)
        if st and isinstance(st.get("subnet_index"), int):
            used.add(st["subnet_index"])
    taken = docker_subnets()
    candidates = list(range(1, SUBNET_COUNT))
    random.shuffle(candidates)
    for index in candidates:
        if index in used:
            continue
        v4, v6 = subnets(index)
        if any(net.version == 4 and net.overlaps(v4) or net.version == 6 and net.overlaps(v6) for net in taken):
            continue
        return index
    raise LabError("no free /24 left in 198.18.0.0/15 for a lab (run `vobox-lab down --all`)")
