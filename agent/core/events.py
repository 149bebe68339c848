"""The events of one cycle, in the order the pipeline hands them to listeners (agent.listeners).

Per box: BoxObserved (every cycle), then what the freeze state machine (agent.core.freeze)
and the MAC memory (agent.core.macwatch) made of it: StateChanged, FreezeOpened,
FreezeLayerChanged, FreezeClosed, MacChanged, AddressConflictChanged; then flapping
(agent.core.flapping): DegradedChanged. Then, for the whole cycle, what correlation
(agent.core.correlation) made of the freeze events: SegmentFreezeChanged, BoxHeld,
BoxReleased. Last, CycleEnded. The pipeline publishes them as one message, CycleEvents, on the
bus (agent.bus); consumers: points, evidence, remediation, status, metrics.

Besides the cycle: BoxSetChanged (discovery or a box's name changed the box set), published when it happens;
the names' NameStateChanged and AddressChanged (agent.core.resolve, re-exported here), published by the
resolver service (agent.resolve) off the probe path.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from agent.core.maintenance import Active
from agent.core.resolve import AddressChanged as AddressChanged, NameStateChanged as NameStateChanged  # re-exported
from probes import LAYERS as PROBE_LAYERS, Layer as Layer, ProbeResult  # Layer: re-exported, the events' layer type


class State(StrEnum):
    """A box's freeze state (agent.core.freeze); the values are stored (`box` state) and shown (status.json).

    STOPPED: not judged; its container was stopped, killed or removed by someone else (operator
    intent). MAINTENANCE: in a maintenance window (agent.core.maintenance): probed and stored, not
    judged, never remediated.
    """

    UP = "up"
    SUSPECT = "suspect"
    FROZEN = "frozen"
    RECOVERING = "recovering"
    STOPPED = "stopped"
    MAINTENANCE = "maintenance"


class BoxKind(StrEnum):
    """What a box is (the `kind` tag, [[box]] kind); agent.core.config.BOX_KINDS lists the values."""

    CONTAINER = "container"
    VM = "vm"


STATES: tuple[str, ...] = tuple(s.value for s in State)
# "none" (healthy) and the probe layers (probes.types.LAYERS is the one source: l2, l3, l4, l7).
LAYERS: tuple[str, ...] = (Layer.NONE.value, *PROBE_LAYERS)
# States in which a box is not judged (its cycles are not counted for or against it).
NOT_JUDGED: frozenset[str] = frozenset({State.STOPPED, State.MAINTENANCE})
# How deep a failure is: l2 (ARP/NDP fail) is deeper than l3 (ping fails), deeper than l4 (a TCP port
# does not accept), deeper than l7 (the service does not answer): a failure lower in the stack
# explains every failure above it.
LAYER_DEPTH: dict[str, int] = {Layer.NONE: 0, **{layer: len(PROBE_LAYERS) - i for i, layer in enumerate(PROBE_LAYERS)}}


def deeper(a: str, b: str) -> str:
    """The deeper of two layers (l2 > l3 > l4 > l7 > none); KeyError for an unknown layer."""
    return a if LAYER_DEPTH[a] >= LAYER_DEPTH[b] else b


@dataclass(frozen=True, slots=True)
class Event:
    """Base: something happened to `box` at cycle time `time_s` (epoch s)."""

    box: str
    time_s: float


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    """The box's state moved from `old` to `new` (up, suspect, frozen, recovering, stopped)."""

    old: str
    new: str
    layer: str


@dataclass(frozen=True, slots=True)
class FreezeOpened(Event):
    """The box became frozen at time_s; the freeze started at start_s (its first failing cycle).

    suspect_cycle_times: the earlier failing cycles of this freeze (start_s first, the
    detecting cycle excluded) whose `box` points were written with up=1 and must now be
    written again with up=0. opened_by: "probes" (fail_cycles failing cycles in a row), or
    "alert" (an alert about the suspect box, a second witness: agent.core.freeze.open_by_alert; then
    every failing cycle of its suspect run is in suspect_cycle_times, the pipeline rewrote none).
    """

    start_s: float
    layer: str
    suspect_cycle_times: tuple[float, ...]
    opened_by: str = "probes"


@dataclass(frozen=True, slots=True)
class FreezeLayerChanged(Event):
    """An open freeze got deeper (e.g. l4 -> l2).

    detected_layer: the layer found when the freeze was detected (its FreezeOpened's layer; constant within
    the freeze); "" when unknown (a freeze opened by an agent that did not keep it).
    """

    start_s: float
    old_layer: str
    new_layer: str
    detected_layer: str = ""


@dataclass(frozen=True, slots=True)
class FreezeClosed(Event):
    """The freeze that started at start_s ended at end_s (the first healthy cycle of the recovery).

    time_s is when the recovery was confirmed (recover_cycles healthy cycles later). layer: the deepest layer
    the freeze reached; detected_layer: the layer at detection ("" when unknown, see FreezeLayerChanged).
    """

    start_s: float
    end_s: float
    layer: str
    detected_layer: str = ""

    @property
    def duration_s(self) -> float:
        """end_s - start_s."""
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class BoxObserved(Event):
    """One box judged in one cycle (time_s: the cycle's time), before its freeze events.

    healthy/layer: the verdict; state: the freeze state after this cycle; up: the `box`
    point's value for this cycle; rewrite_down_times: earlier cycles whose up must now be 0
    (see agent.core.freeze.up_decision); freeze_start_s: the open freeze's start, if any;
    state_layer: the state machine's layer (the deepest of the suspect run or open freeze; none when up);
    freeze_detected_layer: the open freeze's layer at detection ("" when none is open or it is unknown);
    results: the box's probe results (probes.ProbeResult), in plan order; confirm: judged by a
    confirmation pass, not a cycle (no `box`/`probe` points: mean(up) stays one value per cycle).
    """

    healthy: bool
    layer: str
    state: str
    up: int | None   # None: not observed (stopped on purpose), as agent.core.freeze.UpDecision says
    rewrite_down_times: tuple[float, ...]
    freeze_start_s: float | None
    state_layer: str
    results: tuple[ProbeResult, ...]
    confirm: bool = False
    container: Any = None   # container boxes: its ContainerState (agent.engines.watcher), None when unknown
    # flapping (agent.core.flapping) after this cycle: degraded, the window's percent state change and failed share
    degraded: bool = False
    percent_state_change: float | None = None
    failed_share: float | None = None
    maintenance: Active | None = None   # in a maintenance window: why, else None
    freeze_detected_layer: str = ""


@dataclass(frozen=True, slots=True)
class MaintenanceChanged(Event):
    """The box entered (active) or left a maintenance window at time_s (the cycle's time).

    reason, who (None: a window of the config), until_s (None: until ended) and source ("command" or
    "config") describe the window entered, or the one left.
    """

    active: bool
    reason: str
    who: str | None
    until_s: float | None
    source: str


@dataclass(frozen=True, slots=True)
class MacChanged(Event):
    """ARP/NDP for `address` answered from MAC `new` where it answered from `old` before (time_s: the answer).

    ours: seen while a remediation action of ours ran on the box or was being verified (a reconnect or
    restart on an engine that gives a new MAC, e.g. Podman's restart): the change is the agent's own.
    """

    address: str
    old: str
    new: str
    ours: bool = False


@dataclass(frozen=True, slots=True)
class AddressConflictChanged(Event):
    """ARP/NDP for `address` answered from several MACs in one sweep (open), or from one again (closed).

    macs: every MAC that answered (closed: those of the conflict). While one is open the box's
    automatic remediation is held (BoxHeld kind "address_conflict"): restarting or reconnecting
    the box cannot take its address back from another host (agent.core.macwatch).
    """

    address: str
    macs: tuple[str, ...]
    open: bool


@dataclass(frozen=True, slots=True)
class DegradedChanged(Event):
    """The box became degraded (flapping, or too many failed cycles in the window) or stopped being so.

    Never remediated for that alone. percent_state_change: Nagios/Icinga's weighted percent of
    verdict changes over the window (0-100); failed_share: failed cycles / window (0-1);
    reason: why, in words (agent.core.flapping).
    """

    degraded: bool
    percent_state_change: float
    failed_share: float
    reason: str


@dataclass(frozen=True, slots=True)
class SegmentFreezeChanged:
    """A segment freeze opened, grew (more boxes, deeper layer) or closed; box-less, so not an Event.

    time_s: the cycle's time; duration_s: so far while open, final when closed; reason: the evidence it
    opened on (no life on the segment), and when closed the evidence that ended it (agent.core.correlation).
    """

    time_s: float
    segment: str
    site: str | None
    start_s: float
    boxes: tuple[str, ...]
    layer: str
    open: bool
    duration_s: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WitnessObserved:
    """The `[correlation] witness` probed in a cycle (ARP/NDP + ping; never remediated); box-less, so not an Event.

    answered: ARP/NDP or ping answered (life for its segment, agent.core.correlation); results: its
    probes.ProbeResult list.
    """

    time_s: float
    address: str
    segment: str | None
    answered: bool
    results: tuple[ProbeResult, ...]


@dataclass(frozen=True, slots=True)
class EngineDownChanged:
    """The container engine became unreachable (open) or reachable again (closed), seen at time_s (epoch s).

    One event for the whole engine, like a segment freeze: while it is open the frozen
    container boxes are held (BoxHeld kind "engine_down"), nothing is remediated; when the
    engine returns each box still down is judged alone. since_s: when the agent lost the
    engine's event stream; reason: why, in words.
    """

    time_s: float
    since_s: float
    open: bool
    reason: str


@dataclass(frozen=True, slots=True)
class BoxHeld(Event):
    """Automatic remediation of a frozen box must wait from time_s on; `reason` says why (for status and points).

    kind: "segment" (an open segment freeze holds the box: the cause is the segment),
    "settling" (other boxes of its segment are failing too: wait a cycle for correlation),
    "address_conflict" (another host answers for its address: AddressConflictChanged), or
    "engine_down" (a container box while its engine is unreachable: EngineDownChanged).
    """

    kind: str
    segment: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class BoxReleased(Event):
    """The hold on a box ended at time_s (its segment freeze closed, or it is no longer frozen); reason: why."""

    kind: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CycleEnded:
    """The cycle that began at time_s (epoch s) is complete; started_monotonic_s: time.monotonic() at its start.

    error: why no box was judged (the sweep failed), else None. confirm: a confirmation pass
    (only the boxes whose state is unsettled were re-probed; see Pipeline.confirm), not a cycle.
    """

    time_s: float
    started_monotonic_s: float
    boxes: int
    unhealthy: tuple[str, ...]
    frozen: tuple[str, ...]
    misfires: int
    error: str | None = None
    confirm: bool = False


CycleEvent: TypeAlias = Event | SegmentFreezeChanged | WitnessObserved | EngineDownChanged | CycleEnded


@dataclass(frozen=True, slots=True)
class CycleEvents:
    """One message on the bus per cycle or confirmation pass: its events in order, the last one a CycleEnded.

    (Also one, without CycleEnded, for the freeze an alert opens between cycles: agent.pipeline.Pipeline.alert_witness.)

    One message, so a listener sees a freeze together with the hold that applies to it.
    """

    events: tuple[CycleEvent, ...]


@dataclass(frozen=True, slots=True)
class ClockStepped:
    """The probe loop saw the wall clock step by step_s seconds (negative: back) against the monotonic clock;
    time_s: the wall clock after the step (epoch s), monotonic_s: time.monotonic() then. Published once per step
    (agent.schedule.StepDetector), not at a cycle; the loop's rhythm is unchanged."""

    time_s: float
    step_s: float
    monotonic_s: float


@dataclass(frozen=True, slots=True)
class BoxSetChanged:
    """Discovery changed the box set at time_s (epoch s); published as it happens, not at a cycle.

    version: the set's version (agent.discovery.DockerDiscovery.boxes); boxes: the whole set now
    (agent.core.config.BoxConfig, configured boxes first); added/removed: the discovered
    containers that joined and left (agent.core.discovery.Found; a changed box is in both).
    The pipeline takes the new set at its next cycle; the other subscribers at once.
    """

    time_s: float
    version: int
    boxes: tuple[Any, ...]
    added: tuple[Any, ...] = ()
    removed: tuple[Any, ...] = ()

    @property
    def kinds(self) -> dict[str, str]:
        """box name -> kind (container|vm) of the new set."""
        return {b.name: b.kind for b in self.boxes}
