"""Batched network and service probes (ICMP, ICMPv6, ARP, NDP, TCP, HTTP, TLS): one `sweep()` costs about one timeout.

Sockets are created in the calling thread's network namespace (and the per-kind
threads started here inherit it), so wrap `sweep()` in `agent.netns.entered(name)`
to probe from inside a namespace.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

from probes import arp, http, icmp, icmp6, ndp, privileges, tcp, tls
from probes.exchange import Recorder
from probes.http import HttpSpec
from probes.privileges import PrivilegeError
from probes.tcp import TcpSpec
from probes.tls import TlsSpec
from probes.types import LAYERS, PROBE_KINDS, Layer, ProbeResult, Target

__all__ = ["LAYERS", "PROBE_KINDS", "Layer", "PROBES", "SERVICE_KINDS", "HttpSpec", "Probe", "PrivilegeError", "ProbeResult",
           "Recorder", "Target", "TcpSpec", "TlsSpec", "sweep", "validate"]


class Probe(Protocol):
    """What a probe kind provides (each probes/<kind>.py module is one, its constants read-only here)."""

    @property
    def NAME(self) -> str: ...
    @property
    def FAMILY(self) -> int | None: ...   # 4 or 6: the address family it applies to; None: both
    @property
    def NEEDS_RAW(self) -> bool: ...      # needs CAP_NET_RAW
    @property
    def LAYER(self) -> str: ...           # the layer a failure points at, one of LAYERS (tcp/http/tls: a failed
                                          # connect is l4, a failed dialogue after it l7; each result has its own)
    @property
    def SPEC(self) -> type[TcpSpec | HttpSpec | TlsSpec] | None: ...  # the spec a Target may carry (None: none)

    def sweep(self, targets: Sequence[Target], timeout_s: float, interface: str | None = None,
              recorder: Recorder | None = None) -> list[ProbeResult]:
        """Probe TARGETS (all of this kind, no duplicates) once each; results in input order."""
        ...


PROBES: dict[str, Probe] = {
    "icmp": icmp,
    "icmp6": icmp6,
    "arp": arp,
    "ndp": ndp,
    "tcp": tcp,
    "http": http,
    "tls": tls,
}
assert tuple(PROBES) == PROBE_KINDS
SERVICE_KINDS = tuple(k for k, p in PROBES.items() if p.SPEC is not None)  # those with a port and a spec


def validate(target: Target) -> None:
    """Raise ValueError naming what is wrong with TARGET (unknown kind, wrong family, bad port, bad spec field)."""
    probe = PROBES.get(target.probe)
    if probe is None:
        raise ValueError(f"unknown probe kind {target.probe!r}; valid kinds: {', '.join(PROBE_KINDS)}")
    try:
        address = ipaddress.ip_address(target.address)
    except ValueError:
        raise ValueError(f"{target.probe} target {target.address!r} is not an IPv4 or IPv6 address") from None
    if "%" in target.address:
        raise ValueError(f"{target.probe} target {target.address}: scoped (zone) addresses are not supported; "
                         "use a global address, and `interface` to pick the link")
    if probe.FAMILY is not None and address.version != probe.FAMILY:
        raise ValueError(f"{target.probe} probes IPv{probe.FAMILY} only, got {target.address}")
    if probe.SPEC is not None:
        if not isinstance(target.port, int) or isinstance(target.port, bool) or not 1 <= target.port <= 65535:
            raise ValueError(f"{target.probe} target {target.address}: port must be an integer 1-65535, "
                             f"got {target.port!r}")
    elif target.port is not None:
        raise ValueError(f"{target.probe} target {target.address}: port is for {', '.join(SERVICE_KINDS)} only, "
                         f"got {target.port!r}")
    if target.spec is not None:
        if probe.SPEC is None or type(target.spec) is not probe.SPEC:
            want = f"a {probe.SPEC.__name__} or None" if probe.SPEC else "none"
            raise ValueError(f"{target.probe} target {target.address}: spec must be {want}, "
                             f"got {type(target.spec).__name__}")
        try:
            target.spec.check()
        except ValueError as exc:
            raise ValueError(f"{target.probe} target {target.address}:{target.port}: {exc}") from None


def sweep(targets: Iterable[Target], timeout_s: float, interface: str | None = None,
          recorder: Recorder | None = None) -> list[ProbeResult]:
    """Probe every target once, all kinds concurrently; results in the order of TARGETS.

    A target that does not answer is a result with ok=False and an error, not an
    exception. Raises ValueError for malformed targets and PrivilegeError when a
    raw-socket kind is asked for without CAP_NET_RAW. `recorder(time_s, "out"|"in",
    probe, address, frame_bytes, linktype)` sees every request sent and every
    reply matching one (linktype 1 Ethernet, 101 raw IP); tcp, http and tls are not recorded.
    """
    targets = list(targets)
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    groups: dict[str, dict[Target, None]] = {}
    for target in targets:
        validate(target)
        groups.setdefault(target.probe, {})[target] = None  # de-duplicated, order kept
    if interface is not None:
        try:
            socket.if_nametoindex(interface)
        except OSError:
            raise ValueError(f"interface {interface!r} does not exist in this network namespace") from None
    if any(PROBES[kind].NEEDS_RAW for kind in groups):
        privileges.require_raw()

    found: dict[Target, ProbeResult] = {}
    failures: list[BaseException] = []

    def run(kind: str, unique: list[Target]) -> None:
        try:
            results = PROBES[kind].sweep(unique, timeout_s, interface, recorder)
            found.update(zip(unique, results, strict=True))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which re-raises it
            failures.append(exc)

    jobs = [(kind, list(unique)) for kind, unique in groups.items()]
    # Threads inherit the calling thread's network namespace (clone copies it), so
    # every kind probes from wherever the caller is.
    threads = [threading.Thread(target=run, args=job, name=f"probe-{job[0]}") for job in jobs[1:]]
    for t in threads:
        t.start()
    if jobs:
        run(*jobs[0])
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return [found[t] for t in targets]
