"""The one door out: a synchronous bus that routes each published message to the handlers of its type.

Everything that leaves the pipeline or the services around it is a message published here:
the cycle's events (agent.core.events.CycleEvents, one message per cycle), remediation records
(remediations.model.ActionRecord), engine events and resync gaps
(remediations.model.ContainerEventRecord) and box-set changes (agent.core.events.BoxSetChanged).
Listeners subscribe once, when the wiring adds them (`Bus.add`): each says which message types
it takes (`subscriptions()`). Delivery is synchronous, in the publisher's thread and in the order
the handlers subscribed, so nothing waits for a cycle and a stopped probe loop stops nothing but
the cycle's own events; a handler that raises is logged and the others still run (APScheduler's
listener rule). Handlers of different types may run in different threads at once: a listener
whose handlers share state guards it.

Adding a message kind: a frozen dataclass (agent/core/events.py for the agent's own), one entry in
the `subscriptions()` of each listener that takes it, and a `publish` where it happens.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

M = TypeVar("M")
Handler = Callable[[Any], None]


class Subscriber(Protocol):
    """A listener: a name and the handlers of the message types it takes (type -> handler)."""

    name: str

    def subscriptions(self) -> Mapping[type, Handler]:
        """message type -> the handler that takes one message of it."""
        ...


class Bus:
    """Routes a message to the handlers subscribed to its type (or a base of it), synchronously, in order."""

    def __init__(self, listeners: Iterable[Subscriber] = ()) -> None:
        self._handlers: dict[type, list[tuple[str, Handler]]] = {}
        self._listeners: list[Subscriber] = []
        for listener in listeners:
            self.add(listener)

    def add(self, listener: Subscriber) -> None:
        """Subscribe a listener to every message type of its subscriptions(), once; ValueError when added twice."""
        if any(x is listener for x in self._listeners):
            raise ValueError(f"bus: listener {listener.name!r} is already subscribed")
        self._listeners.append(listener)
        for kind, handler in listener.subscriptions().items():
            self.subscribe(kind, handler, name=listener.name)

    def subscribe(self, kind: type[M], handler: Callable[[M], None], *, name: str) -> None:
        """Call HANDLER with every message of type KIND (subclasses included); NAME says who, in logs."""
        self._handlers.setdefault(kind, []).append((name, handler))

    def publish(self, message: object) -> None:
        """Hand MESSAGE to its handlers, in subscription order; never raises for a handler's error."""
        for name, handler in self._route(type(message)):
            try:
                handler(message)
            except Exception:  # one bad listener never stops the others or the publisher
                log.exception("listener %s failed on %s", name, type(message).__name__)

    def _route(self, kind: type) -> list[tuple[str, Handler]]:
        out: list[tuple[str, Handler]] = []
        for base in kind.__mro__:
            out.extend(self._handlers.get(base, ()))
        return out

    @property
    def listeners(self) -> list[Subscriber]:
        """The listeners added, in order."""
        return list(self._listeners)

    def subscribers(self) -> dict[str, list[str]]:
        """message type name -> the names subscribed to it, in order (what the wiring built; for tests and logs)."""
        return {kind.__name__: [name for name, _ in handlers] for kind, handlers in self._handlers.items()}
