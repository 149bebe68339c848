"""Evidence listener: asks the forensics collector (agent.forensics.evidence) for a bundle when a freeze opens and closes."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from agent.core.events import BoxObserved, BoxSetChanged, FreezeClosed, FreezeOpened
from agent.forensics.evidence import BoxRef
from agent.listeners import CycleEvent, CycleListener


class EvidenceSink(Protocol):
    """What this listener needs of agent.forensics.evidence.EvidenceCollector (it queues; never blocks long)."""

    def freeze_opened(self, box: BoxRef, start_s: float, layer: str | None = None, results: Iterable[Any] = (),
                      known_macs: Mapping[str, str] | None = None) -> str: ...

    def freeze_closed(self, box: BoxRef, start_s: float, end_s: float, results: Iterable[Any] = (),
                      layer: str | None = None) -> str: ...


class EvidenceListener(CycleListener):
    """One bundle per freeze: opened at detection (onset capture, tables, Docker state), completed at recovery.

    boxes: name -> BoxRef; known_macs(box): address -> the MAC last seen answering (agent.core.macwatch);
    site: [agent] site, for the BoxRef of boxes discovery adds.
    """

    name = "evidence"

    def __init__(self, collector: EvidenceSink, boxes: Mapping[str, BoxRef],
                 known_macs: Callable[[str], Mapping[str, str]] | None = None, site: str | None = None) -> None:
        self.collector = collector
        self.boxes = dict(boxes)
        self.known_macs = known_macs
        self.site = site

    def subscriptions(self) -> Mapping[type, Callable[[Any], None]]:
        """The cycle's events; box-set changes (the boxes bundles are made for)."""
        return {**super().subscriptions(), BoxSetChanged: self.on_box_set}

    def on_box_set(self, ev: BoxSetChanged) -> None:
        """Discovery changed the box set: bundles for the new set."""
        self.boxes = {b.name: BoxRef.from_config(b, self.site) for b in ev.boxes}

    def on_events(self, events: Sequence[CycleEvent]) -> None:
        """Queue a bundle for every FreezeOpened and complete it for every FreezeClosed of the cycle."""
        results: dict[str, tuple[Any, ...]] = {}
        for ev in events:
            if isinstance(ev, BoxObserved):
                results[ev.box] = ev.results
            elif isinstance(ev, FreezeOpened) and ev.box in self.boxes:
                known = self.known_macs(ev.box) if self.known_macs is not None else None
                self.collector.freeze_opened(self.boxes[ev.box], ev.start_s, ev.layer, results.get(ev.box, ()),
                                             known_macs=known)
            elif isinstance(ev, FreezeClosed) and ev.box in self.boxes:
                self.collector.freeze_closed(self.boxes[ev.box], ev.start_s, ev.end_s, results.get(ev.box, ()),
                                             layer=ev.layer)
