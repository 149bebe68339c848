"""The cycle pipeline: sweep -> verdicts -> freeze.step -> events -> listeners.

One cycle, in order (data flows one way):
  1. sweep every box's targets at once (probes.sweep);
  2. one verdict per box (agent.core.cycle), the freeze state machine (agent.core.freeze),
     the MAC memory (agent.core.macwatch) and flapping (agent.core.flapping): BoxObserved,
     StateChanged, Freeze*, MacChanged, DegradedChanged; a box in a maintenance window
     (agent.core.maintenance, asked once per cycle) is not judged; MaintenanceChanged when one
     enters or leaves a window;
  3. correlation (agent.core.correlation): which boxes (and the `[correlation] witness`, probed
     with the cycle: WitnessObserved) answered ARP/NDP or ping, then the cycle's freezes:
     SegmentFreezeChanged (opened only while the segment shows no life, closed when it answers),
     and the holds of frozen boxes: BoxHeld / BoxReleased;
  4. CycleEnded; the whole list is published on the bus (agent.bus) as one message, CycleEvents,
     so every listener (agent.listeners) gets it in one call.
The pipeline's own state (freeze states, MAC memory, correlation, holds) is saved
atomically every cycle, so a restart (even after kill -9) continues an open freeze
instead of opening a new one. Correlation is a core step, not a listener: its events
feed the listeners, and a listener never feeds another.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import probes
from agent import atomic
from agent.bus import Bus
from agent.core import correlation as corr, flapping, freeze
from agent.core.config import BoxConfig, Config
from agent.core.correlation import Correlator
from agent.core.cycle import ContainerView, CyclePlan, plan_cycle, verdicts, with_container_state
from agent.core.events import (
    NOT_JUDGED,
    AddressConflictChanged,
    BoxHeld,
    BoxKind,
    BoxObserved,
    BoxReleased,
    BoxSetChanged,
    CycleEnded,
    CycleEvent,
    CycleEvents,
    DegradedChanged,
    EngineDownChanged,
    FreezeClosed,
    FreezeLayerChanged,
    FreezeOpened,
    MacChanged,
    MaintenanceChanged,
    SegmentFreezeChanged,
    State,
    StateChanged,
    WitnessObserved,
    deeper,
)
from agent.core.macwatch import MacWatch
from agent.core.maintenance import Active
from agent.listeners import Listener
from agent.prober import Checks, Prober, Sweep

log = logging.getLogger(__name__)

FREEZE_STATE_FILE = "freeze-state.json"
AGENT_STATE_FILE = "agent-state.json"
AGENT_STATE_VERSION = 1


class Recorder(Protocol):
    """The packet flight recorder's side of a sweep (agent.forensics.recorder.FlightRecorder)."""

    def record(self, time_s: float, direction: str, probe: str, address: str, frame: bytes, linktype: int) -> None:
        ...

    def end_cycle(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CycleSummary:
    """What one cycle did, for logs, the live view and tests."""

    time_s: float
    cycle_s: float
    boxes: int
    unhealthy: tuple[str, ...]
    frozen: tuple[str, ...]
    events: int
    error: str | None = None


class Pipeline:
    """Runs cycles; the edges (prober, clock, recorder, bus) are injected, the core (freeze, correlation) owned.

    bus: the one way out (agent.bus.Bus), or the listeners to build one of; prober: the probes
    the cycle uses (agent.prober.Prober), built from sweep, checks and container_states when not
    given; memberships(boxes): the correlation memberships of boxes discovery adds
    (agent.core.correlation.memberships_from_config), None: they join no segment.
    """

    def __init__(self, config: Config, bus: Bus | Sequence[Listener], *,
                 sweep: Sweep = probes.sweep,
                 clock: Callable[[], float] = time.time, recorder: Recorder | None = None,
                 correlator: Correlator | None = None, macwatch: MacWatch | None = None,
                 acting: Callable[[str], bool] | None = None,
                 checks: Checks | None = None,
                 container_states: Callable[[], Mapping[str, ContainerView]] | None = None,
                 maintenance: Callable[[float, Sequence[str]], Mapping[str, Active]] | None = None,
                 prober: Prober | None = None,
                 memberships: Callable[[Sequence[BoxConfig]], Mapping[str, Any]] | None = None) -> None:
        self.config = config
        # sweep, in-container checks, the container state cache (agent.engines.watcher.ContainerStates)
        self.prober = prober or Prober(config, sweep=sweep, clock=clock, checks=checks,
                                       container_states=container_states)
        self.memberships = memberships
        self._engine_down: tuple[float, str] | None = None   # (since_s, reason) while the container engine is away
        # (now_s, box names) -> those in a maintenance window and why (agent.maintenance.MaintenanceSource)
        self.maintenance = maintenance
        self._in_maintenance: dict[str, Active] = {}   # as of the last cycle (MaintenanceChanged on changes)
        self.bus = bus if isinstance(bus, Bus) else Bus(bus)
        self._pending: list[CycleEvent] = []   # events of a box-set change, handed over with the next cycle
        self._next_boxes: BoxSetChanged | None = None   # the newest box set published, taken at the next cycle
        self.clock = clock
        self.recorder = recorder
        self.correlator = correlator
        self.macwatch = macwatch
        self.acting = acting   # box -> a remediation action of ours runs on it or is being verified
        self.boxes: dict[str, BoxConfig] = {b.name: b for b in config.boxes}
        self.plan = plan_cycle(config.boxes)
        self.misfires = 0
        self.cycles = 0
        self._lock = threading.Lock()
        state_dir = config.agent.state_dir
        atomic.private_dir(state_dir)
        self._freeze_path = os.path.join(state_dir, FREEZE_STATE_FILE)
        self._agent_path = os.path.join(state_dir, AGENT_STATE_FILE)
        saved = freeze.load_state(self._freeze_path)
        self.states = {name: saved.get(name, freeze.initial(name)) for name in self.boxes}
        self._holds: dict[str, str] = {}   # box -> hold kind ("segment" | "settling"), frozen boxes only
        self._confirm_times: dict[str, set[float]] = {}   # box -> times of confirmation passes in its state
        # Holds restored from the saved state are announced again (BoxHeld) in the first cycle, so the
        # listeners of this process (remediation, status) know them.
        self._reannounce_holds = True
        self.flap_settings = flapping.FlapSettings.from_config(config.flapping)
        self.flaps = {name: flapping.initial(name) for name in self.boxes}   # box -> its flapping window
        self._restore_agent_state()
        resumed = [n for n, s in self.states.items() if s.freeze_open]
        if resumed:
            log.info("resuming open freezes of %s", ", ".join(sorted(resumed)))

    # The prober's parts, read and replaced through the pipeline as before (tests script them).
    @property
    def sweep(self) -> Sweep:
        """sweep(targets, timeout_s, interface, recorder) -> results (probes.sweep)."""
        return self.prober.sweep

    @sweep.setter
    def sweep(self, sweep: Sweep) -> None:
        self.prober.sweep = sweep

    @property
    def checks(self) -> Checks | None:
        """box names -> their in-container check results (agent.checks.runner.CheckRunner), or None."""
        return self.prober.checks

    @checks.setter
    def checks(self, checks: Checks | None) -> None:
        self.prober.checks = checks

    @property
    def container_states(self) -> Callable[[], Mapping[str, ContainerView]] | None:
        """box -> its container's state, kept from Docker events, or None."""
        return self.prober.container_states

    @container_states.setter
    def container_states(self, read: Callable[[], Mapping[str, ContainerView]] | None) -> None:
        self.prober.container_states = read

    @property
    def listeners(self) -> list[Any]:
        """The listeners on the bus, in order."""
        return list(self.bus.listeners)

    def count_misfire(self, lost: int = 1) -> None:
        """The probe loop lost LOST slots (a cycle could not start in time; its next CycleEnded carries the count)."""
        self.misfires += lost

    def box_set_changed(self, ev: BoxSetChanged) -> None:
        """The bus's BoxSetChanged: kept, and taken at the start of the next cycle (never mid-cycle)."""
        self._next_boxes = ev

    def _take_box_set(self) -> None:
        ev, self._next_boxes = self._next_boxes, None
        if ev is None:
            return
        added, removed = self._set_boxes(ev.boxes)
        if added or removed:
            log.info("box set: %d boxes (+%s -%s)", len(ev.boxes), ",".join(added) or "0", ",".join(removed) or "0")

    def set_boxes(self, boxes: Sequence[BoxConfig]) -> tuple[list[str], list[str]]:
        """Swap the box set between cycles (discovery): (added, removed) names; removed boxes' state is dropped.

        A new box starts from its saved freeze state if it has one (a rediscovered box after a
        restart), else afresh; a box whose config changed keeps its state.
        """
        with self._lock:
            return self._set_boxes(boxes)

    def _set_boxes(self, boxes: Sequence[BoxConfig]) -> tuple[list[str], list[str]]:
        new = {b.name: b for b in boxes}
        added = [n for n in new if n not in self.boxes]
        removed = [n for n in self.boxes if n not in new]
        saved = freeze.load_state(self._freeze_path) if added else {}
        for name in removed:
            gone = self.states.pop(name, None)
            if gone is not None and gone.state in (State.FROZEN, State.RECOVERING) and gone.freeze_start_s is not None:
                # Its container was removed while frozen: the freeze ends here, so the data has no freeze
                # left open forever (closed in the next cycle's events).
                now_s = self.clock()
                end_s = gone.recovery_times[0] if gone.state == State.RECOVERING and gone.recovery_times else now_s
                self._pending.append(FreezeClosed(name, now_s, gone.freeze_start_s, end_s, gone.layer,
                                                  gone.detected_layer))
            self._holds.pop(name, None)
            self._confirm_times.pop(name, None)
            self.flaps.pop(name, None)
            if self.correlator is not None:
                self.correlator.members.pop(name, None)
        for name in added:
            self.states[name] = saved.get(name, freeze.initial(name))
            self.flaps[name] = flapping.initial(name)
        if self.correlator is not None and added and self.memberships is not None:
            self.correlator.members.update(self.memberships([new[n] for n in added]))
        if self.macwatch is not None and removed:
            self.macwatch.forget(new)
        self.boxes = new
        self.prober.set_boxes(tuple(boxes))
        self.plan = plan_cycle(tuple(boxes))
        return added, removed

    # ---- persistence ---------------------------------------------------------------------------

    def _restore_agent_state(self) -> None:
        try:
            with open(self._agent_path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("agent state %s unreadable (%s); starting without it", self._agent_path, exc)
            return
        self._holds = {k: str(v) for k, v in (data.get("holds") or {}).items() if k in self.boxes}
        self._confirm_times = {k: {float(t) for t in v} for k, v in (data.get("confirm_times") or {}).items()
                               if k in self.boxes}
        if data.get("flapping"):
            try:
                saved_flaps = flapping.from_json(data["flapping"], self.flap_settings)
                self.flaps.update({k: v for k, v in saved_flaps.items() if k in self.boxes})
            except ValueError as exc:
                log.warning("%s; flapping windows start afresh", exc)
        self._in_maintenance = {k: Active(**v) for k, v in (data.get("maintenance") or {}).items() if k in self.boxes}
        if self.macwatch is not None and data.get("macwatch"):
            self.macwatch.restore(data["macwatch"])   # in place: the evidence listener reads the same memory
        if self.correlator is not None and data.get("correlation"):
            try:
                self.correlator = Correlator.from_json(data["correlation"], self.correlator.settings,
                                                       self.correlator.members, self.correlator.witness_segment)
            except ValueError as exc:
                log.warning("%s; correlation starts afresh", exc)

    def _save(self) -> None:
        freeze.save_state(self._freeze_path, self.states)
        payload: dict[str, Any] = {"version": AGENT_STATE_VERSION, "holds": self._holds,
                                   "confirm_times": {k: sorted(v) for k, v in self._confirm_times.items() if v},
                                   "maintenance": {k: asdict(v) for k, v in self._in_maintenance.items()}}
        payload["flapping"] = flapping.to_json(self.flaps)
        if self.macwatch is not None:
            payload["macwatch"] = self.macwatch.to_json()
        if self.correlator is not None:
            payload["correlation"] = self.correlator.to_json()
        atomic.write_json(self._agent_path, payload)

    # ---- one cycle -----------------------------------------------------------------------------

    def run_cycle(self) -> CycleSummary:
        """Probe every box once and hand the events to the listeners; never raises for a box, probe or listener."""
        with self._lock:  # the scheduler never overlaps cycles; this guards manual calls too
            self._take_box_set()   # discovery's box set, swapped between cycles only
            return self._cycle(self.plan)

    def unsettled(self) -> tuple[str, ...]:
        """Boxes whose state waits for more cycles to settle: suspect (freeze or not?) and recovering (over?)."""
        return tuple(n for n, s in self.states.items() if s.state in (State.SUSPECT, State.RECOVERING))

    def confirm_pass(self) -> int:
        """One fast-confirmation pass: re-probe the unsettled boxes alone, now; returns how many (0: none, nothing ran).

        A pass is a cycle for those boxes alone: freeze.step counts it, its events reach the
        listeners, but it writes no `box` or `agent` point (one of each per cycle keeps mean(up)
        honest). Healthy boxes are never probed by a pass. When passes run is the probe loop's
        choice (agent.schedule.ProbeLoop: start to start `[freeze] confirm_interval` apart, between
        cycles, so a failing box is confirmed fail_cycles x max(timeout, confirm_interval) after
        its first failing probe). A freeze still starts at its first failing cycle.
        """
        with self._lock:
            names = self.unsettled()
            if names:
                self._cycle(plan_cycle([self.boxes[n] for n in names]), confirm=True)
            return len(names)

    def _cycle(self, plan: CyclePlan, confirm: bool = False) -> CycleSummary:
        started = time.monotonic()
        now_s = self.clock()
        record = self.recorder.record if self.recorder is not None else None
        checks = self.prober.start_checks([name for name, _, _ in plan.slices])
        witness = self._witness_targets() if not confirm else []
        if witness:   # after the boxes' targets: verdicts read the boxes' slices only
            plan = CyclePlan(plan.targets + tuple(witness), plan.slices)
        try:
            results = self._sweep_all(plan, record, now_s)
        except Exception as exc:  # a broken probe must not stop the agent; no verdicts this cycle
            log.exception("cycle: sweep failed for every box, no box is judged this cycle")
            return self._finish([], now_s, started, (), f"sweep failed: {type(exc).__name__}: {exc}", confirm)
        finally:
            if self.recorder is not None:
                self.recorder.end_cycle()

        events: list[CycleEvent] = self._pending
        self._pending = []
        unhealthy: list[str] = []
        containers = self.prober.read_container_states()
        active = self._maintenance_at(now_s)
        for v in verdicts(plan, results, now_s, checks()):
            box = self.boxes[v.box]
            if box.kind == BoxKind.CONTAINER and box.container:
                was = self.states.get(v.box)
                v = with_container_state(v, box.container, containers.get(v.box), box.restart_stopped,
                                         was.last_time_s if was is not None and was.state == State.STOPPED else None)
            if not v.healthy:
                unhealthy.append(v.box)
            try:
                events.extend(self._judge(v, now_s, confirm, active.get(v.box)))
            except Exception:  # one misbehaving box never stops the cycle
                log.exception("box %s: cycle failed for this box", v.box)
        if not confirm:
            events.extend(self._maintenance_changes(active, now_s))
        if witness and len(results) == len(plan.targets):
            events.append(self._witness_observed(results[-len(witness):], now_s))
        events.extend(self._engine_changes(now_s))
        events.extend(self._correlate(events, now_s))
        events.extend(self._holds_of(now_s))
        return self._finish(events, now_s, started, tuple(unhealthy), None, confirm)

    def _witness_targets(self) -> list[probes.Target]:
        """The witness's ARP/NDP and ping targets ([correlation] witness), none without one or without correlation."""
        if self.correlator is None or self.correlator.settings.witness is None:
            return []
        return corr.witness_targets(self.correlator.settings.witness)

    def _witness_observed(self, results: Sequence[probes.ProbeResult], now_s: float) -> WitnessObserved:
        assert self.correlator is not None and self.correlator.settings.witness is not None
        answered = bool(corr.answered(results))
        return WitnessObserved(now_s, self.correlator.settings.witness, self.correlator.witness_segment, answered,
                               tuple(results))

    def _engine_changes(self, now_s: float) -> list[CycleEvent]:
        """EngineDownChanged when the container engine became unreachable or came back (the state cache says)."""
        read = getattr(self.prober.container_states, "engine_down", None)
        try:
            down = read() if callable(read) else None
        except Exception:
            log.exception("cycle: container engine state unavailable")
            down = None
        was, self._engine_down = self._engine_down, down
        if (down is None) == (was is None):
            return []
        if down is not None:
            log.warning("container engine down since %.0f (%s): container boxes held", down[0], down[1])
            return [EngineDownChanged(now_s, down[0], True, down[1])]
        assert was is not None
        log.warning("container engine back after %.1f s: each container box judged alone", now_s - was[0])
        return [EngineDownChanged(now_s, was[0], False, was[1])]

    def _sweep_all(self, plan: CyclePlan, record: Any, now_s: float) -> list[probes.ProbeResult]:
        """One sweep of every target; if it raises, one sweep per box, so a probe error is that box's failure.

        A box whose own sweep raises gets a failed result per target carrying the error; the
        other boxes are judged as usual. Raises only when every box's sweep raised (nothing judged).
        """
        timeout_s, interface = self.config.agent.timeout_s, self.config.agent.interface
        try:
            return self.sweep(list(plan.targets), timeout_s, interface, record)
        except Exception as exc:  # noqa: BLE001 - narrowed down to the box below
            first = exc
            log.warning("cycle: sweep failed (%s: %s); probing box by box", type(exc).__name__, exc)
        results: list[probes.ProbeResult] = []
        failed = 0
        for name, start, stop in plan.slices:
            targets = list(plan.targets[start:stop])
            try:
                results += self.sweep(targets, timeout_s, interface, record)
            except Exception as exc:  # noqa: BLE001 - this box's failure, with the error in its points
                failed += 1
                log.error("box %s: probe error, counted as a failure: %s: %s", name, type(exc).__name__, exc)
                error = f"probe error: {type(exc).__name__}: {exc}"
                results += [probes.ProbeResult(t.address, t.probe, t.port, False, None, error, None, now_s)
                            for t in targets]
        if failed == len(plan.slices):
            raise first
        return results

    def _maintenance_at(self, now_s: float) -> Mapping[str, Active]:
        """The boxes in maintenance this cycle; {} without windows, and the last answer when asking fails."""
        if self.maintenance is None:
            return {}
        try:
            return self.maintenance(now_s, tuple(self.boxes))
        except Exception:  # a broken window source must not stop probing
            log.exception("cycle: maintenance windows unavailable; keeping those of the last cycle")
            return dict(self._in_maintenance)

    def _maintenance_changes(self, active: Mapping[str, Active], now_s: float) -> list[CycleEvent]:
        """MaintenanceChanged for the boxes that entered or left a window since the last cycle."""
        out: list[CycleEvent] = []
        for name in self.boxes:
            old, new = self._in_maintenance.get(name), active.get(name)
            if new is not None and new != old:
                log.warning("box %s: maintenance (%s%s) until %s", name, new.reason,
                            f", by {new.who}" if new.who else "", _iso(new.until_s) if new.until_s else "ended")
                out.append(MaintenanceChanged(name, now_s, True, new.reason, new.who, new.until_s, new.source))
            elif new is None and old is not None:
                log.warning("box %s: maintenance over (%s)", name, old.reason)
                out.append(MaintenanceChanged(name, now_s, False, old.reason, old.who, old.until_s, old.source))
        self._in_maintenance = dict(active)
        return out

    def _judge(self, v: Any, now_s: float, confirm: bool = False, maintenance: Active | None = None
               ) -> list[CycleEvent]:
        """One box's verdict through the freeze state machine and the MAC memory (maintenance: its window, if any)."""
        before = self.states[v.box]
        layer = v.layer
        if (not v.healthy and before.freeze_open and self.acting is not None and layer != before.layer
                and deeper(layer, before.layer) == layer and self.acting(v.box)):
            # Our own action (a restart takes the network away for a moment) does not deepen the freeze:
            # the freeze keeps the layer its cause showed; a deeper failure after verification still counts.
            log.info("box %s: %s failure during our own remediation counted as %s", v.box, layer, before.layer)
            layer = before.layer
        after, freeze_events = freeze.step(before, freeze.Verdict(v.healthy, layer, v.stopped,
                                                                  maintenance is not None), now_s, self.config.freeze)
        self.states[v.box] = after
        decision = freeze.up_decision(before, after)
        # Confirmation passes write no `box` point, so there is none to rewrite at their times; the pass
        # times the state still holds (its suspect or recovering run) are remembered until it settles.
        passes = self._confirm_times.get(v.box, set())
        rewrite = tuple(t for t in decision.rewrite_down_times if t not in passes)
        if confirm:
            passes = passes | {now_s}
        held_times = set(after.fail_times) | set(after.recovery_times)
        self._confirm_times[v.box] = {t for t in passes if t in held_times}
        flap, flap_events = flapping.step(self.flaps.get(v.box) or flapping.initial(v.box), v.healthy, now_s, self.flap_settings,
                                          freeze_open=after.freeze_open,
                                          stopped=after.state in NOT_JUDGED,   # not judged
                                          cycle=not confirm)
        self.flaps[v.box] = flap
        on = self.flap_settings.enabled and after.state not in NOT_JUDGED
        out: list[CycleEvent] = [BoxObserved(v.box, now_s, v.healthy, v.layer, after.state, decision.up,
                                             rewrite, after.freeze_start_s, after.layer, tuple(v.results), confirm,
                                             v.container, flap.degraded,
                                             flap.percent_state_change if on else None,
                                             flap.failed_share if on else None, maintenance,
                                             after.detected_layer)]
        if self.macwatch is not None:
            for change in self.macwatch.observe(v.box, v.results):
                log.warning("box %s: %s answered from MAC %s (was %s)", v.box, change.address, change.new,
                            change.old)
                out.append(MacChanged(v.box, change.time_s, change.address, change.old, change.new,
                                      ours=bool(self.acting is not None and self.acting(v.box))))
            for c in self.macwatch.observe_conflicts(v.box, v.results):
                if c.open:
                    log.warning("box %s: address conflict: %s answered from MACs %s", v.box, c.address,
                                ", ".join(c.macs))
                else:
                    log.warning("box %s: address conflict on %s over (was %s)", v.box, c.address, ", ".join(c.macs))
                out.append(AddressConflictChanged(v.box, c.time_s, c.address, c.macs, c.open))
        for ev in (*freeze_events, *flap_events):
            _log_event(ev)
        out.extend(freeze_events)
        out.extend(flap_events)
        return out

    def _correlate(self, events: Sequence[CycleEvent], now_s: float) -> list[CycleEvent]:
        """Feed the cycle's answers, then its freeze starts and ends to correlation; its segment freezes opened,
        grown or closed (a segment that answers again ends its segment freeze: settle)."""
        if self.correlator is None:
            return []
        out: list[CycleEvent] = []
        for ev in events:   # life first: an answer in this cycle counts for this cycle's freezes
            if isinstance(ev, BoxObserved):
                self.correlator.observe(ev.box, ev.time_s, corr.answered(ev.results))
            elif isinstance(ev, WitnessObserved):
                self.correlator.observe_witness(ev.time_s, ev.answered)
        for ev in events:
            box = self.boxes.get(getattr(ev, "box", ""))
            if (self._engine_down is not None and box is not None and box.container
                    and isinstance(ev, (FreezeOpened, FreezeLayerChanged))):
                continue   # its engine is down: that is the cause (held "engine_down"), not the segment
            if isinstance(ev, FreezeOpened):
                found = self.correlator.freeze_started(ev.box, ev.start_s, ev.layer)
            elif isinstance(ev, FreezeLayerChanged):   # an l4/l7 freeze that reached l3/l2 counts from now on
                found = self.correlator.freeze_started(ev.box, ev.start_s, ev.new_layer)
            elif isinstance(ev, FreezeClosed):
                found = self.correlator.freeze_ended(ev.box, ev.end_s)
            else:
                continue
            out.extend(_segment_event(sf, now_s) for sf in found)
        out.extend(_segment_event(sf, now_s) for sf in self.correlator.settle(now_s))
        return out

    def _holds_of(self, now_s: float) -> list[CycleEvent]:
        """BoxHeld / BoxReleased where a frozen box's hold began, changed kind or ended (after correlation)."""
        out: list[CycleEvent] = []
        suspect = [n for n, s in self.states.items() if s.state == State.SUSPECT]
        for name, st in self.states.items():
            kind = reason = None
            segment = None
            conflicts = self.macwatch.conflicts(name) if self.macwatch is not None else {}
            box = self.boxes.get(name)
            if st.state == State.FROZEN and self._engine_down is not None and box is not None and box.container:
                # The engine cannot act: one cause for every container box, judged alone when it returns.
                kind, reason = "engine_down", f"engine down: {self._engine_down[1]}"
            elif st.state == State.FROZEN and conflicts:
                # Another host answers for its address: no restart or reconnect can take it back.
                kind = "address_conflict"
                reason = "address conflict: " + "; ".join(f"{a} answered from MACs {', '.join(m)}"
                                                          for a, m in sorted(conflicts.items()))
            elif st.state == State.FROZEN and self.correlator is not None:
                reason = self.correlator.holds(name)
                kind = "segment" if reason else None
                if reason is None:
                    reason = self.correlator.settling(name, suspect, st.freeze_start_s)
                    kind = "settling" if reason else None
                member = self.correlator.members.get(name)
                segment = member.segment if member else None
            old = self._holds.get(name)
            if kind == "settling":
                log.info("box %s: remediation %s", name, reason)
            if kind == old and not (kind is not None and self._reannounce_holds):
                continue
            if old is not None and kind != old:
                why = self._release_reason(name, old, st)
                log.info("box %s: %s hold released: %s", name, old, why)
                out.append(BoxReleased(name, now_s, old, why))
                del self._holds[name]
            if kind is not None:
                if kind in ("segment", "address_conflict", "engine_down"):
                    log.warning("box %s: automatic remediation deferred: %s", name, reason)
                out.append(BoxHeld(name, now_s, kind, segment, reason or ""))
                self._holds[name] = kind
        self._reannounce_holds = False
        return out

    def _release_reason(self, name: str, kind: str, st: freeze.BoxState) -> str:
        """Why BOX's hold of KIND ended, in words (recorded with BoxReleased)."""
        if st.state != State.FROZEN:
            return f"no longer frozen ({st.state})"
        if kind == "engine_down":
            return "the container engine answers again; judged alone"
        if kind == "address_conflict":
            return "one MAC answers for its addresses again; judged alone"
        member = self.correlator.members.get(name) if self.correlator is not None else None
        if member is None or self.correlator is None:
            return "judged alone"
        alive = self.correlator.life(member.segment, st.freeze_start_s if st.freeze_start_s is not None else 0.0)
        if kind == "segment":
            return (f"segment freeze of {member.segment} over: the segment answers again ({alive}); judged alone"
                    if alive else f"segment freeze of {member.segment} over; judged alone")
        return (f"the segment answers ({alive}); judged alone" if alive
                else "no other box of its segment failing any more; judged alone")

    def _finish(self, events: list[CycleEvent], now_s: float, started: float, unhealthy: tuple[str, ...],
                error: str | None = None, confirm: bool = False) -> CycleSummary:
        frozen = tuple(n for n, s in self.states.items() if s.state == State.FROZEN)
        events.append(CycleEnded(now_s, started, len(self.boxes), unhealthy, frozen, self.misfires, error, confirm))
        # Saved before the listeners hear of it: what status.json or InfluxDB announce is never ahead of the
        # state a restart resumes from (a kill -9 between the two used to restart a freeze status had shown).
        try:
            self._save()
        except OSError as exc:
            log.error("cannot save agent state in %s: %s", self.config.agent.state_dir, exc)
        self.bus.publish(CycleEvents(tuple(events)))   # a listener that raises is logged; the others still run
        self.cycles += 0 if confirm else 1
        return CycleSummary(now_s, time.monotonic() - started, len(self.boxes), unhealthy, frozen, len(events), error)

    # ---- the narrow methods remediation may call ------------------------------------------------

    def alert_witness(self, name: str) -> str | None:
        """An alert names box NAME: a second witness. Returns the box's state as the agent sees it after.

        A suspect box's freeze opens now (agent.core.freeze.open_by_alert: start = its first failing
        cycle, the run's layer, opened_by "alert"), under the cycle lock; its events (StateChanged,
        FreezeOpened, then correlation's SegmentFreezeChanged and holds) are published as one
        CycleEvents like a cycle's, without CycleEnded (no cycle ran), so the remediation service knows
        the freeze before the alert's request. Other states are returned as they are ("up", "frozen",
        "recovering", "stopped", "maintenance"); "never" when the box was never probed, None when it
        is not configured. The caller (agent.wiring.alert_handler) hands the state to
        remediations.Remediator.request (the alert decision).
        """
        with self._lock:
            st = self.states.get(name)
            if st is None:
                return None
            if st.last_time_s is None:
                return "never"
            if st.state != State.SUSPECT:
                return st.state
            now_s = self.clock()
            after, opened = freeze.open_by_alert(st, now_s)
            self.states[name] = after
            # Confirmation passes wrote no `box` point: their times are not rewritten (nothing to rewrite).
            passes = self._confirm_times.pop(name, set())
            events: list[CycleEvent] = []
            for ev in opened:
                if isinstance(ev, FreezeOpened):
                    ev = FreezeOpened(ev.box, ev.time_s, ev.start_s, ev.layer,
                                      tuple(t for t in ev.suspect_cycle_times if t not in passes), ev.opened_by)
                    log.warning("box %s: FROZEN (%s) since %s: an alert confirms what the probes see", name, ev.layer,
                                _iso(ev.start_s))
                events.append(ev)
            events.extend(self._correlate(events, now_s))
            events.extend(self._holds_of(now_s))
            try:   # saved before the listeners hear of it, as a cycle's (a restart resumes this freeze)
                self._save()
            except OSError as exc:
                log.error("cannot save agent state in %s: %s", self.config.agent.state_dir, exc)
            self.bus.publish(CycleEvents(tuple(events)))
            return after.state

    # ---- reads ----------------------------------------------------------------------------------

    def reprobe(self, name: str) -> bool:
        """Probe one box now (agent.prober.Prober.reprobe: remediation's verification asks the prober itself)."""
        return self.prober.reprobe(name)

    def known_macs(self, name: str) -> dict[str, str]:
        """address -> the MAC last seen answering ARP/NDP for box NAME (empty without MAC memory)."""
        return self.macwatch.last(name) if self.macwatch is not None else {}

    def close(self) -> None:
        """Save state (the end of `run`)."""
        with self._lock:
            self._save()


def _segment_event(sf: corr.SegmentFreeze, now_s: float) -> SegmentFreezeChanged:
    return SegmentFreezeChanged(now_s, sf.segment, sf.site, sf.start_s, tuple(sf.boxes), sf.layer, sf.open,
                                now_s - sf.start_s if sf.open else (sf.duration_s or 0.0), sf.reason)


def _log_event(ev: Any) -> None:
    if isinstance(ev, StateChanged):
        log.info("box %s: %s -> %s (%s)", ev.box, ev.old, ev.new, ev.layer)
    elif isinstance(ev, FreezeOpened):
        log.warning("box %s: FROZEN (%s) since %s", ev.box, ev.layer, _iso(ev.start_s))
    elif isinstance(ev, FreezeLayerChanged):
        log.warning("box %s: freeze deepened %s -> %s", ev.box, ev.old_layer, ev.new_layer)
    elif isinstance(ev, FreezeClosed):
        log.warning("box %s: freeze over after %.1f s (%s)", ev.box, ev.duration_s, ev.layer)
    elif isinstance(ev, DegradedChanged):
        log.warning("box %s: %s (%s)", ev.box, "DEGRADED" if ev.degraded else "no longer degraded", ev.reason)


def _iso(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
