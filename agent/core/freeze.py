"""Pure per-box freeze state machine over probe cycles: up -> suspect -> frozen -> recovering -> up.

`step(state, verdict, now_s, thresholds) -> (state, events)`; no clock, no I/O
(except save_state/load_state, which the runner calls once per cycle).

Transitions (F = fail_cycles, R = recover_cycles):
  up         --fail-->    suspect (frozen at once when F == 1)
  suspect    --healthy--> up (no freeze; nothing is rewritten)
  suspect    --fail-->    frozen once F failing cycles in a row: FreezeOpened
  frozen     --fail-->    frozen (FreezeLayerChanged when the layer gets deeper)
  frozen     --healthy--> recovering (up at once when R == 1: FreezeClosed)
  recovering --healthy--> up once R healthy cycles in a row: FreezeClosed
  recovering --fail-->    frozen: the SAME freeze continues
  any        --stopped--> stopped: not judged (its container was stopped by someone else); a suspect
                          run is dropped, an open freeze closes (FreezeClosed) at this cycle, or at
                          the first healthy cycle of a recovery in progress
  suspect    --alert-->   frozen (open_by_alert: an alert is a second witness; same start and layer)
  stopped    --stopped--> stopped;  --healthy--> up;  --fail--> suspect (a new run: frozen at once when F == 1)
  any        --maintenance--> maintenance: as stopped (probed and stored, not judged): a suspect run is
                          dropped, an open freeze closes at this cycle (the incident ends, as in Uptime
                          Kuma, Gatus and Icinga downtimes); out of it like stopped (a fault that persists
                          opens a new freeze after F failing cycles)

Flap damping: a box must fail F cycles in a row to open a freeze and be healthy
R cycles in a row to close it; a failing cycle while recovering does not close
the freeze and open a new one, it continues the open freeze (its healthy
cycles in between count as frozen). So a box flapping faster than R cycles
gives one long freeze, not a storm of FreezeOpened/FreezeClosed, and one
flapping by less than F cycles gives none. StateChanged is emitted on every
transition (cheap, for logs and the status view).

A freeze starts at its first failing cycle (not at detection) and ends at the
first healthy cycle of the recovery that brings the box up (not at
confirmation); its layer is the deepest seen (l2 > l3 > l4) from the first
failing cycle on.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Protocol

from agent import atomic
from agent.core.events import (
    LAYERS,
    STATES,
    Event,
    FreezeClosed,
    FreezeLayerChanged,
    FreezeOpened,
    State,
    StateChanged,
    deeper,
)
from probes import Layer

log = logging.getLogger(__name__)

STATE_FILE_VERSION = 1


class Thresholds(Protocol):
    """Anything with fail_cycles and recover_cycles (read-only: the frozen agent.core.config.FreezeConfig fits)."""

    @property
    def fail_cycles(self) -> int: ...
    @property
    def recover_cycles(self) -> int: ...


@dataclass(frozen=True, slots=True)
class FreezeThresholds:
    """Plain thresholds, for tests and callers without a Config."""

    fail_cycles: int = 3
    recover_cycles: int = 2


@dataclass(frozen=True, slots=True)
class Verdict:
    """One box's cycle result: healthy, else the failing layer (l2: ARP/NDP, l3: ICMP, l4: TCP, l7: service).

    stopped: not judged at all (operator intent: its container was stopped on purpose); healthy
    and layer are then ignored. maintenance: in a maintenance window (agent.core.maintenance):
    not judged either (it wins over stopped).
    """

    healthy: bool
    layer: str = Layer.NONE
    stopped: bool = False
    maintenance: bool = False

    def __post_init__(self) -> None:
        if self.stopped or self.maintenance:
            return
        if self.layer not in LAYERS:
            raise ValueError(f"verdict layer must be one of {', '.join(LAYERS)}, got {self.layer!r}")
        if not self.healthy and self.layer == Layer.NONE:
            raise ValueError(f"a failing verdict needs a layer ({', '.join(LAYERS[1:])})")


@dataclass(frozen=True, slots=True)
class BoxState:
    """A box's freeze state between cycles (JSON-serialisable)."""

    box: str
    state: str = State.UP
    fail_times: tuple[float, ...] = ()       # failing cycles of the current run while suspect
    layer: str = Layer.NONE                  # deepest layer of the current suspect run / open freeze
    freeze_start_s: float | None = None      # set while a freeze is open (frozen or recovering)
    recovery_times: tuple[float, ...] = ()   # healthy cycles of the current recovery
    last_time_s: float | None = None
    # the open freeze's layer at detection (FreezeOpened's layer, never changed within the freeze); "" when no
    # freeze is open, or for a freeze opened before the agent kept it (its points then carry no detected_layer tag)
    detected_layer: str = ""

    @property
    def freeze_open(self) -> bool:
        """True while frozen or recovering."""
        return self.freeze_start_s is not None


def initial(box: str) -> BoxState:
    """The state of a box never seen before: up."""
    return BoxState(box=box)


def _open_start(s: BoxState) -> float:
    """The open freeze's start: set with every frozen/recovering state (step and open_by_alert set them together)."""
    if s.freeze_start_s is None:
        raise ValueError(f"box {s.box!r} is {s.state} with no freeze_start_s")
    return s.freeze_start_s


def step(state: BoxState, verdict: Verdict, now_s: float,
         thresholds: Thresholds) -> tuple[BoxState, list[Event]]:
    """Advance one box by one cycle at cycle time now_s; return the new state and its events."""
    box, old = state.box, state.state
    events: list[Event] = []
    fail_n, rec_n = thresholds.fail_cycles, thresholds.recover_cycles
    s = replace(state, last_time_s=now_s)

    if verdict.stopped or verdict.maintenance:
        if s.freeze_start_s is not None:   # a freeze is open (BoxState.freeze_open)
            # The operator took the box over: the freeze ends here (or at the first healthy cycle of a
            # recovery in progress, which it was); the stop is not part of it.
            end_s = s.recovery_times[0] if old == State.RECOVERING and s.recovery_times else now_s
            events.append(FreezeClosed(box, now_s, s.freeze_start_s, end_s, s.layer, s.detected_layer))
        s = replace(s, state=State.MAINTENANCE if verdict.maintenance else State.STOPPED, fail_times=(),
                    layer=Layer.NONE, freeze_start_s=None, recovery_times=(), detected_layer="")
    elif verdict.healthy:
        if old in (State.SUSPECT, State.STOPPED, State.MAINTENANCE):
            s = replace(s, state=State.UP, fail_times=(), layer=Layer.NONE)
        elif old == State.FROZEN or old == State.RECOVERING:
            rec = (s.recovery_times if old == State.RECOVERING else ()) + (now_s,)
            if len(rec) >= rec_n:
                events.append(FreezeClosed(box, now_s, _open_start(s), rec[0], s.layer, s.detected_layer))
                s = replace(s, state=State.UP, fail_times=(), layer=Layer.NONE, freeze_start_s=None, recovery_times=(),
                            detected_layer="")
            else:
                s = replace(s, state=State.RECOVERING, recovery_times=rec)
    else:
        if old in (State.UP, State.SUSPECT, State.STOPPED, State.MAINTENANCE):
            fails = (s.fail_times if old == State.SUSPECT else ()) + (now_s,)
            layer = deeper(s.layer, verdict.layer) if old == State.SUSPECT else verdict.layer
            if len(fails) >= fail_n:
                events.append(FreezeOpened(box, now_s, fails[0], layer, fails[:-1]))
                s = replace(s, state=State.FROZEN, fail_times=(), layer=layer, freeze_start_s=fails[0],
                            recovery_times=(), detected_layer=layer)
            else:
                s = replace(s, state=State.SUSPECT, fail_times=fails, layer=layer)
        else:  # frozen or recovering: the same freeze goes on
            layer = deeper(s.layer, verdict.layer)
            if layer != s.layer:
                events.append(FreezeLayerChanged(box, now_s, _open_start(s), s.layer, layer, s.detected_layer))
            s = replace(s, state=State.FROZEN, layer=layer, recovery_times=())

    if s.state != old:
        events.insert(0, StateChanged(box, now_s, old, s.state, s.layer if s.state != State.UP else verdict.layer))
    return s, events


def open_by_alert(state: BoxState, now_s: float) -> tuple[BoxState, list[Event]]:
    """An alert about a suspect box is a second witness: its freeze opens now, as if confirmed.

    The freeze starts at the suspect run's first failing cycle and takes the run's layer (the
    deepest its failing cycles showed), so the report counts the whole outage; FreezeOpened has
    opened_by "alert" and every cycle of the run in suspect_cycle_times (written up=1, to be
    rewritten up=0). Any other state is returned unchanged with no events (issue 26: only a box
    the agent itself sees failing is confirmed by an alert).
    """
    if state.state != State.SUSPECT or not state.fail_times:
        return state, []
    start_s = state.fail_times[0]
    after = replace(state, state=State.FROZEN, fail_times=(), freeze_start_s=start_s, recovery_times=(),
                    detected_layer=state.layer)
    return after, [StateChanged(state.box, now_s, State.SUSPECT, State.FROZEN, state.layer),
                   FreezeOpened(state.box, now_s, start_s, state.layer, state.fail_times, opened_by="alert")]


@dataclass(frozen=True, slots=True)
class UpDecision:
    """What to write for a box this cycle: `up` for the cycle, and earlier cycles to write again with up=0."""

    up: int | None      # None: not observed (stopped on purpose): the `box` point has no `up`
    rewrite_down_times: tuple[float, ...] = field(default=())


def up_decision(before: BoxState, after: BoxState) -> UpDecision:
    """The `box` point's up for this cycle (step went before -> after) and the earlier cycles to set to up=0.

    up is 0 exactly from a freeze's first failing cycle to the cycle before its first
    healthy one. Cycles are written tentatively (suspect: 1, recovering: 1) and fixed
    when the outcome is known: a freeze opening rewrites its suspect cycles to 0; a
    recovery that fails back to frozen rewrites its healthy cycles to 0 (they belong to
    the freeze, which continues). A stopped box, or one in maintenance, is not observed: up is None
    (mean(up), availability, leaves the cycle out).
    """
    if after.state in (State.STOPPED, State.MAINTENANCE):
        return UpDecision(None)
    if after.state == State.FROZEN:
        if before.state in (State.UP, State.SUSPECT):
            return UpDecision(0, before.fail_times if before.state == State.SUSPECT else ())
        if before.state == State.RECOVERING:
            return UpDecision(0, before.recovery_times)
        return UpDecision(0)
    return UpDecision(1)


# --- persistence (survives kill -9: atomic rename + fsync) ---

def to_json(states: dict[str, BoxState]) -> dict[str, object]:
    """A JSON-ready dict of the per-box states."""
    boxes = {}
    for name, st in states.items():
        d = asdict(st)
        d["fail_times"], d["recovery_times"] = list(st.fail_times), list(st.recovery_times)
        boxes[name] = d
    return {"version": STATE_FILE_VERSION, "boxes": boxes}


def from_json(data: object) -> dict[str, BoxState]:
    """Inverse of to_json; ValueError when the data is not a state document."""
    if not isinstance(data, dict) or data.get("version") != STATE_FILE_VERSION or not isinstance(
            data.get("boxes"), dict):
        raise ValueError(f"not a freeze state document of version {STATE_FILE_VERSION}")
    names = {f.name for f in fields(BoxState)}
    out = {}
    for name, raw in data["boxes"].items():
        if not isinstance(raw, dict) or set(raw) - names or raw.get("state") not in STATES:
            raise ValueError(f"bad state for box {name!r}: {raw!r}")
        raw = dict(raw)
        for key in ("fail_times", "recovery_times"):
            raw[key] = tuple(float(t) for t in raw.get(key, ()))
        if raw["state"] in (State.FROZEN, State.RECOVERING) and not isinstance(raw.get("freeze_start_s"), int | float):
            # step() needs the open freeze's start: refused here, so the file is moved aside (load_state)
            raise ValueError(f"box {name!r} is {raw['state']} with no freeze_start_s")
        out[name] = BoxState(**raw)
    return out


def save_state(path: str, states: dict[str, BoxState]) -> None:
    """Write states to path atomically: temp file, fsync, rename, fsync the directory."""
    atomic.write_json(path, to_json(states))


def load_state(path: str) -> dict[str, BoxState]:
    """Read states saved by save_state; {} when there is no file. A corrupt file is moved aside and logged."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    try:
        return from_json(json.loads(raw))
    except (ValueError, TypeError) as exc:
        aside = f"{path}.corrupt"
        os.replace(path, aside)
        log.error("freeze state %s unreadable (%s); moved to %s, starting with all boxes up", path, exc, aside)
        return {}
