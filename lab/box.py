"""One box of the lab (a container on the macvlan network, or a VM stand-in namespace); no dependencies."""
from __future__ import annotations

from dataclasses import dataclass

from agent.core.config import BOX_KINDS
from lab.errors import LabError

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

    def _need(self, value: str | int | None, what: str) -> str | int:
        if value is None:
            raise LabError(f"box {self.name} is a {self.kind}: it has no {what}")
        return value

    @property
    def container_name(self) -> str:
        """The Docker name of a container box; LabError for a VM."""
        return str(self._need(self.container, "container"))

    @property
    def container_network(self) -> str:
        """The macvlan network of a container box; LabError for a VM."""
        return str(self._need(self.network, "Docker network"))

    @property
    def container_tls_port(self) -> int:
        """The TLS service port of a container box; LabError when it has none."""
        return int(self._need(self.tls_port, "TLS port"))

    @property
    def vm_netns(self) -> str:
        """The namespace of a VM box; LabError for a container."""
        return str(self._need(self.netns, "namespace"))

    @property
    def vm_link(self) -> str:
        """The macvlan link of a VM box inside its namespace; LabError for a container."""
        return str(self._need(self.link, "VM link"))
