"""Listeners: the edges that consume what is published on the bus (agent.bus) and own every way out.

The pipeline (agent.pipeline) publishes the events of one cycle as one message (CycleEvents),
after every box was judged and correlation had its say, so a listener sees a freeze together
with the hold that applies to it. The services around it publish remediation records, engine
events and box-set changes as they happen. A listener never feeds events back: data flows one
way. One that raises is logged and skipped; the others still run (APScheduler's listener rule).
Every write to storage is the points listener's, every metric the metrics listener's.

Adding one: a class with `name`, `subscriptions()` (message type -> handler) and, for the cycle,
`on_events(events)`, in a module here; built and added to the bus in agent.wiring.build_listeners.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from agent.core.events import CycleEvent, CycleEvents

__all__ = ["CycleEvent", "CycleEvents", "CycleListener", "Listener"]


class Listener(Protocol):
    """Consumes one cycle's events (and what else it subscribes to); must not block for long."""

    name: str

    def subscriptions(self) -> Mapping[type, Callable[[Any], None]]:
        """message type -> the handler of one message of it (agent.bus.Bus.add subscribes them once)."""
        ...

    def on_events(self, events: Sequence[CycleEvent]) -> None:
        """The events of one cycle, in order, the last one a CycleEnded."""
        ...


class CycleListener:
    """Base of the listeners: subscriptions() maps CycleEvents to on_events; a subclass adds its other kinds.

    e.g. `return {**super().subscriptions(), ActionRecord: self.on_record}`.
    """

    name = "listener"

    def subscriptions(self) -> Mapping[type, Callable[[Any], None]]:
        """CycleEvents -> on_events (its events)."""
        return {CycleEvents: self._on_cycle}

    def _on_cycle(self, message: CycleEvents) -> None:
        self.on_events(message.events)

    def on_events(self, events: Sequence[CycleEvent]) -> None:
        """The events of one cycle, in order, the last one a CycleEnded."""
        raise NotImplementedError
