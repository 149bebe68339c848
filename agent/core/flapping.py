"""Flapping and loss per box: the percent state change over the last cycles (Nagios/Icinga) and the failed share.

Pure: `step(state, healthy, now_s, settings, freeze_open=..., stopped=...) -> (state, events)`;
no clock, no I/O. A freeze needs fail_cycles failing cycles in a row (agent.core.freeze), so a
box failing every other cycle, or two of three, never opens one; this module sees it.

Percent state change, as Icinga 2 computes it (lib/icinga/checkable-flapping.cpp; Nagios and
Naemon, "Detection and Handling of State Flapping", https://naemon.io/documentation/usersguide/flapping,
keep the last 21 check results the same way): over the last `window_cycles` cycles there are
window_cycles - 1 places where the verdict (healthy or not) can change. Each change counts with a
weight rising linearly from 0.8 (the oldest place) towards 1.2 (0.8 + 0.4 i / n for place
i = 0 .. n - 1 of n = window_cycles - 1: 0.8 + 0.02 i for Icinga's 20), so newer changes
count more; the percent is 100 x the weighted sum / n. A box alternating every cycle scores 99 %,
a steady one 0 %. (Nagios Core's code weighs 0.75 .. 1.25; Icinga's 0.8 .. 1.2 is used here.)

Hysteresis, as Nagios and Icinga: a box starts flapping when the percent rises above
high_threshold_percent and stops when it falls to low_threshold_percent or below (Icinga 2
defaults: 30 and 25); between the two it keeps what it was.

Failed share: failed cycles / window_cycles over the same window. Cycles not seen yet (a new
box, or after a freeze) count as healthy with no change, as Icinga's empty flapping buffer does.

Loss has the same hysteresis: a box becomes lossy when the failed share rises above
max_failed_share and stays so until it falls to max_failed_share x low/high threshold or below
(0.25 x 25/30 = 0.21 at the defaults: with 21 cycles, lossy from 6 failed, clear again at 4), so a
box at the edge does not switch on and off every cycle.

Degraded = flapping, or lossy. Never remediated for that alone
(the remediation listener does not read DegradedChanged). A freeze accounts for its own cycles:
while one is open the box is not degraded, and opening one empties the window (its failures
are counted by the freeze figures, not twice). A stopped box is not judged and its window is
emptied too. Only cycles count, not fast-confirmation passes (one entry per `box` point).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from agent.core.events import DegradedChanged, Event

# Icinga 2's weights: the oldest possible change counts 0.8, a change at the newest place 1.2.
WEIGHT_OLDEST = 0.8
WEIGHT_SPAN = 0.4


class FlapConfigView(Protocol):
    """What FlapSettings takes from the [flapping] section (agent.core.config.FlappingConfig fits)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def window_cycles(self) -> int: ...
    @property
    def low_threshold_percent(self) -> float: ...
    @property
    def high_threshold_percent(self) -> float: ...
    @property
    def max_failed_share(self) -> float: ...


@dataclass(frozen=True, slots=True)
class FlapSettings:
    """The [flapping] section (same fields as agent.core.config.FlappingConfig)."""

    enabled: bool = True
    window_cycles: int = 21
    low_threshold_percent: float = 25.0
    high_threshold_percent: float = 30.0
    max_failed_share: float = 0.25

    @classmethod
    def from_config(cls, section: FlapConfigView) -> FlapSettings:
        """From agent.core.config.FlappingConfig (or anything with these attributes)."""
        return cls(enabled=section.enabled, window_cycles=section.window_cycles,
                   low_threshold_percent=section.low_threshold_percent,
                   high_threshold_percent=section.high_threshold_percent,
                   max_failed_share=section.max_failed_share)


@dataclass(frozen=True, slots=True)
class FlapState:
    """One box's window and verdict between cycles (JSON-serialisable through to_json/from_json).

    history: the verdicts (True = healthy) of the last cycles, oldest first, at most window_cycles.
    """

    box: str
    history: tuple[bool, ...] = ()
    flapping: bool = False
    degraded: bool = False
    lossy: bool = False
    percent_state_change: float = 0.0
    failed_share: float = 0.0


def initial(box: str) -> FlapState:
    """A box never seen: an empty window, not flapping."""
    return FlapState(box)


def percent_state_change(history: tuple[bool, ...], window_cycles: int) -> float:
    """Weighted percent of verdict changes over the window (0 .. ~100); history oldest first, right-aligned."""
    places = window_cycles - 1
    if places <= 0:
        return 0.0
    recent = history[-window_cycles:]
    offset = places - (len(recent) - 1)   # missing older cycles: places without a change
    total = 0.0
    for j in range(1, len(recent)):
        if recent[j] != recent[j - 1]:
            i = offset + j - 1
            total += WEIGHT_OLDEST + WEIGHT_SPAN * i / places
    return 100.0 * total / places


def failed_share(history: tuple[bool, ...], window_cycles: int) -> float:
    """Failed cycles / window_cycles over the last window_cycles (cycles not seen count as healthy)."""
    return sum(1 for ok in history[-window_cycles:] if not ok) / window_cycles


def _reason(percent: float, share: float, flapping: bool, lossy: bool, s: FlapSettings) -> str:
    parts = []
    if flapping:
        parts.append(f"flapping: {percent:.0f} % state change over the last {s.window_cycles} cycles "
                     f"(starts above {s.high_threshold_percent:g} %, stops at {s.low_threshold_percent:g} % or below)")
    if lossy:
        parts.append(f"loss: {100 * share:.0f} % of the last {s.window_cycles} cycles failed "
                     f"(above {100 * s.max_failed_share:g} %)")
    return "; ".join(parts) or (f"{percent:.0f} % state change, {100 * share:.0f} % of the last "
                                f"{s.window_cycles} cycles failed")


def step(state: FlapState, healthy: bool, now_s: float, settings: FlapSettings, *, freeze_open: bool = False,
         stopped: bool = False, cycle: bool = True) -> tuple[FlapState, list[Event]]:
    """Advance one box by one judged cycle at now_s; DegradedChanged when degraded starts or ends.

    freeze_open: the freeze state after this cycle is frozen or recovering; stopped: not judged;
    cycle: False for a fast-confirmation pass (the window keeps one entry per cycle; only a
    freeze opening in the pass empties it).
    """
    if not settings.enabled:
        return state, []
    if freeze_open or stopped:
        s = FlapState(state.box)
        why = "stopped" if stopped else "frozen: the freeze counts these cycles"
    elif not cycle:
        return state, []
    else:
        history = (state.history + (healthy,))[-settings.window_cycles:]
        percent = percent_state_change(history, settings.window_cycles)
        share = failed_share(history, settings.window_cycles)
        if state.flapping:
            flapping = percent > settings.low_threshold_percent
        else:
            flapping = percent > settings.high_threshold_percent
        if state.lossy:
            clear = settings.max_failed_share * settings.low_threshold_percent / settings.high_threshold_percent
            lossy = share > clear
        else:
            lossy = share > settings.max_failed_share
        degraded = flapping or lossy
        s = FlapState(state.box, history, flapping, degraded, lossy, percent, share)
        why = _reason(percent, share, flapping, lossy, settings)
    if s.degraded == state.degraded:
        return s, []
    return s, [DegradedChanged(s.box, now_s, s.degraded, s.percent_state_change, s.failed_share, why)]


def to_json(states: dict[str, FlapState]) -> dict[str, Any]:
    """The per-box windows as JSON (for the pipeline's agent-state.json)."""
    return {name: {"history": [1 if ok else 0 for ok in st.history], "flapping": st.flapping,
                   "degraded": st.degraded, "lossy": st.lossy} for name, st in states.items()}


def from_json(data: Any, settings: FlapSettings) -> dict[str, FlapState]:
    """Inverse of to_json; ValueError for anything else. Percent and share are recomputed from the window."""
    if not isinstance(data, dict):
        raise ValueError("flapping state: expected an object")
    out = {}
    for name, raw in data.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("history"), list):
            raise ValueError(f"flapping state of box {name!r}: expected an object with a history list")
        history = tuple(bool(x) for x in raw["history"])[-settings.window_cycles:]
        out[name] = replace(FlapState(name, history, bool(raw.get("flapping")), bool(raw.get("degraded")),
                                      bool(raw.get("lossy"))),
                            percent_state_change=percent_state_change(history, settings.window_cycles),
                            failed_share=failed_share(history, settings.window_cycles))
    return out
