"""Listeners: the edges that consume a cycle's events (agent.core.events) in order.

The pipeline (agent.pipeline) hands every listener the events of one cycle in one
call, after every box was judged and correlation had its say, so a listener sees a
freeze together with the hold that applies to it. A listener never feeds events back:
data flows one way. One that raises is logged and skipped; the others still run
(APScheduler's listener rule).

Adding one: a class with `name` and `on_events(events)` in a module here, built in
agent.wiring.build_listeners.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias

from agent.core.events import CycleEnded, Event, SegmentFreezeChanged

CycleEvent: TypeAlias = Event | SegmentFreezeChanged | CycleEnded


class Listener(Protocol):
    """Consumes one cycle's events; must not block for long (hand slow work to a thread)."""

    name: str

    def on_events(self, events: Sequence[CycleEvent]) -> None:
        """The events of one cycle, in order, the last one a CycleEnded."""
        ...
