"""Remediation listener: hands freeze events and holds to the remediation service (remediations.RemediationService)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from agent.core.events import (
    BoxHeld,
    BoxObserved,
    BoxReleased,
    CycleEnded,
    FreezeClosed,
    FreezeLayerChanged,
    FreezeOpened,
    State,
    StateChanged,
)
from agent.listeners import CycleEvent, CycleListener

log = logging.getLogger(__name__)


class RemediationSink(Protocol):
    """What this listener needs of remediations.RemediationService."""

    def batch(self) -> AbstractContextManager[None]: ...

    def freeze_opened(self, box: str, layer: str, start_s: float, opened_by: str = "probes") -> None: ...

    def freeze_layer_changed(self, box: str, layer: str) -> None: ...

    def freeze_closed(self, box: str) -> None: ...

    def recovering(self, box: str) -> None: ...

    def relapsed(self, box: str) -> None: ...

    def held(self, box: str, kind: str, reason: str) -> None: ...

    def maintenance(self, box: str, reason: str | None) -> None: ...

    def released(self, box: str) -> None: ...

    def tick(self) -> None: ...

    def publish_status(self) -> None: ...


class RemediationListener(CycleListener):
    """Applies one cycle's freezes and holds to the service in one batch, then lets it decide (tick).

    A freeze the service does not know yet (the agent restarted with a freeze open) is handed over
    from BoxObserved as opened; holds are applied with the freezes, so a hold found this cycle
    applies to a freeze found this cycle.
    """

    name = "remediation"

    def __init__(self, service: RemediationSink) -> None:
        self.service = service
        self._open: dict[str, float] = {}   # box -> start_s of the freeze the service was told about
        self._maintenance: dict[str, str] = {}   # box -> the maintenance reason the service was told about

    def on_events(self, events: Sequence[CycleEvent]) -> None:
        """Hand the cycle's freeze events and holds over, tick (unless the sweep failed), publish the status."""
        end = next((ev for ev in events if isinstance(ev, CycleEnded)), None)
        with self.service.batch():
            for ev in events:
                try:
                    self._apply(ev)
                except Exception:  # remediation trouble never stops probing
                    log.exception("box %s: remediation feed failed on %s", getattr(ev, "box", "?"),
                                  type(ev).__name__)
        if end is not None and end.error is None:
            try:
                self.service.tick()
            except Exception:
                log.exception("remediation tick failed")
        if end is not None:
            try:   # status.json (written at the end of this cycle's delivery) shows it
                self.service.publish_status()
            except Exception:
                log.exception("remediation status failed")

    def _apply(self, ev: CycleEvent) -> None:
        if isinstance(ev, BoxObserved) and not ev.confirm:
            # Every cycle says whether the box is in maintenance, so a restarted agent's service learns it too.
            reason = ev.maintenance.reason if ev.maintenance is not None else None
            if reason != self._maintenance.get(ev.box):
                self.service.maintenance(ev.box, reason)
                if reason is None:
                    self._maintenance.pop(ev.box, None)
                else:
                    self._maintenance[ev.box] = reason
        if isinstance(ev, FreezeOpened):
            self._open[ev.box] = ev.start_s
            self.service.freeze_opened(ev.box, ev.layer, ev.start_s, ev.opened_by)
        elif isinstance(ev, FreezeLayerChanged):
            self.service.freeze_layer_changed(ev.box, ev.new_layer)
        elif isinstance(ev, FreezeClosed):
            self._open.pop(ev.box, None)
            self.service.freeze_closed(ev.box)
        elif isinstance(ev, StateChanged) and ev.new == State.RECOVERING:
            self.service.recovering(ev.box)
        elif isinstance(ev, StateChanged) and ev.old == State.RECOVERING and ev.new == State.FROZEN:
            self.service.relapsed(ev.box)
        elif isinstance(ev, BoxHeld):
            self.service.held(ev.box, ev.kind, ev.reason)
        elif isinstance(ev, BoxReleased):
            self.service.released(ev.box)
        elif (isinstance(ev, BoxObserved) and ev.state == State.FROZEN and ev.freeze_start_s is not None
              and self._open.get(ev.box) != ev.freeze_start_s):
            # A freeze resumed after a restart: no FreezeOpened for it, the service learns it here.
            self._open[ev.box] = ev.freeze_start_s
            self.service.freeze_opened(ev.box, ev.state_layer, ev.freeze_start_s)
