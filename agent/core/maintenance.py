"""Maintenance windows, pure: given the windows and a time, which boxes are in maintenance and why.

Two kinds of window: ad-hoc ones (`vobox-agent maintenance start`, kept in state_dir by
agent.maintenance) with a start and an optional end, and recurring ones from the config
(`[[maintenance]]`: weekdays, a local start time, a duration, a time zone). Every window is
half-open, [start, end): a box is in maintenance at its start and out of it at its end.
In maintenance a box is still probed and its points are stored, marked; it opens no freeze
(agent.core.freeze) and nothing remediates it (remediations.engine).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

# Weekday names as the config spells them (datetime.weekday(): Monday is 0).
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Window:
    """An ad-hoc window: boxes (None: every box) in maintenance from start_s to end_s (None: until ended), epoch s."""

    boxes: tuple[str, ...] | None
    start_s: float
    end_s: float | None
    reason: str
    who: str | None = None

    def covers(self, box: str, now_s: float) -> bool:
        """True when BOX is in this window at now_s (start inclusive, end exclusive)."""
        return ((self.boxes is None or box in self.boxes) and self.start_s <= now_s
                and (self.end_s is None or now_s < self.end_s))


@dataclass(frozen=True, slots=True)
class Recurring:
    """A recurring window ([[maintenance]]): on `weekdays` (0 = Monday; empty: every day) at start_min local minutes
    after midnight in time zone `timezone`, for duration_s; boxes None: every box."""

    boxes: tuple[str, ...] | None
    weekdays: tuple[int, ...]
    start_min: int
    duration_s: float
    timezone: str
    reason: str

    def occurrence(self, now_s: float) -> tuple[float, float] | None:
        """The occurrence (start_s, end_s) that covers now_s, or None; handles windows across midnight and DST."""
        tz = ZoneInfo(self.timezone)
        today = datetime.fromtimestamp(now_s, tz).date()
        back_days = int(math.ceil(self.duration_s / DAY_S)) + 1
        hour, minute = divmod(self.start_min, 60)
        for k in range(back_days + 1):
            day = today - timedelta(days=k)
            if self.weekdays and day.weekday() not in self.weekdays:
                continue
            start_s = datetime.combine(day, time(hour, minute), tzinfo=tz).timestamp()
            if start_s <= now_s < start_s + self.duration_s:
                return start_s, start_s + self.duration_s
        return None


@dataclass(frozen=True, slots=True)
class Active:
    """Why a box is in maintenance now: reason, who started it (None: the config), until_s (None: until ended),
    source ("command": an ad-hoc window, "config": a recurring one)."""

    reason: str
    who: str | None
    until_s: float | None
    source: str


def parse_hhmm(text: str) -> int:
    """'02:30' -> 150 (minutes after midnight); ValueError for anything else."""
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f'expected a time "HH:MM", got {text!r}')
    hour, minute = int(parts[0]), int(parts[1])
    if hour > 23 or minute > 59:
        raise ValueError(f'expected a time "HH:MM" (00:00-23:59), got {text!r}')
    return hour * 60 + minute


def _later(a: Active | None, b: Active) -> Active:
    """The window that lasts longer (None = until ended lasts longest); on a tie the first."""
    if a is None:
        return b
    end_a = math.inf if a.until_s is None else a.until_s
    end_b = math.inf if b.until_s is None else b.until_s
    return b if end_b > end_a else a


def in_maintenance(boxes: Iterable[str], windows: Sequence[Window], recurring: Sequence[Recurring],
                   now_s: float) -> dict[str, Active]:
    """Box -> why it is in maintenance at now_s, for the boxes in a window; where several cover a box, the longest."""
    names = list(boxes)
    out: dict[str, Active] = {}
    for w in windows:
        for name in names:
            if w.covers(name, now_s):
                out[name] = _later(out.get(name), Active(w.reason, w.who, w.end_s, "command"))
    for r in recurring:
        occ = r.occurrence(now_s)
        if occ is None:
            continue
        for name in names:
            if r.boxes is None or name in r.boxes:
                out[name] = _later(out.get(name), Active(r.reason, None, occ[1], "config"))
    return out


def end_boxes(windows: Sequence[Window], boxes: Sequence[str] | None, all_boxes: Sequence[str],
              now_s: float) -> list[Window]:
    """The windows after `maintenance end` of BOXES (None: every box) at now_s; windows already over are dropped.

    A window for every box that loses some of them keeps going for the others (its boxes become the rest).
    """
    out: list[Window] = []
    for w in windows:
        if w.end_s is not None and w.end_s <= now_s:
            continue
        if boxes is None:
            if w.start_s > now_s:
                out.append(w)   # a window planned for later is not ended by ending the current ones
            continue
        if w.start_s > now_s:
            out.append(w)
            continue
        members = w.boxes if w.boxes is not None else tuple(all_boxes)
        rest = tuple(b for b in members if b not in boxes)
        if rest == members and w.boxes is not None:
            out.append(w)
        elif rest:
            out.append(Window(rest, w.start_s, w.end_s, w.reason, w.who))
    return out


def to_json(windows: Sequence[Window]) -> dict[str, Any]:
    """The maintenance file's document."""
    return {"version": 1, "windows": [
        {"boxes": list(w.boxes) if w.boxes is not None else None, "start_s": w.start_s, "end_s": w.end_s,
         "reason": w.reason, "who": w.who} for w in windows]}


def from_json(data: Any) -> list[Window]:  # parsed JSON of the maintenance file
    """Inverse of to_json; ValueError naming what is wrong."""
    if not isinstance(data, Mapping) or data.get("version") != 1 or not isinstance(data.get("windows"), list):
        raise ValueError("not a maintenance document of version 1")
    out = []
    for i, raw in enumerate(data["windows"]):
        try:
            boxes = raw["boxes"]
            if boxes is not None and not (isinstance(boxes, list) and all(isinstance(b, str) for b in boxes)):
                raise ValueError("boxes: expected a list of names or null")
            end = raw.get("end_s")
            out.append(Window(tuple(boxes) if boxes is not None else None, float(raw["start_s"]),
                              None if end is None else float(end), str(raw["reason"]),
                              None if raw.get("who") is None else str(raw["who"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"windows[{i}]: {exc}") from None
    return out
