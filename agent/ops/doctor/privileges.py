"""Topic privileges: can this process open the raw sockets the ICMP and ARP probes need."""
from __future__ import annotations

import socket
from collections.abc import Callable

from agent.ops.doctor.results import CheckResult, failed, passed

SETCAP_FIX = ("run as root, or grant the capability: "
              "`setcap cap_net_raw,cap_net_admin+ep $(readlink -f $(which python3))` "
              "(or, under systemd, AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN; "
              "in a container, --cap-add NET_RAW --cap-add NET_ADMIN)")


def check_raw_socket(open_socket: Callable[..., socket.socket] = socket.socket) -> CheckResult:
    """Can this process open the raw sockets the ICMP and ARP probes need (CAP_NET_RAW)?"""
    name = "raw-socket privilege"
    tried = []
    for family, kind, proto, what in (
        (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, "raw ICMP"),
        (socket.AF_PACKET, socket.SOCK_RAW, 0x0806, "packet (ARP)"),
    ):
        try:
            open_socket(family, kind, proto).close()
        except PermissionError as exc:
            return failed(name, f"cannot open a {what} socket: {exc}", SETCAP_FIX)
        except OSError as exc:
            return failed(name, f"cannot open a {what} socket: {exc}",
                         "the kernel refused a raw socket for a reason other than privilege; see the error")
        tried.append(what)
    return passed(name, f"{' and '.join(tried)} sockets open")
