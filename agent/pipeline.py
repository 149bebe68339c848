"""The agent's main job: probe every box each cycle, track freezes, store points, feed remediation.

One cycle, in order (data flows one way):
  sweep all targets -> verdict per box -> freeze state machine -> events
  -> points (probe, box, freeze, mac_change, segment_freeze, agent) -> storage
  -> remediation (after correlation decided which boxes are held)
State (freeze states, MAC memory, correlation, evidence paths) is saved
atomically every cycle, so a restart (even after kill -9) continues an open
freeze instead of opening a new one.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import probes
from agent import atomic
from agent.core import freeze
from agent.core.config import BoxConfig, Config
from agent.core.cycle import Verdict, classify, plan_cycle, verdicts, box_targets
from agent.core.events import FreezeClosed, FreezeLayerChanged, FreezeOpened, StateChanged
from agent.storage import points as P
from agent.storage.store import Storage

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
FREEZE_STATE_FILE = "freeze-state.json"
AGENT_STATE_FILE = "agent-state.json"


@dataclass(frozen=True, slots=True)
class CycleSummary:
    """What one cycle did, for logs, the live view and tests."""

    time_s: float
    cycle_s: float
    boxes: int
    unhealthy: tuple[str, ...]
    frozen: tuple[str, ...]
    points: int
    error: str | None = None


class Agent:
    """Everything one cycle needs; the edges (sweep, clock, storage, remediation, forensics) are injected."""

    def __init__(self, config: Config, storage: Storage, *,
                 sweep: Callable[..., list[probes.ProbeResult]] = probes.sweep,
                 clock: Callable[[], float] = time.time,
                 remediation: Any = None, recorder: Any = None, evidence: Any = None,
                 correlator: Any = None, macwatch: Any = None) -> None:
        self.config = config
        self.storage = storage
        self.sweep = sweep
        self.clock = clock
        self.remediation = remediation
        self.recorder = recorder
        self.evidence = evidence
        self.correlator = correlator
        self.macwatch = macwatch
        self.site = config.agent.site
        self.host = socket.gethostname()
        self.boxes: dict[str, BoxConfig] = {b.name: b for b in config.boxes}
        self.plan = plan_cycle(config.boxes)
        self.misfires = 0
        self.cycles = 0
        self._lock = threading.Lock()
        state_dir = config.agent.state_dir
        os.makedirs(state_dir, exist_ok=True)
        self._freeze_path = os.path.join(state_dir, FREEZE_STATE_FILE)
        self._agent_path = os.path.join(state_dir, AGENT_STATE_FILE)
        self.status_path = os.path.join(state_dir, STATUS_FILE)
        saved = freeze.load_state(self._freeze_path)
        self.states = {name: saved.get(name, freeze.initial(name)) for name in self.boxes}
        self._since: dict[str, float] = {}
        self._evidence_paths: dict[str, str] = {}
        self._held_noted: set[str] = set()
        self._last: dict[str, Verdict] = {}
        self._restore_agent_state()
        resumed = [n for n, s in self.states.items() if s.freeze_open]
        if resumed:
            log.info("resuming open freezes of %s", ", ".join(sorted(resumed)))

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
        self._since = {k: float(v) for k, v in (data.get("since") or {}).items() if k in self.boxes}
        self._evidence_paths = {k: v for k, v in (data.get("evidence") or {}).items() if k in self.boxes}
        self._held_noted = set(data.get("held_noted") or ()) & set(self.boxes)
        if self.macwatch is not None and data.get("macwatch"):
            from agent.core.macwatch import MacWatch

            self.macwatch = MacWatch.from_json(data["macwatch"])
        if self.correlator is not None and data.get("correlation"):
            from agent.core.correlation import Correlator

            try:
                self.correlator = Correlator.from_json(data["correlation"], self.correlator.settings,
                                                       self.correlator.members)
            except ValueError as exc:
                log.warning("%s; correlation starts afresh", exc)

    def _save(self) -> None:
        freeze.save_state(self._freeze_path, self.states)
        payload: dict[str, Any] = {"version": 1, "since": self._since, "evidence": self._evidence_paths,
                                   "held_noted": sorted(self._held_noted)}
        if self.macwatch is not None:
            payload["macwatch"] = self.macwatch.to_json()
        if self.correlator is not None:
            payload["correlation"] = self.correlator.to_json()
        atomic.write_json(self._agent_path, payload)

    # ---- one cycle -----------------------------------------------------------------------------

    def run_cycle(self) -> CycleSummary:
        """Probe every box once and act on the results; never raises for a box, probe or sink error."""
        with self._lock:  # the scheduler never overlaps cycles; this guards manual calls too
            return self._cycle()

    def _cycle(self) -> CycleSummary:
        started = time.monotonic()
        now_s = self.clock()
        points: list[P.Point] = []
        record = self.recorder.record if self.recorder is not None else None
        try:
            results = self.sweep(list(self.plan.targets), self.config.agent.timeout_s,
                                 self.config.agent.interface, record)
        except Exception as exc:  # noqa: BLE001 - a broken probe must not stop the agent; no verdicts this cycle
            log.exception("cycle: sweep failed, no box is judged this cycle")
            return self._finish(now_s, started, points, (), error=f"sweep failed: {type(exc).__name__}: {exc}")
        finally:
            if self.recorder is not None:
                self.recorder.end_cycle()

        judged = verdicts(self.plan, results, now_s)
        for v in judged:
            try:
                self._box_cycle(v, now_s, points)
            except Exception:  # noqa: BLE001 - one misbehaving box never stops the cycle
                log.exception("box %s: cycle failed for this box", v.box)
        self._feed_remediation(now_s, points)
        return self._finish(now_s, started, points, judged)

    def _box_cycle(self, v: Verdict, now_s: float, points: list[P.Point]) -> None:
        box = self.boxes[v.box]
        kind, site = box.kind, self.site
        for r in v.results:
            points.append(P.probe_point(box.name, kind, site, r.probe, r.target, r.port, r.ok, r.rtt_ms,
                                        r.error, r.mac, r.time_s))
        if self.macwatch is not None:
            for change in self.macwatch.observe(box.name, v.results):
                log.warning("box %s: %s answered from MAC %s (was %s)", box.name, change.address, change.new,
                            change.old)
                points.append(P.mac_change_point(box.name, kind, site, change.address, change.old, change.new,
                                                 change.time_s))
        before = self.states[box.name]
        after, events = freeze.step(before, freeze.Verdict(v.healthy, v.layer), now_s, self.config.freeze)
        self.states[box.name] = after
        self._last[box.name] = v
        decision = freeze.up_decision(before, after)
        points.append(P.box_point(box.name, kind, site, decision.up, after.state, v.layer, now_s))
        points.extend(P.box_down_rewrite(box.name, kind, site, t) for t in decision.rewrite_down_times)
        for ev in events:
            self._on_event(box, ev, v, points)
        if after.freeze_open and not any(isinstance(ev, (FreezeOpened, FreezeLayerChanged)) for ev in events):
            # An open freeze's point is rewritten every cycle, so its duration_s is "so far", not "at detection".
            points.append(P.freeze_point(box.name, kind, site, after.freeze_start_s, True, after.layer,
                                         now_s - after.freeze_start_s, self._evidence_paths.get(box.name)))

    def _on_event(self, box: BoxConfig, ev: Any, v: Verdict, points: list[P.Point]) -> None:
        kind, site = box.kind, self.site
        if isinstance(ev, StateChanged):
            self._since[box.name] = ev.time_s
            log.info("box %s: %s -> %s (%s)", box.name, ev.old, ev.new, ev.layer)
        elif isinstance(ev, FreezeOpened):
            path = None
            if self.evidence is not None:
                from agent.forensics.evidence import BoxRef

                known = self.macwatch.last(box.name) if self.macwatch is not None else None
                path = self.evidence.freeze_opened(BoxRef.from_config(box, site), ev.start_s, ev.layer, v.results,
                                                   known_macs=known)
                self._evidence_paths[box.name] = path
            log.warning("box %s: FROZEN (%s) since %s", box.name, ev.layer, _iso(ev.start_s))
            points.append(P.freeze_point(box.name, kind, site, ev.start_s, True, ev.layer, ev.time_s - ev.start_s,
                                         path))
            if self.correlator is not None:
                for sf in self.correlator.freeze_started(box.name, ev.start_s, ev.layer):
                    points.append(P.segment_freeze_point(sf.segment, sf.site, sf.start_s, sf.boxes, sf.layer, True,
                                                         ev.time_s - sf.start_s))
        elif isinstance(ev, FreezeLayerChanged):
            log.warning("box %s: freeze deepened %s -> %s", box.name, ev.old_layer, ev.new_layer)
            points.append(P.freeze_point(box.name, kind, site, ev.start_s, True, ev.new_layer,
                                         ev.time_s - ev.start_s, self._evidence_paths.get(box.name)))
        elif isinstance(ev, FreezeClosed):
            log.warning("box %s: freeze over after %.1f s (%s)", box.name, ev.duration_s, ev.layer)
            path = self._evidence_paths.pop(box.name, None)
            if self.evidence is not None and path is not None:
                from agent.forensics.evidence import BoxRef

                self.evidence.freeze_closed(BoxRef.from_config(box, site), ev.start_s, ev.end_s, v.results,
                                            layer=ev.layer)
            points.append(P.freeze_point(box.name, kind, site, ev.start_s, False, ev.layer, ev.duration_s, path))
            self._held_noted.discard(box.name)
            if self.correlator is not None:
                for sf in self.correlator.freeze_ended(box.name, ev.end_s):
                    points.append(P.segment_freeze_point(sf.segment, sf.site, sf.start_s, sf.boxes, sf.layer,
                                                         False, sf.duration_s or 0.0))

    def _feed_remediation(self, now_s: float, points: list[P.Point]) -> None:
        """After every box is judged, so a segment freeze found this cycle holds all of its boxes."""
        if self.remediation is None:
            return
        suspect = [n for n, s in self.states.items() if s.state == "suspect"]
        for name, st in self.states.items():
            held = self.correlator.holds(name) if self.correlator is not None else None
            settling = (self.correlator.settling(name, suspect)
                        if self.correlator is not None and st.state == "frozen" and not held else None)
            if settling:
                log.info("box %s: remediation %s", name, settling)
            box = self.boxes[name]
            # Name the step that would have run: an l4 freeze (ping answers) skips reconnect_network.
            steps = [a for a in box.remediate if not (st.layer == "l4" and a == "reconnect_network")]
            if held and steps and st.state == "frozen" and name not in self._held_noted:
                self._held_noted.add(name)
                log.warning("box %s: automatic remediation deferred: %s", name, held)
                dry_run = self.config.remediation.dry_run or box.dry_run
                points.append(P.remediation_point(name, box.kind, self.site, steps[0], "auto", False, False,
                                                  dry_run, 0.0, f"deferred: {held}", now_s, deferred=True))
            try:
                self.remediation.on_freeze_state(name, st.state, st.layer, held=bool(held or settling))
            except Exception:  # noqa: BLE001 - remediation trouble never stops probing
                log.exception("box %s: remediation feed failed", name)

    def _finish(self, now_s: float, started: float, points: list[P.Point], judged: Sequence[Verdict],
                error: str | None = None) -> CycleSummary:
        self.storage.write(points)
        # cycle_s covers the whole cycle, the write of its points included; the agent point goes last.
        cycle_s = time.monotonic() - started
        c = self.storage.counters()
        self.storage.write([P.agent_point(self.site, now_s, cycle_s=cycle_s, misfires=self.misfires,
                                          spool_points=c.spool_points, write_errors=c.write_errors,
                                          dropped=c.dropped, rejected=c.rejected, host=self.host,
                                          boxes=len(self.boxes))])
        self.cycles += 1
        try:
            self._save()
        except OSError as exc:
            log.error("cannot save agent state in %s: %s", self.config.agent.state_dir, exc)
        try:
            self.write_status(now_s)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.status_path, exc)
        return CycleSummary(now_s, cycle_s, len(self.boxes),
                            tuple(v.box for v in judged if not v.healthy),
                            tuple(n for n, s in self.states.items() if s.state == "frozen"), len(points) + 1, error)

    # ---- status for `vobox-agent status` and the live view ----------------------------------------

    def status(self, now_s: float) -> dict[str, Any]:
        """The status.json payload (see docs/operator-guide.md)."""
        rem = self.remediation.status() if self.remediation is not None else {}
        cap = self.config.remediation.max_per_box_per_hour
        boxes: dict[str, Any] = {}
        for name, box in self.boxes.items():
            st = self.states[name]
            rtt: dict[str, float] = {}
            last = self._last.get(name)
            for r in (last.results if last else ()):
                if r.ok and r.rtt_ms is not None and r.probe not in rtt:
                    rtt[r.probe] = round(r.rtt_ms, 3)
            rs = rem.get(name)
            boxes[name] = {
                "kind": box.kind, "state": st.state,
                "layer": st.layer if st.state != "up" else (last.layer if last else "none"),
                "since_s": self._since.get(name),
                "rtt_ms": rtt,
                "open_freeze": ({"start_s": st.freeze_start_s, "layer": st.layer,
                                 "evidence": self._evidence_paths.get(name)} if st.freeze_open else None),
                "remediation": ({"budget_left": max(0, cap - rs.actions_last_hour), "halted": rs.capped is not None,
                                 "reason": rs.capped or rs.busy} if rs is not None else None),
            }
        return {"version": 1, "updated_s": now_s, "interval_s": self.config.agent.interval_s, "site": self.site,
                "boxes": boxes}

    def write_status(self, now_s: float) -> None:
        """Write state_dir/status.json atomically."""
        atomic.write_json(self.status_path, self.status(now_s))

    # ---- helpers for remediation -------------------------------------------------------------

    def reprobe(self, name: str) -> bool:
        """Probe one box now (remediation's verification); True when every probe answers."""
        box = self.boxes[name]
        results = self.sweep(box_targets(box), self.config.agent.timeout_s, self.config.agent.interface, None)
        return classify(results)[0]

    def close(self) -> None:
        """Flush storage and save state (the end of `run`)."""
        with self._lock:
            self.storage.flush()
            self._save()


def _iso(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
