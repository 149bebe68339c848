"""Points, InfluxDB line protocol, and the schema builders every part of the agent uses (a public contract).

Measurements (tags; fields):
  probe            box, kind, site, probe, address, port(tcp);  ok, rtt_ms, error, mac
  box              box, kind, site;                             up, state, layer
  freeze           box, kind, site;                             open, layer, duration_s, evidence
  agent            site, host;                                  cycle_s, misfires, spool_points, write_errors,
                                                                dropped, rejected, boxes, ...
  remediation      box, kind, site, action, trigger;            ok, recovered, dry_run, duration_s, detail
  container_event  box, kind, site, event;                      n, detail, exit_code
  mac_change       box, kind, site, address;                    old, new
  segment_freeze   segment, site;                               boxes, box_names, layer, open, duration_s
Integers are written as integers (`1i`), so mean(up) is availability. A `site`
of None leaves the tag out.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

FieldValue = int | float | str | bool

# Backslashes in measurement, tag keys/values and field keys are literal in line protocol (only
# "\," "\=" "\ " are escapes there); newlines cannot be written at all, so they become a literal "\n".
_MEASUREMENT_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r"})
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r"})
_STR_ESC = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n", "\r": r"\r"})
_PRECISION_DIV = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def ns_from_s(time_s: float) -> int:
    """Epoch seconds -> epoch ns, rounded to the millisecond (so a rewrite hits the same timestamp)."""
    return round(time_s * 1000) * 1_000_000


def _field(v: FieldValue) -> str | None:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None  # NaN/inf are not representable; leave the field out
    if isinstance(v, str):
        return f'"{v.translate(_STR_ESC)}"'
    raise TypeError(f"field value must be int, float, str or bool, got {type(v).__name__}")


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point: measurement, tags, fields, epoch time in ns."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int = field(default=0)

    def to_line(self, precision: str = "ms") -> str:
        """This point as one line of line protocol (tags sorted, None/empty tags and None fields left out)."""
        parts = [self.measurement.translate(_MEASUREMENT_ESC)]
        for k in sorted(self.tags):
            v = self.tags[k]
            if v is not None and v != "":
                parts.append(f",{k.translate(_KEY_ESC)}={str(v).translate(_KEY_ESC)}")
        fields_txt = []
        for k, v in self.fields.items():
            if v is None:
                continue
            txt = _field(v)
            if txt is not None:
                fields_txt.append(f"{k.translate(_KEY_ESC)}={txt}")
        if not fields_txt:
            raise ValueError(f"point {self.measurement!r} {dict(self.tags)} has no writable field")
        return f"{''.join(parts)} {','.join(fields_txt)} {self.time_ns // _PRECISION_DIV[precision]}"


def to_lines(points: Iterable[Point], precision: str = "ms") -> list[str]:
    """Line protocol for many points (a list of lines without newlines)."""
    return [p.to_line(precision) for p in points]


def _tags(box: str, kind: str, site: str | None, **more: str | None) -> dict[str, str | None]:
    return {"box": box, "kind": kind, "site": site, **more}


def probe_point(box: str, kind: str, site: str | None, probe: str, address: str, port: int | None, ok: bool,
                rtt_ms: float | None, error: str | None, mac: str | None, time_s: float) -> Point:
    """`probe`: one probe result (timestamp: when it answered or timed out)."""
    fields: dict[str, FieldValue | None] = {"ok": 1 if ok else 0}
    if ok and rtt_ms is not None:
        fields["rtt_ms"] = float(rtt_ms)
    if not ok:
        fields["error"] = error or "failed"
    if mac:
        fields["mac"] = mac
    return Point("probe", _tags(box, kind, site, probe=probe, address=address,
                                port=str(port) if port is not None else None), fields, ns_from_s(time_s))


def box_point(box: str, kind: str, site: str | None, up: int, state: str, layer: str, time_s: float) -> Point:
    """`box`: one per box per cycle; up 0/1, state up|suspect|frozen|recovering, layer none|l2|l3|l4."""
    return Point("box", _tags(box, kind, site), {"up": int(up), "state": state, "layer": layer}, ns_from_s(time_s))


def box_down_rewrite(box: str, kind: str, site: str | None, time_s: float) -> Point:
    """`box` again at an earlier cycle's time with up=0 only (same tags and time: replaces up, keeps state)."""
    return Point("box", _tags(box, kind, site), {"up": 0}, ns_from_s(time_s))


def freeze_point(box: str, kind: str, site: str | None, start_s: float, open_: bool, layer: str,
                 duration_s: float, evidence: str | None = None) -> Point:
    """`freeze`: at the freeze's start; written when detected (open=1) and again when it closes (open=0)."""
    return Point("freeze", _tags(box, kind, site),
                 {"open": 1 if open_ else 0, "layer": layer, "duration_s": float(duration_s), "evidence": evidence},
                 ns_from_s(start_s))


def agent_point(site: str | None, time_s: float, *, cycle_s: float, misfires: int, spool_points: int,
                write_errors: int, dropped: int = 0, rejected: int = 0, host: str | None = None,
                **extra: FieldValue) -> Point:
    """`agent`: the agent's own health each cycle."""
    return Point("agent", {"site": site, "host": host},
                 {"cycle_s": float(cycle_s), "misfires": int(misfires), "spool_points": int(spool_points),
                  "write_errors": int(write_errors), "dropped": int(dropped), "rejected": int(rejected), **extra},
                 ns_from_s(time_s))


def remediation_point(box: str, kind: str, site: str | None, action: str, trigger: str, ok: bool,
                      recovered: bool, dry_run: bool, duration_s: float, detail: str, time_s: float,
                      deferred: bool = False) -> Point:
    """`remediation`: one action (trigger auto|alert|manual); deferred=1 when nothing was done yet (Docker
    unreachable, or held by a segment freeze) and it will be retried."""
    return Point("remediation", _tags(box, kind, site, action=action, trigger=trigger),
                 {"ok": int(bool(ok)), "recovered": int(bool(recovered)), "dry_run": int(bool(dry_run)),
                  "deferred": int(bool(deferred)), "duration_s": float(duration_s), "detail": detail},
                 ns_from_s(time_s))


def container_event_point(box: str, kind: str, site: str | None, event: str, time_s: float, detail: str = "",
                          exit_code: int | None = None) -> Point:
    """`container_event`: a Docker event (die, oom, restart, pause, disconnect, ...) of a configured box."""
    return Point("container_event", _tags(box, kind, site, event=event),
                 {"n": 1, "detail": detail, "exit_code": exit_code}, ns_from_s(time_s))


def mac_change_point(box: str, kind: str, site: str | None, address: str, old: str, new: str,
                     time_s: float) -> Point:
    """`mac_change`: ARP/NDP answered with a different MAC than last seen for the address."""
    return Point("mac_change", _tags(box, kind, site, address=address), {"old": old, "new": new}, ns_from_s(time_s))


def segment_freeze_point(segment: str, site: str | None, start_s: float, boxes: Iterable[str], layer: str,
                         open_: bool, duration_s: float) -> Point:
    """`segment_freeze`: many boxes of one segment froze together; at its start, rewritten when it closes."""
    names = sorted(boxes)
    return Point("segment_freeze", {"segment": segment, "site": site},
                 {"boxes": len(names), "box_names": ",".join(names), "layer": layer, "open": 1 if open_ else 0,
                  "duration_s": float(duration_s)}, ns_from_s(start_s))
