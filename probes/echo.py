"""ICMP and ICMPv6 echo sweeps over one raw socket each (shared by icmp.py and icmp6.py).

The identifier is random and unique among this process's running sweeps, and a
random 8-byte token in every payload makes a reply ours for certain, so two
agents on one host or two overlapping sweeps never take each other's replies.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

from probes import exchange, routing
from probes.matching import ICMP6_ECHO, ICMP_ECHO, EchoMatcher, Match, echo_request, echo_template, inet_checksum
from probes.privileges import raw_socket
from probes.routing import bind_to_device
from probes.types import ProbeResult, Target, result_from

LAYER = "l3"  # an unanswered echo points at l3 (icmp.py and icmp6.py declare the same)

log = logging.getLogger(__name__)

SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
# Packet rate and burst for unicast echo requests: 2000 targets leave in ~40 ms, in
# bursts small enough that a veth/macvlan receive backlog (netdev_max_backlog,
# 1000 per CPU) drains between them. Measured lossless on veth up to unpaced.
RATE_PPS = 50000.0
BURST = 100

_active_lock = threading.Lock()
_active_idents: set[int] = set()


def allocate_ident() -> int:
    """A random 16-bit ICMP identifier no running sweep of this process uses."""
    with _active_lock:
        while True:
            ident = random.SystemRandom().randrange(1, 0x10000)
            if ident not in _active_idents:
                _active_idents.add(ident)
                return ident


def release_ident(ident: int) -> None:
    """Give back an identifier taken by allocate_ident."""
    with _active_lock:
        _active_idents.discard(ident)


def warn_neighbour_limit(version: int, count: int) -> None:
    """Log when COUNT on-link targets could overflow the kernel's (global) neighbour table.

    With more unresolved neighbours than gc_thresh3 the kernel drops the echo
    requests it cannot resolve, which looks like loss. The limit is only visible
    from the initial network namespace; elsewhere nothing is checked.
    """
    path = f"/proc/sys/net/ipv{version}/neigh/default/gc_thresh3"
    try:
        with open(path) as f:
            limit = int(f.read())
    except (OSError, ValueError):
        return
    if count > limit * 0.9:
        log.warning("probe icmp%s: %d targets, but the neighbour table holds at most %d entries (%s); "
                    "on-link targets beyond it look lost: raise gc_thresh2/gc_thresh3",
                    "" if version == 4 else "6", count, limit, path)


def _open(version: int, interface: str | None) -> socket.socket:
    if version == 4:
        sock = raw_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        # Pass only echo reply, unreachable and time exceeded (bit set = filtered out).
        wanted = (1 << 0) | (1 << 3) | (1 << 11)
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~wanted & 0xFFFFFFFF))
    else:
        sock = raw_socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        blocked = [0xFFFFFFFF] * 8
        for typ in (1, 3, 129):
            blocked[typ >> 5] &= ~(1 << (typ & 31))
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *blocked))
    try:
        exchange.tune_socket(sock)
        if interface:
            bind_to_device(sock, interface)
    except (OSError, ValueError):
        sock.close()
        raise
    return sock


def _ip4_header(source: bytes, destination: bytes, payload_len: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0x4000, 64, 1, 0, source, destination)
    return header[:10] + struct.pack("!H", inet_checksum(header)) + header[12:]


def _ip6_frame(source: bytes, destination: bytes, message: bytes) -> bytes:
    pseudo = source + destination + struct.pack("!I3xB", len(message), 58)
    if message[2:4] == b"\0\0":  # requests: the kernel fills the checksum in, fill it in for the record too
        message = message[:2] + struct.pack("!H", inet_checksum(pseudo + message)) + message[4:]
    return struct.pack("!IHBB", 0x60000000, len(message), 58, 64) + source + destination + message


def sweep_echo(version: int, probe: str, targets: Sequence[Target], timeout_s: float,
               interface: str | None, recorder: exchange.Recorder | None) -> list[ProbeResult]:
    """Echo-probe TARGETS (all IPv4 or all IPv6) over one raw socket."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    addresses = [t.address for t in targets]
    packed = [socket.inet_pton(family, a) for a in addresses]
    warn_neighbour_limit(version, len(targets))
    ident = allocate_ident()
    token = os.urandom(8)
    padding = b"\0" * 16
    template = echo_template(ICMP_ECHO if version == 4 else ICMP6_ECHO, ident, token, padding)
    matcher = EchoMatcher(ident, token, packed)
    match: Callable[[bytes, Any], Match | None]
    requests: list[tuple[tuple[Any, ...], bytes]]  # (socket address, datagram)
    if version == 4:
        requests = [((a, 0), echo_request(template, i)) for i, a in enumerate(addresses)]

        def match(data: bytes, _addr: Any) -> Match | None:
            return matcher.match4(data)
    else:
        requests = [((a, 0, 0, 0), echo_request(template, i)) for i, a in enumerate(addresses)]
        inet_pton = socket.inet_pton

        def match(data: bytes, addr: Any) -> Match | None:  # addr: the socket's address tuple
            return matcher.match6(data, inet_pton(family, addr[0].split("%")[0]))

    frame_out = frame_in = None
    if recorder is not None:
        sources: dict[int, bytes] = {}

        def source_of(index: int) -> bytes:
            if index not in sources:
                try:
                    sources[index] = socket.inet_pton(family, routing.source_address(addresses[index], interface))
                except routing.RoutingError:
                    sources[index] = bytes(len(packed[index]))
            return sources[index]

        if version == 4:
            def frame_out(index: int, data: bytes) -> bytes:
                return _ip4_header(source_of(index), packed[index], len(data)) + data
        else:
            def frame_out(index: int, data: bytes) -> bytes:
                return _ip6_frame(source_of(index), packed[index], data)

            def frame_in(data: bytes, addr: tuple[Any, ...]) -> bytes:
                found = matcher.match6(data, socket.inet_pton(family, addr[0].split("%")[0]))
                source = socket.inet_pton(family, addr[0].split("%")[0])
                return _ip6_frame(source, source_of(found.index) if found else bytes(16), data)

    try:
        sock = _open(version, interface)
        try:
            outcomes = exchange.run(sock, requests, match, timeout_s, probe=probe, addresses=addresses,
                                    rate_pps=RATE_PPS, burst=BURST, recorder=recorder, linktype=101,
                                    frame_out=frame_out, frame_in=frame_in)
        finally:
            sock.close()
    finally:
        release_ident(ident)
    return [result_from(t, o, timeout_s, LAYER) for t, o in zip(targets, outcomes, strict=True)]
