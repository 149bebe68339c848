"""Remediation listener: hands freezes and holds to the remediation service (remediations.RemediationService)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from agent.core.events import BoxHeld, BoxObserved, BoxReleased, CycleEnded
from agent.listeners import CycleEvent

log = logging.getLogger(__name__)


class RemediationSink(Protocol):
    """What this listener needs of remediations.RemediationService."""

    def on_freeze_state(self, box: str, state: str, layer: str, held: bool = False) -> None: ...


class RemediationListener:
    """After the whole cycle (so a hold found this cycle applies to a freeze found this cycle), feeds every box.

    on_held(box, reason, layer, time_s): called once when a hold starts for a frozen box (the
    wiring records it as a deferred `remediation` point).
    """

    name = "remediation"

    def __init__(self, service: RemediationSink,
                 on_held: Callable[[str, str, str, float], None] | None = None) -> None:
        self.service = service
        self.on_held = on_held
        self._state: dict[str, tuple[str, str]] = {}   # box -> (freeze state, layer)
        self._held: dict[str, str] = {}                # box -> hold kind

    def on_events(self, events: Sequence[CycleEvent]) -> None:
        """Update states and holds from the cycle, then feed the service once per box."""
        ended = False
        for ev in events:
            if isinstance(ev, BoxObserved):
                self._state[ev.box] = (ev.state, ev.state_layer)
            elif isinstance(ev, BoxHeld):
                self._held[ev.box] = ev.kind
                if ev.kind == "segment" and self.on_held is not None:
                    self.on_held(ev.box, ev.reason, self._state.get(ev.box, ("frozen", "none"))[1], ev.time_s)
            elif isinstance(ev, BoxReleased):
                self._held.pop(ev.box, None)
            elif isinstance(ev, CycleEnded):
                ended = ev.error is None
        if not ended:
            return
        for box, (state, layer) in self._state.items():
            try:
                self.service.on_freeze_state(box, state, layer, held=box in self._held)
            except Exception:  # noqa: BLE001 - remediation trouble never stops probing
                log.exception("box %s: remediation feed failed", box)
