"""One probe cycle's pure parts: which probes a box gets, and what its results say.

A box is probed with icmp + arp on its IPv4 address, icmp6 + ndp on its IPv6
address, tcp on each service port and each [[box.probe]] (tcp, http, tls) over
every address it has; its in-container checks (agent.checks) join its results. It
is healthy in a cycle when every one of those answers. The layer of a failure is
the deepest one that failed: l2 (ARP/NDP unanswered), else l3 (neighbour answered,
echo did not), else l4 (echo answered, a TCP port did not), else l7 (the port
accepts, the service's dialogue or an in-container check fails). Each result names
its own layer when it failed (a tcp/http/tls probe: l4 for the connect, l7 after it).

A container box's Docker state joins its results as the pseudo probe `docker`
(with_container_state): a container that is not running, or whose HEALTHCHECK
says unhealthy, fails it at the layer CONTAINER_STATE_LAYERS gives; one stopped
on purpose by someone else (operator intent) is not judged at all.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from agent.core.events import deeper
from probes import LAYERS, PROBES, HttpSpec, Layer, ProbeResult, Target, TcpSpec, TlsSpec

# Per address family, the probe kinds every address of that family gets (those that take no
# port: ARP + ICMP for IPv4, NDP + ICMPv6 for IPv6), deepest layer first; each kind declares
# its family and layer in its own module (probes/<kind>.py).
ADDRESS_PROBES: dict[int, tuple[str, ...]] = {
    family: tuple(sorted((k for k, p in PROBES.items() if p.FAMILY == family), key=lambda k: LAYERS.index(PROBES[k].LAYER)))
    for family in (4, 6)
}


class ProbedBox(Protocol):
    """What a cycle needs to know of a configured box (read-only: agent.core.config.BoxConfig is frozen)."""

    @property
    def name(self) -> str: ...
    @property
    def ipv4(self) -> str | None: ...
    @property
    def ipv6(self) -> str | None: ...
    @property
    def tcp_ports(self) -> tuple[int, ...]: ...
    # and optionally `probes`: [[box.probe]] (ServiceProbeView)


class ServiceProbeView(Protocol):
    """What a cycle needs of one [[box.probe]] (agent.core.config.ServiceProbe fits)."""

    @property
    def kind(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def spec(self) -> TcpSpec | HttpSpec | TlsSpec | None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """One box's outcome in one cycle (stopped: not judged, its container was stopped on purpose)."""

    box: str
    healthy: bool
    layer: str  # none | l2 | l3 | l4 | l7
    results: tuple[ProbeResult, ...]
    time_s: float  # when the cycle's last probe of this box answered or timed out
    stopped: bool = False
    container: object = None   # the container's state (ContainerView) when known


# The pseudo probe of a container box's Docker state, and the layer each failing state gets.
# paused: l7 -- the cgroup freezer stops only the processes: the container's kernel still answers
#   ARP/NDP and ping and completes TCP handshakes into each listen backlog until it is full, so
#   the network answers and the service cannot; only the state shows it from the first cycle.
#   TCP failures once the backlogs are full are the pause too: the layer stays l7.
# restarting, exited, dead, created, removing, removed: l2 -- no process, no network namespace:
#   nothing answers ARP/NDP, as the probes see too.
# running but HEALTHCHECK unhealthy: l7 (the image's own check says its service is broken).
CONTAINER_PROBE = "docker"
CONTAINER_STATE_LAYERS: dict[str, str] = {"paused": Layer.L7, "restarting": Layer.L2, "exited": Layer.L2,
                                          "dead": Layer.L2, "created": Layer.L2, "removing": Layer.L2,
                                          "removed": Layer.L2}
UNHEALTHY_LAYER = Layer.L7


class ContainerView(Protocol):
    """What a cycle needs of a container's state (read-only: agent.engines.watcher.ContainerState fits)."""

    @property
    def state(self) -> str: ...
    @property
    def health(self) -> str | None: ...
    @property
    def oom_killed(self) -> bool: ...
    @property
    def operator_stopped(self) -> bool: ...
    @property
    def since_s(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class CyclePlan:
    """All targets of a cycle, and which slice of them belongs to which box."""

    targets: tuple[Target, ...]
    slices: tuple[tuple[str, int, int], ...]  # (box name, start, stop)


def address_targets(box: ProbedBox) -> list[Target]:
    """The address probes and tcp_ports connects of one box."""
    targets: list[Target] = []
    for family, address in ((4, box.ipv4), (6, box.ipv6)):
        if address:
            targets += [Target(address, kind) for kind in ADDRESS_PROBES[family]]
            targets += [Target(address, "tcp", port) for port in box.tcp_ports]
    return targets


def service_targets(box: ProbedBox, probe: ServiceProbeView) -> list[Target]:
    """One [[box.probe]] (kind, port, spec) on every address of the box."""
    return [Target(address, probe.kind, probe.port, probe.spec) for address in (box.ipv4, box.ipv6) if address]


def box_targets(box: ProbedBox) -> list[Target]:
    """The probes one box gets every cycle."""
    targets = address_targets(box)
    for probe in getattr(box, "probes", ()):
        targets += service_targets(box, probe)
    return targets


def plan_cycle(boxes: Iterable[ProbedBox]) -> CyclePlan:
    """Flatten every box's targets into one sweep, remembering the slices."""
    targets: list[Target] = []
    slices: list[tuple[str, int, int]] = []
    for box in boxes:
        start = len(targets)
        targets += box_targets(box)
        slices.append((box.name, start, len(targets)))
    return CyclePlan(tuple(targets), tuple(slices))


def classify(results: Sequence[ProbeResult]) -> tuple[bool, str]:
    """(healthy, layer) of one box's results: the deepest failing layer wins."""
    layer: str = Layer.NONE
    for result in results:
        if not result.ok:
            layer = deeper(layer, result.layer or PROBES[result.probe].LAYER)
    return layer == Layer.NONE, layer


def container_result(container: str, cs: ContainerView, time_s: float) -> ProbeResult:
    """The pseudo probe `docker` for one container: ok while running and not unhealthy, else failed at its layer."""
    if cs.state == "running" and cs.health != "unhealthy":
        return ProbeResult(container, CONTAINER_PROBE, None, True, None, None, None, time_s)
    if cs.state == "running":
        return ProbeResult(container, CONTAINER_PROBE, None, False, None, "health unhealthy", None, time_s,
                           layer=UNHEALTHY_LAYER)
    error = cs.state + (" (OOM-killed)" if cs.oom_killed else "")
    return ProbeResult(container, CONTAINER_PROBE, None, False, None, error, None, time_s,
                       layer=CONTAINER_STATE_LAYERS.get(cs.state, Layer.L2))


def with_container_state(v: Verdict, container: str, cs: ContainerView | None, restart_stopped: bool = False,
                         stopped_at_s: float | None = None) -> Verdict:
    """V joined with the container's state: its `docker` result added and judged; stopped on operator intent.

    restart_stopped: the box wants a container stopped by someone else judged (a failure,
    so remediated) instead of left alone. stopped_at_s: the last cycle (epoch s) that judged the
    box `stopped`, None when it was not: a container still down since then is still stopped on
    purpose, whatever its exit code (a service that exits 0 on SIGTERM; an agent restarted since).
    """
    if cs is None:
        return v
    # An exit the agent did not see happen (agent.engines.watcher: `in_gap`, e.g. an engine stopping its
    # containers) is read from the engine's history alone: an earlier `stopped` verdict does not stand for it.
    still_stopped = (stopped_at_s is not None and cs.state in ("exited", "created", "removed")
                     and (cs.since_s is None or cs.since_s <= stopped_at_s) and not getattr(cs, "in_gap", False))
    if (cs.operator_stopped or still_stopped) and not restart_stopped:
        return replace(v, healthy=True, layer=Layer.NONE, stopped=True, container=cs)
    results = v.results + (container_result(container, cs, v.time_s),)
    healthy, layer = classify(results)
    if cs.state == "paused":
        # Its TCP ports stop accepting once their listen backlogs are full: that is the pause (l7), not a
        # second failure, so a paused container's freeze keeps one layer however long it lasts. ARP/ping
        # failures at the same time are a network fault of their own and still count.
        layer = deeper(UNHEALTHY_LAYER, classify([r for r in results if not r.ok and _layer(r) != Layer.L4])[1])
    return replace(v, healthy=healthy, layer=layer, results=results, container=cs)


def _layer(result: ProbeResult) -> str:
    return result.layer or PROBES[result.probe].LAYER


def verdicts(plan: CyclePlan, results: Sequence[ProbeResult], fallback_time_s: float,
             extra: Mapping[str, Sequence[ProbeResult]] | None = None) -> list[Verdict]:
    """Split a sweep's results (in plan order) into one verdict per box; `extra` (box -> its check results) joins."""
    if len(results) != len(plan.targets):
        raise ValueError(f"sweep returned {len(results)} results for {len(plan.targets)} targets")
    out: list[Verdict] = []
    for name, start, stop in plan.slices:
        mine = tuple(results[start:stop]) + tuple((extra or {}).get(name, ()))
        healthy, layer = classify(mine)
        time_s = max((r.time_s for r in mine), default=fallback_time_s)
        out.append(Verdict(name, healthy, layer, mine, time_s))
    return out
