"""Raw-socket privilege check: a one-line PrivilegeError instead of a traceback."""
from __future__ import annotations

import socket

# Never a setcap on the system's interpreter (every local user would get the capability): the unit's
# AmbientCapabilities first, else a copy of the interpreter that only the agent's group may run (operator guide).
MESSAGE = ("raw sockets need CAP_NET_RAW: run as root or grant it (AmbientCapabilities=CAP_NET_RAW in the "
           "systemd unit; or `setcap cap_net_raw+ep` on a copy of the interpreter that only the agent's group may "
           "run, mode 0750 root:GROUP, never on the system's python3); tcp probes work without it")


class PrivilegeError(Exception):
    """The process may not open raw or packet sockets (no CAP_NET_RAW)."""

    def __init__(self, message: str = MESSAGE):
        super().__init__(message)


def raw_socket(family: int, kind: int, proto: int) -> socket.socket:
    """Open a raw (or packet) socket, turning EPERM/EACCES into PrivilegeError."""
    try:
        return socket.socket(family, kind, proto)
    except PermissionError:
        raise PrivilegeError() from None


def require_raw() -> None:
    """Raise PrivilegeError unless a raw ICMP socket can be opened here."""
    raw_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
