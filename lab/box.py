"""One box of the lab (a container on the macvlan network, or a VM stand-in namespace); no dependencies."""
from __future__ import annotations

from dataclasses import dataclass

from agent.core.config import BOX_KINDS

__all__ = ["BOX_KINDS", "LabBox"]


@dataclass(frozen=True, slots=True)
class LabBox:
    """One VO-Box of the lab: a container on the macvlan network or a VM stand-in namespace."""

    name: str
    kind: str                    # "container" or "vm"
    ipv4: str
    ipv6: str
    mac: str
    tcp_ports: tuple[int, ...]
    container: str | None = None  # kind container: Docker name
    network: str | None = None    # kind container: the macvlan network
    netns: str | None = None      # kind vm: its namespace
    link: str | None = None       # kind vm: its macvlan inside netns
    tls_port: int | None = None   # kind container: its TLS service (certificate from set_tls_cert)
