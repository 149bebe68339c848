"""Correlation: many boxes of one segment freezing together is a segment outage; hold box remediation while it lasts.

Pure: the caller feeds freeze starts and ends (with their times) and asks
`holds(box)` before remediating. A segment is an L2 domain as the probing host sees it:
the interface and on-link prefix it reaches the box through (containers on a macvlan
network and VMs on the same wire and subnet share one), unless the box names its
`segment`; without a route, its Docker network, else the site.

Only l2 and l3 freezes count toward a segment freeze: a box whose ping answers (l4, l7)
proves that the segment works.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from probes import LAYERS

log = logging.getLogger(__name__)

# The layers whose freezes can mean the segment is down (ARP/NDP or ping unanswered).
SEGMENT_LAYERS: tuple[str, ...] = ("l2", "l3")


@dataclass(frozen=True, slots=True)
class CorrelationSettings:
    """The [correlation] section (same fields as agent.core.config.CorrelationConfig)."""

    enabled: bool = True
    min_boxes: int = 3
    min_share: float = 0.5
    window_s: float = 60.0
    hold_remediation: bool = True

    @classmethod
    def from_config(cls, section: Any) -> "CorrelationSettings":
        """From agent.core.config.CorrelationConfig (or anything with these attributes)."""
        return cls(enabled=section.enabled, min_boxes=section.min_boxes, min_share=section.min_share,
                   window_s=section.window_s, hold_remediation=section.hold_remediation)


@dataclass(frozen=True, slots=True)
class Membership:
    """Which segment (and site) a box belongs to."""

    segment: str
    site: str | None = None


@dataclass(frozen=True, slots=True)
class SegmentFreeze:
    """Boxes of one segment frozen together; `open` while the boxes still down fail together by the segment rule.

    still_down: when closed, the boxes whose own freezes go on (each judged alone from then on).
    """

    segment: str
    site: str | None
    boxes: tuple[str, ...]
    layer: str
    start_s: float
    open: bool = True
    end_s: float | None = None
    duration_s: float | None = None
    still_down: tuple[str, ...] = ()


@dataclass(slots=True)
class _Open:
    freeze: SegmentFreeze
    down: set[str] = field(default_factory=set)
    last_end_s: float | None = None


def _lowest_layer(layers: Iterable[str | None]) -> str:
    known = [l for l in layers if l in LAYERS]
    return min(known, key=LAYERS.index) if known else "none"


def l2_segment(address: str, route_of: Callable[[str], Any]) -> str | None:
    """The L2 domain the host reaches ADDRESS through: "IFACE PREFIX" on-link, "IFACE via GATEWAY" routed.

    route_of(address) -> probes.routing.RouteEntry-like (interface, network, gateway) or None.
    """
    entry = route_of(address)
    if entry is None:
        return None
    if entry.gateway:
        return f"{entry.interface} via {entry.gateway}"
    return f"{entry.interface} {entry.network}"


def memberships_from_config(config: Any, route_of: Callable[[str], Any] | None = None) -> dict[str, Membership]:
    """box name -> Membership: the box's `segment`, else its L2 domain (route_of), else network, else site."""
    site = config.agent.site
    out = {}
    for b in config.boxes:
        segment = b.segment
        if segment is None and route_of is not None:
            segment = next((s for s in (l2_segment(a, route_of) for a in b.addresses()) if s), None)
        out[b.name] = Membership(segment=segment or b.segment_name(site), site=site)
    return out


class Correlator:
    """Tells a segment freeze from box freezes, from the freeze starts and ends it is fed."""

    def __init__(self, settings: CorrelationSettings, members: Mapping[str, Membership]) -> None:
        self.settings = settings
        self.members = dict(members)
        self._frozen: dict[str, tuple[float, str | None]] = {}   # box -> (freeze start_s, layer)
        self._open: dict[str, _Open] = {}                       # segment -> open segment freeze

    def segment_size(self, segment: str) -> int:
        """Configured boxes in segment."""
        return sum(1 for m in self.members.values() if m.segment == segment)

    def _cluster(self, segment: str, around_s: float) -> list[str]:
        """The largest set of this segment's frozen boxes whose starts fit in one window containing around_s."""
        starts = sorted((s, b) for b, (s, _) in self._frozen.items()
                        if b in self.members and self.members[b].segment == segment)
        best: list[str] = []
        w = self.settings.window_s
        for left, _ in starts:
            if not (left <= around_s <= left + w):
                continue
            inside = [b for s, b in starts if left <= s <= left + w]
            if len(inside) > len(best):
                best = inside
        return best

    def _enough(self, segment: str, n: int) -> bool:
        if n >= self.settings.min_boxes:
            return True
        size = self.segment_size(segment)
        # The share rule needs at least two boxes: one box alone is a box freeze.
        return n >= 2 and size > 0 and n / size >= self.settings.min_share

    def freeze_started(self, box: str, start_s: float, layer: str | None = None) -> list[SegmentFreeze]:
        """A box's freeze began at start_s (call at detection); returns a segment freeze opened or grown by it."""
        member = self.members.get(box)
        if member is None:
            log.debug("correlation: box %s is not configured; ignored", box)
            return []
        if layer is not None and layer not in SEGMENT_LAYERS:
            return []  # its ping answers: the segment works (a deeper layer later calls again)
        self._frozen[box] = (start_s, layer)
        if not self.settings.enabled:
            return []
        current = self._open.get(member.segment)
        if current is not None:
            sf = current.freeze
            current.down.add(box)
            if box in sf.boxes and _lowest_layer([sf.layer, layer]) == sf.layer:
                return []
            current.freeze = replace(sf, boxes=tuple(sf.boxes) + ((box,) if box not in sf.boxes else ()),
                                     layer=_lowest_layer([sf.layer, layer]))
            log.info("correlation: box %s joins the segment freeze of %s (%d boxes)", box, member.segment,
                     len(current.freeze.boxes))
            return [current.freeze]
        cluster = self._cluster(member.segment, start_s)
        if not self._enough(member.segment, len(cluster)):
            return []
        cluster.sort(key=lambda b: (self._frozen[b][0], b))
        sf = SegmentFreeze(segment=member.segment, site=member.site, boxes=tuple(cluster),
                           layer=_lowest_layer(self._frozen[b][1] for b in cluster),
                           start_s=min(self._frozen[b][0] for b in cluster))
        self._open[member.segment] = _Open(freeze=sf, down=set(cluster))
        log.warning("correlation: segment freeze of %s: %d of %d boxes froze within %g s (%s)", member.segment,
                    len(cluster), self.segment_size(member.segment), self.settings.window_s, ", ".join(cluster))
        return [sf]

    def freeze_ended(self, box: str, end_s: float) -> list[SegmentFreeze]:
        """A box's freeze ended at end_s; returns the segment freeze closed by it (all its boxes up again)."""
        self._frozen.pop(box, None)
        member = self.members.get(box)
        if member is None:
            return []
        current = self._open.get(member.segment)
        if current is None or box not in current.freeze.boxes:
            return []
        current.down.discard(box)
        current.last_end_s = end_s if current.last_end_s is None else max(current.last_end_s, end_s)
        if current.down and self._enough(member.segment, len(current.down)):
            return []
        # The boxes still down no longer fail together by the segment rule: the segment's cause is
        # over, each of them is a box freeze of its own from now on (judged, and remediated, alone).
        del self._open[member.segment]
        sf = current.freeze
        closed = replace(sf, open=False, end_s=current.last_end_s,
                         duration_s=round(current.last_end_s - sf.start_s, 3), still_down=tuple(sorted(current.down)))
        log.info("correlation: segment freeze of %s closed after %.1f s%s", member.segment, closed.duration_s,
                 f"; still down, judged alone: {', '.join(closed.still_down)}" if closed.still_down else "")
        return [closed]

    def holds(self, box: str) -> str | None:
        """Why automatic remediation of box must wait (it is in an open segment freeze), or None."""
        if not (self.settings.enabled and self.settings.hold_remediation):
            return None
        member = self.members.get(box)
        current = self._open.get(member.segment) if member else None
        if current is None or box not in current.freeze.boxes:
            return None
        sf = current.freeze
        since = datetime.fromtimestamp(sf.start_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"segment freeze of {sf.segment} open since {since} ({len(sf.boxes)} boxes froze together): "
                "the cause is the segment, not the box")

    def settling(self, box: str, suspect: Iterable[str]) -> str | None:
        """Why a box that is frozen should wait a cycle more: other boxes of its segment are failing (suspect)
        and may turn this into a segment freeze next cycle (an outage that began mid-sweep is seen by some
        boxes one cycle later than by others). None when nothing suggests that."""
        if not (self.settings.enabled and self.settings.hold_remediation):
            return None
        member = self.members.get(box)
        if member is None:
            return None
        others = sorted(b for b in suspect
                        if b != box and b in self.members and self.members[b].segment == member.segment)
        if not others:
            return None
        return (f"waiting a cycle: {len(others)} other box{'es' if len(others) != 1 else ''} of segment "
                f"{member.segment} failing too ({', '.join(others)})")

    def open_freezes(self) -> tuple[SegmentFreeze, ...]:
        """Segment freezes open now."""
        return tuple(o.freeze for o in self._open.values())

    def to_json(self) -> dict[str, Any]:
        """State for the caller to persist (restored by from_json)."""
        return {"frozen": {b: [s, l] for b, (s, l) in self._frozen.items()},
                "open": [{"segment": o.freeze.segment, "site": o.freeze.site, "boxes": list(o.freeze.boxes),
                          "layer": o.freeze.layer, "start_s": o.freeze.start_s, "down": sorted(o.down),
                          "last_end_s": o.last_end_s} for o in self._open.values()]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], settings: CorrelationSettings,
                  members: Mapping[str, Membership]) -> "Correlator":
        """Restore state saved by to_json(); ValueError naming what is wrong."""
        c = cls(settings, members)
        try:
            for box, (start_s, layer) in (data.get("frozen") or {}).items():
                c._frozen[str(box)] = (float(start_s), layer)
            for o in data.get("open") or []:
                sf = SegmentFreeze(segment=o["segment"], site=o.get("site"), boxes=tuple(o["boxes"]),
                                   layer=o["layer"], start_s=float(o["start_s"]))
                c._open[sf.segment] = _Open(freeze=sf, down=set(o.get("down") or ()), last_end_s=o.get("last_end_s"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"correlation state: {exc!r}") from None
        return c
