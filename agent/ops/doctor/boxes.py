"""Topic boxes: each container box's container and network exist, the network is macvlan, the addresses match."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from agent.ops.doctor.results import CheckResult, cfg_value, failed, passed, warned


def container_boxes(boxes: Iterable[Any]) -> list[Any]:
    """The boxes of kind container."""
    return [b for b in boxes if cfg_value(b, "kind") == "container"]


def check_box(box: Any, client: Any) -> tuple[list[CheckResult], dict | None, dict | None]:
    """A container box: its container and network exist, network is macvlan, attached with the configured addresses."""
    import docker.errors

    bname = cfg_value(box, "name")
    cname = cfg_value(box, "container")
    nname = cfg_value(box, "network")
    ipv4, ipv6 = cfg_value(box, "ipv4"), cfg_value(box, "ipv6")
    name = f"box {bname}"
    out: list[CheckResult] = []
    try:
        container = client.containers.get(cname)
    except docker.errors.NotFound:
        return [failed(f"{name}: container", f"container {cname!r} not found",
                      f"check box {bname!r} container = {cname!r} against `docker ps -a`")], None, None
    except docker.errors.DockerException as exc:
        return [failed(f"{name}: container", f"inspecting container {cname!r}: {exc}")], None, None
    state = container.attrs.get("State", {}).get("Status", "?")
    if state == "running":
        out.append(passed(f"{name}: container", f"container {cname!r} is running"))
    else:
        out.append(warned(f"{name}: container", f"container {cname!r} is {state}",
                         f"`docker start {cname}` (or `docker unpause {cname}`) if that is not intended"))
    try:
        network = client.networks.get(nname)
    except docker.errors.NotFound:
        out.append(failed(f"{name}: network", f"network {nname!r} not found",
                         f"check box {bname!r} network = {nname!r} against `docker network ls`"))
        return out, container.attrs, None
    except docker.errors.DockerException as exc:
        out.append(failed(f"{name}: network", f"inspecting network {nname!r}: {exc}"))
        return out, container.attrs, None
    driver = network.attrs.get("Driver")
    if driver != "macvlan":
        out.append(warned(f"{name}: network", f"network {nname!r} uses driver {driver!r}, not macvlan",
                         "VO-Boxes normally sit on a macvlan network so they have their own IP and MAC on the LAN"))
    else:
        parent = (network.attrs.get("Options") or {}).get("parent", "?")
        out.append(passed(f"{name}: network", f"network {nname!r} is macvlan on parent {parent}"))
    endpoint = (container.attrs.get("NetworkSettings", {}).get("Networks") or {}).get(network.name)
    if endpoint is None:
        endpoint = next((ep for ep in (container.attrs.get("NetworkSettings", {}).get("Networks") or {}).values()
                         if ep.get("NetworkID") == network.id), None)
    connect = f"docker network connect {nname} {cname}" + (f" --ip {ipv4}" if ipv4 else "") + \
              (f" --ip6 {ipv6}" if ipv6 else "")
    if endpoint is None:
        out.append(failed(f"{name}: attached", f"container {cname!r} is not attached to network {nname!r}",
                         f"`{connect}`"))
        return out, container.attrs, network.attrs
    have4, have6 = endpoint.get("IPAddress") or None, endpoint.get("GlobalIPv6Address") or None
    held = ""
    if state not in ("running", "paused") and not (have4 or have6):
        # Not running: no live addresses; what it gets at start is its static --ip/--ip6 (IPAMConfig).
        ipam = endpoint.get("IPAMConfig") or {}
        have4, have6 = ipam.get("IPv4Address") or None, ipam.get("IPv6Address") or None
        if not (have4 or have6):
            out.append(warned(f"{name}: attached", f"container {cname!r} is {state}: on {nname!r}, but its addresses "
                                                   "cannot be checked until it runs (no static --ip/--ip6)",
                              f"`docker start {cname}`, then `doctor` again"))
            return out, container.attrs, network.attrs
        held = f" (static, container {state})"
    wrong = []
    if ipv4 and have4 != ipv4:
        wrong.append(f"IPv4 {have4 or 'none'} (configured {ipv4})")
    if ipv6 and (have6 is None or ipaddress.ip_address(have6) != ipaddress.ip_address(ipv6)):
        wrong.append(f"IPv6 {have6 or 'none'} (configured {ipv6})")
    if wrong:
        out.append(failed(f"{name}: attached", f"container {cname!r} on {nname!r} has " + ", ".join(wrong),
                         f"fix the config, or `docker network disconnect {nname} {cname}` then `{connect}`"))
    else:
        addrs = ", ".join(a for a in (have4, have6) if a)
        out.append(passed(f"{name}: attached", f"container {cname!r} on {nname!r} with {addrs}{held}, "
                                              f"MAC {endpoint.get('MacAddress') or '?'}"))
    return out, container.attrs, network.attrs
