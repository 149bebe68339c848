"""Correlation: a segment that shows no life while many of its boxes freeze is a segment outage; hold them while it lasts.

Pure: the caller feeds, per cycle, which boxes (and the optional witness) answered ARP/NDP or
ping (`observe`, `observe_witness`), then the cycle's freeze starts and ends, then `settle(now_s)`;
it asks `holds(box)` before remediating.

The rule (issue 26; the operator guide's "a box whose ping answers proves the segment works"):
  life     a box of the segment, or the `[correlation] witness`, answered ARP/NDP or ping in a
           cycle at or after the cluster's first failure, and has not gone silent (a failing
           ARP/NDP and ping) since: an answer from before an outage that began mid-sweep is not life.
  opens    only when min_boxes (or min_share of the segment, at least two) l2/l3 freezes start
           within window_s AND the segment shows no life since the first of them.
  joins    a later l2/l3 freeze joins an open segment freeze only while the segment shows no life.
  ends     when its evidence ends: anything of the segment answers again (`settle`), or its boxes
           no longer fail together by the min_boxes/min_share rule; the reason is recorded.
Several independent failures on a segment that answers are box freezes, each remediated alone.
A segment is an L2 domain as the probing host sees it:
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
from datetime import UTC, datetime
from typing import Any

from probes import LAYERS, PROBES, Target

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
    witness: str | None = None   # an address whose ARP/NDP or ping answer is life for its segment (e.g. the gateway)

    @classmethod
    def from_config(cls, section: Any) -> CorrelationSettings:
        """From agent.core.config.CorrelationConfig (or anything with these attributes)."""
        return cls(enabled=section.enabled, min_boxes=section.min_boxes, min_share=section.min_share,
                   window_s=section.window_s, hold_remediation=section.hold_remediation,
                   witness=getattr(section, "witness", None))


@dataclass(frozen=True, slots=True)
class Membership:
    """Which segment (and site) a box belongs to."""

    segment: str
    site: str | None = None


@dataclass(frozen=True, slots=True)
class SegmentFreeze:
    """Boxes of one segment frozen together; `open` while the boxes still down fail together by the segment rule.

    still_down: when closed, the boxes whose own freezes go on (each judged alone from then on).
    reason: why it opened (no life since its first failure), and when closed why it ended
    (the segment answers again: which box or witness, when; or its boxes up again).
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
    reason: str = ""


@dataclass(slots=True)
class _Open:
    freeze: SegmentFreeze
    down: set[str] = field(default_factory=set)
    last_end_s: float | None = None


@dataclass(frozen=True, slots=True)
class Heard:
    """What a source (a box, or the witness) last showed at l2/l3: its last answer, and whether it is silent now.

    answer_s: the cycle time (epoch s) of its last ARP/NDP or ping answer (None: never);
    silent: its latest observation answered neither (so an earlier answer is no longer life).
    """

    answer_s: float | None = None
    silent: bool = False


# The source name of the witness in Heard maps (never a box name: box names have no space).
WITNESS = "witness"
# Probe kinds whose answer is life at l2/l3: ARP/NDP (l2) and ping (l3).
LIFE_PROBES: frozenset[str] = frozenset({"arp", "ndp", "icmp", "icmp6"})


def answered(results: Iterable[Any]) -> bool | None:
    """Did ARP/NDP or ping answer among RESULTS (probes.ProbeResult-like: probe, ok)? None when none was sent."""
    life = [r.ok for r in results if r.probe in LIFE_PROBES]
    return any(life) if life else None


def witness_targets(address: str) -> list[Target]:
    """The witness's probes each cycle: ARP + ping (IPv4) or NDP + ping (IPv6), l2 first."""
    family = 6 if ":" in address else 4
    kinds = sorted((k for k, p in PROBES.items() if p.FAMILY == family and p.LAYER in SEGMENT_LAYERS),
                   key=lambda k: LAYERS.index(PROBES[k].LAYER))
    return [Target(address, kind) for kind in kinds]


def _lowest_layer(layers: Iterable[str | None]) -> str:
    known = [layer for layer in layers if layer in LAYERS]
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


def _iso(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def witness_segment(address: str | None, members: Mapping[str, Membership],
                    route_of: Callable[[str], Any] | None = None) -> str | None:
    """The segment the witness ADDRESS is life for: its L2 domain when a box's segment is that domain; None
    (every segment: a site with one wire) otherwise, e.g. when boxes name their `segment`."""
    if address is None or route_of is None:
        return None
    segment = l2_segment(address, route_of)
    return segment if segment in {m.segment for m in members.values()} else None


class Correlator:
    """Tells a segment freeze from box freezes, from the answers and the freeze starts and ends it is fed.

    witness_segment: the segment the witness (settings.witness) is life for; None: every segment
    (the wiring passes the witness's L2 domain when a box shares it, else None: a site with one wire).
    """

    def __init__(self, settings: CorrelationSettings, members: Mapping[str, Membership],
                 witness_segment: str | None = None) -> None:
        self.settings = settings
        self.members = dict(members)
        self.witness_segment = witness_segment
        self._frozen: dict[str, tuple[float, str | None]] = {}   # box -> (freeze start_s, layer)
        self._open: dict[str, _Open] = {}                       # segment -> open segment freeze
        self._heard: dict[str, Heard] = {}                      # box or WITNESS -> its last l2/l3 answer

    def segment_size(self, segment: str) -> int:
        """Configured boxes in segment."""
        return sum(1 for m in self.members.values() if m.segment == segment)

    # ---- life ---------------------------------------------------------------------------------

    def observe(self, box: str, time_s: float, answered_now: bool | None) -> None:
        """BOX answered ARP/NDP or ping in the cycle at time_s (True), answered neither (False), sent none (None)."""
        if answered_now is None or box not in self.members:
            return
        was = self._heard.get(box, Heard())
        self._heard[box] = Heard(time_s if answered_now else was.answer_s, not answered_now)

    def observe_witness(self, time_s: float, answered_now: bool | None) -> None:
        """The witness answered ARP/NDP or ping in the cycle at time_s (True), or neither (False)."""
        if answered_now is None or self.settings.witness is None:
            return
        was = self._heard.get(WITNESS, Heard())
        self._heard[WITNESS] = Heard(time_s if answered_now else was.answer_s, not answered_now)

    def life(self, segment: str, since_s: float) -> str | None:
        """The evidence that SEGMENT works since since_s (epoch s), in words; None when it shows no life.

        Life: a box of the segment, or the witness, answered ARP/NDP or ping in a cycle at or after
        since_s and has not gone silent since. The latest answer is named (boxes sorted by name).
        """
        found: list[tuple[float, str]] = []
        for source, heard in self._heard.items():
            if heard.silent or heard.answer_s is None or heard.answer_s < since_s:
                continue
            if source == WITNESS:
                if self.witness_segment is None or self.witness_segment == segment:
                    found.append((heard.answer_s, f"witness {self.settings.witness}"))
            elif source in self.members and self.members[source].segment == segment:
                found.append((heard.answer_s, f"box {source}"))
        if not found:
            return None
        time_s, who = max(found, key=lambda f: (f[0], f[1]))
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return f"{who}{more} answered ARP/NDP or ping at {_iso(time_s)}"

    # ---- freezes ------------------------------------------------------------------------------

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
        """A box's freeze began at start_s (call at detection, after this cycle's observe calls); returns a
        segment freeze opened or grown by it (only while the segment shows no life)."""
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
            alive = self.life(member.segment, sf.start_s)
            if alive is not None:
                log.info("correlation: box %s does not join the segment freeze of %s: %s", box, member.segment,
                         alive)
                return []
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
        first_s = min(self._frozen[b][0] for b in cluster)
        alive = self.life(member.segment, first_s)
        if alive is not None:
            log.info("correlation: %d boxes of %s froze within %g s but the segment answers (%s): box freezes",
                     len(cluster), member.segment, self.settings.window_s, alive)
            return []
        cluster.sort(key=lambda b: (self._frozen[b][0], b))
        reason = (f"{len(cluster)} of {self.segment_size(member.segment)} boxes froze within "
                  f"{self.settings.window_s:g} s and nothing of the segment answered ARP/NDP or ping since "
                  f"{_iso(first_s)}")
        sf = SegmentFreeze(segment=member.segment, site=member.site, boxes=tuple(cluster),
                           layer=_lowest_layer(self._frozen[b][1] for b in cluster), start_s=first_s, reason=reason)
        self._open[member.segment] = _Open(freeze=sf, down=set(cluster))
        log.warning("correlation: segment freeze of %s: %s (%s)", member.segment, reason, ", ".join(cluster))
        return [sf]

    def _close(self, segment: str, end_s: float, reason: str) -> SegmentFreeze:
        current = self._open.pop(segment)
        sf = current.freeze
        closed = replace(sf, open=False, end_s=end_s, duration_s=round(end_s - sf.start_s, 3),
                         still_down=tuple(sorted(current.down)), reason=reason)
        log.info("correlation: segment freeze of %s closed after %.1f s: %s%s", segment, closed.duration_s, reason,
                 f"; still down, judged alone: {', '.join(closed.still_down)}" if closed.still_down else "")
        return closed

    def freeze_ended(self, box: str, end_s: float) -> list[SegmentFreeze]:
        """A box's freeze ended at end_s; returns the segment freeze closed by it (its boxes no longer fail together)."""
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
        left = len(current.down)
        return [self._close(member.segment, current.last_end_s,
                            f"its boxes are up again ({left} still down: too few for a segment freeze)"
                            if left else "its boxes are up again")]

    def settle(self, now_s: float) -> list[SegmentFreeze]:
        """End the segment freezes whose evidence ended: their segment answers again (call after a cycle's
        observe and freeze calls); returns those closed, each with the evidence that ended it as its reason."""
        out = []
        for segment, current in list(self._open.items()):
            alive = self.life(segment, current.freeze.start_s)
            if alive is not None:
                end_s = max(h.answer_s for s, h in self._heard.items() if h.answer_s is not None and not h.silent
                            and (s == WITNESS or (s in self.members and self.members[s].segment == segment)))
                out.append(self._close(segment, min(end_s, now_s), f"the segment answers again: {alive}"))
        return out

    def holds(self, box: str) -> str | None:
        """Why automatic remediation of box must wait (it is in an open segment freeze), or None."""
        if not (self.settings.enabled and self.settings.hold_remediation):
            return None
        member = self.members.get(box)
        current = self._open.get(member.segment) if member else None
        if current is None or box not in current.freeze.boxes:
            return None
        sf = current.freeze
        return (f"segment freeze of {sf.segment} open since {_iso(sf.start_s)} ({len(sf.boxes)} boxes froze "
                "together, nothing of the segment answers): the cause is the segment, not the box; "
                "`vobox-agent remediate --force` acts anyway")

    def settling(self, box: str, suspect: Iterable[str], since_s: float | None = None) -> str | None:
        """Why a box that is frozen should wait a cycle more: other boxes of its segment are failing (suspect)
        and may turn this into a segment freeze next cycle (an outage that began mid-sweep is seen by some
        boxes one cycle later than by others). None when nothing suggests that, or when the segment shows
        life since since_s (the box's freeze start: then no segment freeze can open for it)."""
        if not (self.settings.enabled and self.settings.hold_remediation):
            return None
        member = self.members.get(box)
        if member is None:
            return None
        others = sorted(b for b in suspect
                        if b != box and b in self.members and self.members[b].segment == member.segment)
        if not others:
            return None
        if since_s is not None and self.life(member.segment, since_s) is not None:
            return None
        return (f"waiting a cycle: {len(others)} other box{'es' if len(others) != 1 else ''} of segment "
                f"{member.segment} failing too ({', '.join(others)})")

    def open_freezes(self) -> tuple[SegmentFreeze, ...]:
        """Segment freezes open now."""
        return tuple(o.freeze for o in self._open.values())

    def to_json(self) -> dict[str, Any]:
        """State for the caller to persist (restored by from_json)."""
        return {"frozen": {b: [s, layer] for b, (s, layer) in self._frozen.items()},
                "open": [{"segment": o.freeze.segment, "site": o.freeze.site, "boxes": list(o.freeze.boxes),
                          "layer": o.freeze.layer, "start_s": o.freeze.start_s, "down": sorted(o.down),
                          "last_end_s": o.last_end_s, "reason": o.freeze.reason} for o in self._open.values()],
                "heard": {s: [h.answer_s, h.silent] for s, h in self._heard.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], settings: CorrelationSettings,
                  members: Mapping[str, Membership], witness_segment: str | None = None) -> Correlator:
        """Restore state saved by to_json(); ValueError naming what is wrong."""
        c = cls(settings, members, witness_segment)
        try:
            for box, (start_s, layer) in (data.get("frozen") or {}).items():
                c._frozen[str(box)] = (float(start_s), layer)
            for o in data.get("open") or []:
                sf = SegmentFreeze(segment=o["segment"], site=o.get("site"), boxes=tuple(o["boxes"]),
                                   layer=o["layer"], start_s=float(o["start_s"]), reason=str(o.get("reason") or ""))
                c._open[sf.segment] = _Open(freeze=sf, down=set(o.get("down") or ()), last_end_s=o.get("last_end_s"))
            for source, (answer_s, silent) in (data.get("heard") or {}).items():
                c._heard[str(source)] = Heard(None if answer_s is None else float(answer_s), bool(silent))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"correlation state: {exc!r}") from None
        return c
