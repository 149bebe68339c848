"""Outgoing interface, source address and MAC for a destination, as seen by the calling thread's namespace.

Everything here reads /proc/thread-self/net/* or asks the kernel through a socket
created in the calling thread, so it is right inside `agent.netns.entered(name)`.
/sys/class/net and scapy's conf.route are not used: sysfs shows the namespace it
was mounted in, and conf.route is computed once, in the namespace at import time.
"""
from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass

PROC_NET = "/proc/thread-self/net"

RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
RTF_REJECT = 0x0200

SIOCGIFADDR = 0x8915
SIOCGIFHWADDR = 0x8927
ARPHRD_ETHER = 1


class RoutingError(Exception):
    """A destination has no usable route or interface in this namespace."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where packets to one destination leave: interface, its index and MAC, source address, gateway."""

    destination: str
    interface: str
    ifindex: int
    source: str
    gateway: str | None
    mac: str | None  # the interface's own MAC, None on interfaces without one (lo, tun)


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One row of the kernel's route table (main table for IPv4, all tables for IPv6)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: str | None
    interface: str
    metric: int


def parse_route4(text: str) -> list[RouteEntry]:
    """Parse /proc/net/route (IPv4 main table, little-endian hex)."""
    entries = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dest_hex, gw_hex, flags_hex, _ref, _use, metric, mask_hex = fields[:8]
        flags = int(flags_hex, 16)
        if not flags & RTF_UP or flags & RTF_REJECT:
            continue
        dest = socket.inet_ntoa(struct.pack("<I", int(dest_hex, 16)))
        mask = socket.inet_ntoa(struct.pack("<I", int(mask_hex, 16)))
        gateway = socket.inet_ntoa(struct.pack("<I", int(gw_hex, 16))) if flags & RTF_GATEWAY else None
        network = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        entries.append(RouteEntry(network, gateway, iface, int(metric)))
    return entries


def parse_route6(text: str) -> list[RouteEntry]:
    """Parse /proc/net/ipv6_route (every table, hex), dropping reject routes."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        dest_hex, plen_hex, _src, _splen, nh_hex, metric_hex, _ref, _use, flags_hex, iface = fields[:10]
        flags = int(flags_hex, 16)
        if not flags & RTF_UP or flags & RTF_REJECT or iface == "lo":
            continue
        dest = ipaddress.IPv6Address(bytes.fromhex(dest_hex))
        network = ipaddress.IPv6Network(f"{dest}/{int(plen_hex, 16)}", strict=False)
        gateway = str(ipaddress.IPv6Address(bytes.fromhex(nh_hex))) if flags & RTF_GATEWAY else None
        entries.append(RouteEntry(network, gateway, iface, int(metric_hex, 16)))
    return entries


def lookup(entries: list[RouteEntry], address: str) -> RouteEntry | None:
    """Longest-prefix match (then lowest metric) of ADDRESS in ENTRIES."""
    addr = ipaddress.ip_address(address)
    best: RouteEntry | None = None
    for entry in entries:
        if entry.network.version != addr.version or addr not in entry.network:
            continue
        if (best is None or entry.network.prefixlen > best.network.prefixlen
                or (entry.network.prefixlen == best.network.prefixlen and entry.metric < best.metric)):
            best = entry
    return best


def route_table(version: int) -> list[RouteEntry]:
    """The calling thread's IPv4 or IPv6 route table."""
    name = "route" if version == 4 else "ipv6_route"
    with open(f"{PROC_NET}/{name}") as f:
        text = f.read()
    return parse_route4(text) if version == 4 else parse_route6(text)


def source_address(address: str, interface: str | None = None) -> str:
    """Source address the kernel would pick for ADDRESS (UDP connect; nothing is sent)."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        if interface:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        try:
            s.connect((address, 9))
        except OSError as exc:
            raise RoutingError(f"no route to {address}"
                               + (f" on interface {interface}" if interface else "") + f": {exc.strerror}") from None
        source: str = s.getsockname()[0]  # (host, port[, flow, scope]) of an AF_INET/AF_INET6 socket
        return source


def bind_to_device(sock: socket.socket, interface: str) -> None:
    """SO_BINDTODEVICE; ValueError naming the interface when it does not exist here."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    except OSError as exc:
        if exc.errno == 19:  # ENODEV
            raise ValueError(f"interface {interface!r} does not exist in this network namespace") from None
        raise


def _ifreq(interface: str, request: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            return fcntl.ioctl(s.fileno(), request, struct.pack("16s16x", interface.encode()[:15]))
        except OSError as exc:
            raise RoutingError(f"interface {interface}: {exc.strerror}") from None


def interface_mac(interface: str) -> str | None:
    """The interface's own MAC (lower-case aa:bb:..), None if it is not Ethernet-like."""
    data = _ifreq(interface, SIOCGIFHWADDR)
    family = struct.unpack_from("H", data, 16)[0]
    if family != ARPHRD_ETHER:
        return None
    return format_mac(data[18:24])


def interface_ipv4(interface: str) -> str:
    """The primary IPv4 address of INTERFACE."""
    data = _ifreq(interface, SIOCGIFADDR)
    return socket.inet_ntoa(data[20:24])


def interface_ipv6(interface: str) -> list[str]:
    """IPv6 addresses of INTERFACE from /proc/thread-self/net/if_inet6, global ones first."""
    found: list[tuple[int, str]] = []
    with open(f"{PROC_NET}/if_inet6") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == interface:
                addr = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
                found.append((1 if addr.is_link_local else 0, str(addr)))
    return [a for _, a in sorted(found)]


def format_mac(raw: bytes) -> str:
    """Six bytes as lower-case aa:bb:cc:dd:ee:ff."""
    return ":".join(f"{b:02x}" for b in raw)


def resolve(address: str, interface: str | None = None) -> Route:
    """Interface, source address and gateway for ADDRESS in the calling thread's namespace."""
    addr = ipaddress.ip_address(address)
    gateway = None
    if interface is None:
        entry = lookup(route_table(addr.version), address)
        if entry is None:
            raise RoutingError(f"no route to {address}")
        interface, gateway = entry.interface, entry.gateway
    try:
        ifindex = socket.if_nametoindex(interface)
    except OSError:
        raise RoutingError(f"interface {interface!r} does not exist in this network namespace") from None
    try:
        source = source_address(address, interface)
    except RoutingError:
        # Nothing routes ADDRESS out of INTERFACE; an L2 probe still may: use the interface's own address.
        if addr.version == 4:
            source = interface_ipv4(interface)
        else:
            own = interface_ipv6(interface)
            if not own:
                raise RoutingError(f"interface {interface} has no IPv6 address") from None
            source = own[0]
    return Route(address, interface, ifindex, source, gateway, interface_mac(interface))
