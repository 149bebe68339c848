"""Topic container engine: reachable, which engine (dockerd or Podman), version and API, and whether a MAC survives
reconnect_network and restart_container."""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.engines import Identity, identify
from agent.ops.doctor.results import CheckResult, failed, passed, warned

# Engine API version from which POST /networks/{id}/connect applies the MacAddress
# endpoint setting (Docker Engine API version history, v1.54); older engines
# ignore a MAC passed on connect (1.44-1.53 honour it on create only).
MAC_ON_CONNECT_API = (1, 54)


def _api_tuple(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    return int(major), int(minor or 0)


@dataclass(frozen=True, slots=True)
class DockerInfo:
    """What the Docker checks learned, for the checks that follow."""

    client: Any
    engine: str
    api: str
    identity: Identity | None = None


def check_docker(factory: Callable[[], Any]) -> tuple[CheckResult, DockerInfo | None]:
    """Is the engine reachable, and which engine (dockerd or Podman: agent.engines.identify), version and API?"""
    name = "docker engine"
    try:
        client = factory()
        version = client.version() or {}
    except Exception as exc:  # noqa: BLE001 - docker.errors.DockerException, requests errors: all mean unreachable
        from agent.storage.influx import transport_reason  # the reason in a few words, not urllib3's repr

        return failed(name, f"Docker engine not reachable: {transport_reason(exc)}; this disables the container boxes' state "
                           "(docker pseudo probe), the Docker evidence (docker_inspect, docker_events, "
                           "container_net), restart_container and reconnect_network, and in-container checks",
                     "start dockerd (or Podman's API: systemctl enable --now podman.socket), or mount the socket "
                     "(-v /var/run/docker.sock:/var/run/docker.sock), or set [engine] socket, or point DOCKER_HOST "
                     "at a socket proxy (tcp://HOST:2375) that allows containers, networks, events, version and "
                     "_ping"), None
    identity = identify(version)
    socket = getattr(client, "engine_socket", None)
    where = f" at {socket}" if socket is not None else ""
    return (passed(name, f"{identity.engine} {identity.version}, API {identity.api}{where}"),
            DockerInfo(client, identity.version, identity.api, identity))


def derived_mac(ipv4: str) -> str:
    """The MAC Docker 20.10 gives a macvlan endpoint: 02:42 followed by the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ipv4).packed)


def check_mac_on_connect(info: DockerInfo, observed: Sequence[tuple[str, str | None, str | None]] = ()) -> CheckResult:
    """Does the engine keep a container's MAC over reconnect_network? OBSERVED: (box, ipv4, mac) now."""
    name = "docker MAC on connect"
    traits = info.identity.traits if info.identity is not None else None
    if traits is not None and traits.mac_on_connect_min_api is None:
        restart = ("" if traits.restart_keeps_mac else
                   f"; a restart gives a new MAC on {traits.name}, which restart_container announces "
                   "(gratuitous ARP / unsolicited NA) and records as its own")
        return passed(name, f"{traits.name} applies a MAC address passed on network connect whatever API version "
                           f"it reports ({info.api}): reconnect_network reconnects with the same MAC and verifies "
                           f"it{restart}")
    api = _api_tuple(info.api)
    if api >= MAC_ON_CONNECT_API:
        return passed(name, f"API {info.api} >= 1.54 honours a MAC address on network connect: "
                           "reconnect_network reconnects with the same MAC")
    derived = [box for box, ipv4, mac in observed if mac and ipv4 and mac.lower() == derived_mac(ipv4)]
    random_ = [box for box, ipv4, mac in observed if mac and ipv4 and mac.lower() != derived_mac(ipv4)]
    base = f"API {info.api} < 1.54 ignores a MAC address passed on network connect"
    if random_:
        return warned(name, f"{base}, and the MAC of {', '.join(random_)} is not derived from its IPv4 "
                           "(a newer engine picks a random MAC): after reconnect_network the box has a new MAC; "
                           "the agent announces it (gratuitous ARP / unsolicited NA) but caches that ignore "
                           "those keep the old one until they expire",
                     "use an engine with API >= 1.54, or make sure the LAN's routers accept gratuitous ARP")
    if derived:
        return passed(name, f"{base}, but this engine derives the MAC from the IPv4 (02:42 + address, seen on "
                           f"{', '.join(derived)}): the MAC follows the IP, so reconnecting with the same IP "
                           "gives back the same MAC")
    return warned(name, f"{base}; no running box container to tell whether MACs follow the IP "
                       "(20.10: 02:42 + IPv4) or are random (newer engines)")
