"""Events emitted by the freeze state machine (agent.core.freeze); consumers: storage, remediation, correlation."""
from __future__ import annotations

from dataclasses import dataclass

STATES: tuple[str, ...] = ("up", "suspect", "frozen", "recovering")
LAYERS: tuple[str, ...] = ("none", "l2", "l3", "l4")
# How deep a failure is: l2 (ARP/NDP fail) is deeper than l3 (ping fails) deeper than l4 (a TCP port fails).
LAYER_DEPTH: dict[str, int] = {"none": 0, "l4": 1, "l3": 2, "l2": 3}


def deeper(a: str, b: str) -> str:
    """The deeper of two layers (l2 > l3 > l4 > none)."""
    return a if LAYER_DEPTH[a] >= LAYER_DEPTH[b] else b


@dataclass(frozen=True, slots=True)
class Event:
    """Base: something happened to `box` at cycle time `time_s` (epoch s)."""

    box: str
    time_s: float


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    """The box's state moved from `old` to `new` (up, suspect, frozen, recovering)."""

    old: str
    new: str
    layer: str


@dataclass(frozen=True, slots=True)
class FreezeOpened(Event):
    """The box became frozen at time_s; the freeze started at start_s (its first failing cycle).

    suspect_cycle_times: the earlier failing cycles of this freeze (start_s first, the
    detecting cycle excluded) whose `box` points were written with up=1 and must now be
    written again with up=0.
    """

    start_s: float
    layer: str
    suspect_cycle_times: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class FreezeLayerChanged(Event):
    """An open freeze got deeper (e.g. l4 -> l2)."""

    start_s: float
    old_layer: str
    new_layer: str


@dataclass(frozen=True, slots=True)
class FreezeClosed(Event):
    """The freeze that started at start_s ended at end_s (the first healthy cycle of the recovery).

    time_s is when the recovery was confirmed (recover_cycles healthy cycles later).
    """

    start_s: float
    end_s: float
    layer: str

    @property
    def duration_s(self) -> float:
        """end_s - start_s."""
        return self.end_s - self.start_s
