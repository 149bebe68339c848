"""Shared L2 sweep for ARP and NDP: per outgoing interface, one AF_PACKET socket bound to it.

Every in-time reply is kept: a result's `macs` lists each MAC that answered its request
(two or more: an address conflict), `mac` the first.

Frames carry the interface's own MAC and the source address the kernel would use
for the target, so replies come back to this host like any neighbour reply.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from probes import exchange, routing
from probes.exchange import Outcome, Recorder
from probes.matching import Match
from probes.privileges import raw_socket
from probes.types import ProbeResult, Target, result_from

LAYER = "l2"  # an unanswered ARP/NDP request points at l2 (arp.py and ndp.py declare the same)

log = logging.getLogger(__name__)

SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
# ARP/NDP requests are broadcast/multicast: every port on the segment gets a copy,
# and macvlan queues broadcasts (bc_queue_len, 1000 by default) before cloning
# them to each container, so these go out gentler than unicast echo: 2000 in ~0.1 s.
RATE_PPS = 20000.0
BURST = 50
# Once every request is answered, listen this much longer for a second answerer (an address conflict): both
# hosts get the same broadcast request at once and their kernels answer it in softirq, within ~1 ms of each
# other (lab, macvlan, loaded or not); 50 ms is fifty times that, and keeps a 500-address ARP sweep under 0.3x
# arp-scan's time (bench/bench_cli.py; 0.2 s made it 0.37x).
CONFLICT_LINGER_S = 0.05

# build(route, own_mac_bytes, own_address_bytes, index_by_address) -> Built:
# (frame_for(target_bytes), matcher(frame) -> Match | None)
Built = tuple[Callable[[bytes], bytes], Callable[[bytes], Match | None]]
Builder = Callable[[routing.Route, bytes, bytes, dict[bytes, int]], Built]


def _routes(targets: Sequence[Target], interface: str | None) -> list[routing.Route | str]:
    """Route per target, or an error string for targets that cannot be probed at L2."""
    version = ipaddress.ip_address(targets[0].address).version
    table = routing.route_table(version) if interface is None else []
    cache: dict[tuple[str, ...], routing.Route | str] = {}
    out: list[routing.Route | str] = []
    for target in targets:
        if interface is None:
            entry = routing.lookup(table, target.address)
            if entry is None:
                out.append("no route")
                continue
            if entry.gateway is not None:
                out.append(f"not on-link (routed via {entry.gateway} on {entry.interface})")
                continue
            key: tuple[str, ...] = (entry.interface, str(entry.network))
        else:
            key = (interface,)
        if key not in cache:
            try:
                route = routing.resolve(target.address, interface)
            except routing.RoutingError as exc:
                cache[key] = str(exc)
            else:
                cache[key] = route if route.mac else f"interface {route.interface} has no Ethernet MAC"
        out.append(cache[key])
    return out


def sweep_l2(probe: str, ethertype: int, family: int, build: Builder, targets: Sequence[Target],
             timeout_s: float, interface: str | None, recorder: Recorder | None) -> list[ProbeResult]:
    """Probe TARGETS at L2, one exchange per outgoing interface, interfaces concurrently."""
    if not targets:
        return []
    routes = _routes(targets, interface)
    outcomes: list[Outcome | None] = [None] * len(targets)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, route in enumerate(routes):
        if isinstance(route, str):
            outcomes[i] = Outcome(None, None, route, None)
        else:
            groups.setdefault((route.interface, route.source), []).append(i)

    socks = []
    try:
        for _ in groups:  # open all first, so a PrivilegeError surfaces before anything is sent
            socks.append(raw_socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype)))
        failures: list[BaseException] = []

        def one(sock: socket.socket, indexes: list[int]) -> None:
            try:
                route = routes[indexes[0]]
                assert isinstance(route, routing.Route) and route.mac is not None  # grouped: resolved, with a MAC
                sock.bind((route.interface, ethertype))
                try:
                    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                except OSError:
                    pass  # kernels before 4.20: outgoing copies are filtered below instead
                exchange.tune_socket(sock)
                own_mac = bytes.fromhex(route.mac.replace(":", ""))
                own_address = socket.inet_pton(family, route.source)
                packed = [socket.inet_pton(family, targets[i].address) for i in indexes]
                index_by_address: dict[bytes, int] = {}
                for n, p in enumerate(packed):
                    index_by_address.setdefault(p, n)
                frame_for, matcher = build(route, own_mac, own_address, index_by_address)
                requests = [(None, frame_for(p)) for p in packed]

                def match(frame: bytes, addr: tuple[Any, ...]) -> Match | None:  # AF_PACKET's address tuple
                    return None if addr[2] == PACKET_OUTGOING else matcher(frame)

                got = exchange.run(sock, requests, match, timeout_s, probe=probe,
                                   addresses=[targets[i].address for i in indexes],
                                   rate_pps=RATE_PPS, burst=BURST, recorder=recorder, linktype=1,
                                   linger_s=CONFLICT_LINGER_S)
                for i, outcome in zip(indexes, got, strict=True):
                    outcomes[i] = outcome
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which re-raises it
                failures.append(exc)

        jobs = list(zip(socks, groups.values(), strict=True))
        threads = [threading.Thread(target=one, args=job, name=f"probe-{probe}-{job[1][0]}") for job in jobs[1:]]
        for t in threads:
            t.start()
        if jobs:
            one(*jobs[0])
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
    finally:
        for s in socks:
            s.close()
    done = [o for o in outcomes if o is not None]
    if len(done) != len(targets):  # each target got a routing error or its exchange's outcome above
        raise RuntimeError(f"{probe}: {len(targets) - len(done)} of {len(targets)} targets have no outcome")
    return [result_from(t, o, timeout_s, LAYER) for t, o in zip(targets, done, strict=True)]
