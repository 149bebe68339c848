"""The probe data types: Target in, ProbeResult out (re-exported by `probes`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from probes.exchange import Outcome

PROBE_KINDS = ("icmp", "icmp6", "arp", "ndp", "tcp", "http", "tls")

# The layers a failure can point at, from the bottom of the stack up (the OSI names of
# RFC 1122's link, internet and transport layers, and the service on top): l2 (ARP/NDP
# unanswered), l3 (IP echo unanswered), l4 (a TCP port does not accept), l7 (the port
# accepts but the service's dialogue fails: no or a wrong answer, a bad HTTP status, a
# failed TLS handshake or certificate). A failure lower in the stack is deeper: it
# explains every failure above it.
class Layer(StrEnum):
    """A layer a failure points at, or NONE (healthy); the values are what is stored (`layer`) and shown."""

    NONE = "none"
    L2 = "l2"
    L3 = "l3"
    L4 = "l4"
    L7 = "l7"


LAYERS: tuple[str, ...] = tuple(layer.value for layer in Layer if layer is not Layer.NONE)


class ProbeSpec(Protocol):
    """A probe kind's options on a Target, defined in its own file (its SPEC: probes.tcp.TcpSpec,
    probes.http.HttpSpec, probes.tls.TlsSpec); probes.validate() checks the type matches the kind.

    A Protocol, so this module needs none of the kinds' modules, which all import it.
    """

    def check(self) -> None:
        """Raise ValueError naming the field that is wrong."""
        ...


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to probe: an IPv4/IPv6 literal, a probe kind, a port for tcp/http/tls, and the kind's spec.

    `spec` is the service dialogue of a tcp/http/tls target (frozen and hashable, so equal
    targets are probed once); None means the kind's default (tcp: connect only, http: GET /
    expecting 2xx, tls: handshake with verification against the system CAs).
    """

    address: str
    probe: str
    port: int | None = None
    spec: ProbeSpec | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of probing one Target; a target that is down is data, not an exception."""

    target: str
    probe: str
    port: int | None
    ok: bool
    rtt_ms: float | None    # when ok (tcp/http/tls: from connect to the verdict, dialogue included)
    error: str | None       # when not ok: "timeout", "refused", "unreachable", ...
    mac: str | None         # arp/ndp: answering MAC, lower-case aa:bb:..
    time_s: float           # wall clock (epoch s) when it answered or timed out
    layer: str | None = None            # when not ok: the layer the failure points at (one of LAYERS)
    status_code: int | None = None      # http: the response's status code, when one came
    cert_not_after_s: float | None = None  # tls/https: the peer certificate's notAfter (epoch s)
    cert_days_left: float | None = None    # tls/https: days from time_s to notAfter (negative: expired)
    warning: str | None = None          # ok but worth a look (tls: "certificate expires in 3.0 days (< 14)")
    macs: tuple[str, ...] = ()          # arp/ndp: every MAC that answered in time, `mac` first; two or more:
                                        # an address conflict (RFC 5227's, seen from outside)


SpecT = TypeVar("SpecT")


def service_port(target: Target) -> int:
    """The port of a tcp/http/tls TARGET (probes.validate checked it); TypeError when it has none."""
    if target.port is None:
        raise TypeError(f"{target.probe} target {target.address} has no port")
    return target.port


def spec_as(target: Target, spec_class: type[SpecT]) -> SpecT | None:
    """TARGET's spec, checked to be a SPEC_CLASS (probes.validate ensures it); None when it has none.

    Raises TypeError for a spec of another kind.
    """
    spec = target.spec
    if spec is not None and not isinstance(spec, spec_class):
        raise TypeError(f"{target.probe} target {target.address}: spec {type(spec).__name__} "
                        f"is not a {spec_class.__name__}")
    return spec


def result_from(target: Target, outcome: Outcome, timeout_s: float, layer: str) -> ProbeResult:
    """Turn an exchange Outcome into a ProbeResult; a failure points at LAYER."""
    ok = outcome.error is None
    if outcome.answered_s is not None:
        time_s = outcome.answered_s
    elif outcome.sent_s is not None:
        time_s = outcome.sent_s + timeout_s
    else:
        time_s = time.time()
    answered_s, sent_s = outcome.answered_s, outcome.sent_s
    rtt_ms = (answered_s - sent_s) * 1000.0 if ok and answered_s is not None and sent_s is not None else None
    if rtt_ms is not None and rtt_ms < 0:
        rtt_ms = 0.0  # kernel receive stamp and our send stamp straddle a clock step
    return ProbeResult(target.address, target.probe, target.port, ok, rtt_ms, outcome.error,
                       outcome.mac if ok else None, time_s, None if ok else layer,
                       macs=tuple(getattr(outcome, "macs", ())) if ok else ())
