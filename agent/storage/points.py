"""Points, InfluxDB line protocol, and the schema builders every part of the agent uses (a public contract).

Measurements (tags; fields):
  probe            box, kind, site, probe, address, port(tcp),  ok, rtt_ms, error, mac, layer, status_code,
                   maintenance;                                 cert_days_left  (checks: probe = "check:<kind>",
                                                                address = the path or argv[0])
  box              box, kind, site, maintenance;                up, state, layer, container_state, healthy,
                                                                degraded, percent_state_change, failed_share
  warning          box, kind, site, check, target;              message, days_left, percent (not a failure:
                                                                a certificate or proxy expiring, a disk filling)
  freeze           box, kind, site, detected_layer;             open, layer, duration_s, evidence, opened_by
                   (detected_layer: the layer at detection, constant within a freeze, so GROUP BY "detected_layer"
                   counts freezes by layer; the field layer is the deepest it reached; absent on points written
                   before it existed and on a freeze opened by such an agent)
  agent            site, host;                                  cycle_s, misfires, spool_points, write_errors,
                                                                dropped, rejected, retention_dropped, boxes, ...
                   site, host, event=clock_step;                clock_step_s (negative: back), detail (one
                                                                point per wall-clock step the probe loop saw)
  remediation      box, kind, site, action, trigger, outcome;   ok, recovered (outcome done only), dry_run,
                                                                deferred, duration_s, detail, reason, who, why, forced
  container_event  box, kind, site, event;                      n, detail, exit_code
  mac_change       box, kind, site, address;                    old, new
  name             box, kind, site, hostname, event;            state, detail, ipv4, ipv6 (event state: the
                                                                name's resolver state changed); family, old,
                                                                new (event address: it resolved elsewhere)
  segment_freeze   segment, site;                               boxes, box_names, layer, open, duration_s, reason
  witness          site, probe, address;                        ok, rtt_ms, error, mac (the [correlation] witness:
                                                                probed every cycle, never remediated)
  maintenance      box, kind, site, event, origin;              reason, who, until_s, source (event start|end;
                                                                origin agent: the box entered/left a window,
                                                                one point per box and change, the dashboards'
                                                                annotations; origin command: who asked)
  audit            box, kind, site, finding, severity;          audit_class, detail, evidence, fix, bench, n
                                                                (one point per finding per audit: agent.audit)
  audit_box        box, kind, site;                             audit_class, high, medium, low, privileges,
                                                                proc, trigger, error (one point per box per
                                                                audit; the report's class in force at a time)
  audit_change     box, kind, site;                             added, removed, old_class, new_class, detail
                                                                (privileges changed between two audits: the
                                                                dashboards' annotations)
The tag maintenance = "true" marks probe and box points taken while the box was in a maintenance
window (absent otherwise: `WHERE "maintenance" != 'true'` keeps the rest); its box points have no up.
Integers are written as integers (`1i`), so mean(up) is availability. A `site`
of None leaves the tag out. `box`.up is freeze-corrected (0 exactly over freezes: mean(up) is the
freeze-based availability); `box`.healthy is the cycle's raw verdict (0 for every failed cycle, a
lone one too: mean(healthy) is the availability from every failed cycle); degraded (0/1),
percent_state_change (0-100) and failed_share (0-1) are the flapping window after the cycle
(agent.core.flapping), absent with [flapping] enabled = false.

Text round-trips exactly: string fields (`detail`, `error`, ...) keep newlines, quotes, backslashes and
any unicode (InfluxDB 1.x parses a quoted string to its closing quote). Tag values and names (measurement,
tag and field keys) keep spaces, commas, equals signs, backslashes and unicode, except what line protocol
cannot carry, which is rejected at encode time with LineProtocolError (counted as `rejected`):
  - a newline, carriage return or other ASCII control character (U+0000-U+001F, U+007F);
  - a trailing backslash, or a backslash before a space, comma, equals sign, double quote or backslash;
  - an empty name, the key "time", a measurement starting with "#", a key used as both tag and field;
  - an integer outside int64, a lone surrogate. NaN/inf float fields are left out.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FieldValue = int | float | str | bool
# The value of the `maintenance` tag on probe and box points taken in a maintenance window.
MAINTENANCE_TAG = "true"

# Escaping follows the InfluxDB 1.x line protocol reference, "Special characters"
# (https://docs.influxdata.com/influxdb/v1.6/write_protocols/line_protocol_reference/#special-characters):
#   measurement:                     escape comma and space
#   tag keys, tag values, field keys: escape comma, equals sign and space
#   string field values:             escape double quote and backslash (a raw newline is kept: the parser
#                                    scans a quoted string to its closing quote, so it round-trips)
# Other backslashes are written as they are. The parser un-escapes "\," "\=" "\ " and '\"' in names and
# tag values, so a backslash there cannot stand before one of those, nor at the end (it would escape the
# separator). Such values, newlines/CR/other ASCII control characters in names or tag values, empty names,
# the reserved key "time", names starting with "#" (a comment line) and a name used as both tag and field
# key are rejected:
# to_line raises LineProtocolError naming the part.
_MEASUREMENT_ESC = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STR_ESC = str.maketrans({'"': r"\"", "\\": "\\\\"})
_AFTER_BACKSLASH_BAD = frozenset(',= "\\')
_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")
_PRECISION_DIV = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_INT_MIN, _INT_MAX = -(2**63) + 1, 2**63 - 1   # InfluxDB 1.x refuses -2**63


class LineProtocolError(ValueError):
    """A point cannot be written exactly as line protocol; the message names the part and the rule."""


def _check_name(what: str, text: str) -> None:
    """Raise LineProtocolError when `text` (a measurement, key or tag value) cannot round-trip."""
    if not isinstance(text, str):
        raise LineProtocolError(f"{what}: expected a string, got {type(text).__name__}")
    if text == "":
        raise LineProtocolError(f"{what}: empty")
    for bad, name in (("\n", "newline"), ("\r", "carriage return")):
        if bad in text:
            raise LineProtocolError(f"{what} {text!r}: contains a {name} (line protocol cannot carry it there)")
    ctl = _CONTROL_RE.search(text)
    if ctl:
        raise LineProtocolError(f"{what} {text!r}: contains the control character U+{ord(ctl.group()):04X} "
                                f"(InfluxDB drops or mangles those in names and tag values)")
    if text.endswith("\\"):
        raise LineProtocolError(f"{what} {text!r}: ends with a backslash (it would escape the separator)")
    i = text.find("\\")
    while i != -1:
        if text[i + 1] in _AFTER_BACKSLASH_BAD:
            raise LineProtocolError(f"{what} {text!r}: a backslash before {text[i + 1]!r} is read back as an "
                                    f"escape by InfluxDB")
        i = text.find("\\", i + 1)
    _check_utf8(what, text)


def _check_utf8(what: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LineProtocolError(f"{what}: not encodable as UTF-8 ({exc.reason})") from None


def ns_from_s(time_s: float) -> int:
    """Epoch seconds -> epoch ns, rounded to the millisecond (so a rewrite hits the same timestamp)."""
    return round(time_s * 1000) * 1_000_000


def _field(key: str, v: FieldValue) -> str | None:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        if not _INT_MIN <= v <= _INT_MAX:
            raise LineProtocolError(f"field {key!r}: integer {v} outside InfluxDB's int64 range")
        return f"{v}i"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None  # NaN/inf are not representable; leave the field out
    if isinstance(v, str):
        _check_utf8(f"field {key!r}", v)
        return f'"{v.translate(_STR_ESC)}"'
    raise TypeError(f"field value must be int, float, str or bool, got {type(v).__name__}")


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point: measurement, tags, fields, epoch time in ns."""

    measurement: str
    tags: Mapping[str, str | None]            # None or "": the tag is left out
    fields: Mapping[str, FieldValue | None]   # None: the field is left out
    time_ns: int = field(default=0)

    def to_line(self, precision: str = "ms") -> str:
        """This point as one line of line protocol (tags sorted, None/empty tags and None fields left out).

        Raises LineProtocolError (a ValueError) for a value that would not read back exactly (see the
        module's escaping notes) and ValueError when no field is left.
        """
        _check_name("measurement", self.measurement)
        if self.measurement.startswith("#"):
            raise LineProtocolError(f"measurement {self.measurement!r}: starts with '#' (a comment line)")
        parts = [self.measurement.translate(_MEASUREMENT_ESC)]
        tag_keys = set()
        for k in sorted(self.tags):
            v = self.tags[k]
            if v is not None and v != "":
                _check_name("tag key", k)
                if k == "time":
                    raise LineProtocolError("tag key 'time': reserved by InfluxDB")
                _check_name(f"tag {k!r} value", str(v))
                tag_keys.add(k)
                parts.append(f",{k.translate(_KEY_ESC)}={str(v).translate(_KEY_ESC)}")
        fields_txt = []
        for k, value in self.fields.items():
            if value is None:
                continue
            _check_name("field key", k)
            if k == "time":
                raise LineProtocolError("field key 'time': reserved by InfluxDB")
            if k in tag_keys:
                raise LineProtocolError(f"field key {k!r}: also a tag key of this point")
            txt = _field(k, value)
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
                rtt_ms: float | None, error: str | None, mac: str | None, time_s: float, *,
                layer: str | None = None, status_code: int | None = None,
                cert_days_left: float | None = None, maintenance: bool = False) -> Point:
    """`probe`: one probe or check result (timestamp: when it answered or timed out); layer when it failed."""
    fields: dict[str, FieldValue | None] = {"ok": 1 if ok else 0}
    if ok and rtt_ms is not None:
        fields["rtt_ms"] = float(rtt_ms)
    if not ok:
        fields["error"] = error or "failed"
        if layer:
            fields["layer"] = layer
    if mac:
        fields["mac"] = mac
    if status_code is not None:
        fields["status_code"] = int(status_code)
    if cert_days_left is not None:
        fields["cert_days_left"] = float(cert_days_left)
    return Point("probe", _tags(box, kind, site, probe=probe, address=address,
                                port=str(port) if port is not None else None,
                                maintenance=MAINTENANCE_TAG if maintenance else None), fields, ns_from_s(time_s))


def warning_point(box: str, kind: str, site: str | None, check: str, target: str, message: str, time_s: float, *,
                  days_left: float | None = None, percent: float | None = None) -> Point:
    """`warning`: ok but worth a look (check = probe kind or "check:<kind>"); never a failure, never remediated."""
    return Point("warning", _tags(box, kind, site, check=check, target=target),
                 {"message": message, "days_left": None if days_left is None else float(days_left),
                  "percent": None if percent is None else float(percent)}, ns_from_s(time_s))


def box_point(box: str, kind: str, site: str | None, up: int | None, state: str, layer: str, time_s: float,
              container_state: str | None = None, *, healthy: bool | None = None, degraded: bool | None = None,
              percent_state_change: float | None = None, failed_share: float | None = None,
              held: Any = None, maintenance: bool = False) -> Point:
    """`box`: one per box per cycle; up 0/1, state up|suspect|frozen|recovering|stopped|maintenance, layer none|l2|...

    up (and healthy) are absent while stopped or in maintenance (not observed: mean(up) leaves the cycle out);
    container_state: container boxes, Docker's state (running, paused, exited, ...) when known;
    healthy: the raw verdict 0/1; degraded 0/1, percent_state_change (%), failed_share (0-1):
    the flapping window (agent.core.flapping), absent when not scored; maintenance: tagged maintenance = "true".
    HELD: the box's hold (agent.core.events.BoxHeld) while remediation is held: fields held (its kind,
    segment|settling), held_segment, held_since_s (epoch s) and held_reason, so `status` rebuilt from InfluxDB
    shows it.
    """
    fields: dict[str, FieldValue | None] = {
        "up": int(up) if up is not None else None, "state": state, "layer": layer,
        "container_state": container_state,
        "healthy": None if healthy is None or up is None else int(healthy),
        "degraded": None if degraded is None else int(degraded),
        "percent_state_change": None if percent_state_change is None else float(percent_state_change),
        "failed_share": None if failed_share is None else float(failed_share)}
    if held is not None:
        fields |= {"held": held.kind, "held_segment": held.segment, "held_since_s": float(held.time_s),
                   "held_reason": held.reason or None}
    return Point("box", _tags(box, kind, site, maintenance=MAINTENANCE_TAG if maintenance else None), fields,
                 ns_from_s(time_s))


def maintenance_point(box: str, kind: str, site: str | None, event: str, origin: str, reason: str,
                      who: str | None, until_s: float | None, source: str, time_s: float) -> Point:
    """`maintenance`: event start|end of a window for BOX; origin agent (it entered/left) or command (who asked)."""
    return Point("maintenance", _tags(box, kind, site, event=event, origin=origin),
                 {"reason": reason, "who": who, "until_s": None if until_s is None else float(until_s),
                  "source": source}, ns_from_s(time_s))


def box_down_rewrite(box: str, kind: str, site: str | None, time_s: float) -> Point:
    """`box` again at an earlier cycle's time with up=0 only (same tags and time: replaces up, keeps state)."""
    return Point("box", _tags(box, kind, site), {"up": 0}, ns_from_s(time_s))


def freeze_point(box: str, kind: str, site: str | None, start_s: float, open_: bool, layer: str,
                 duration_s: float, evidence: str | None = None, opened_by: str | None = None, *,
                 detected_layer: str | None = None) -> Point:
    """`freeze`: at the freeze's start; written when detected (open=1) and again when it closes (open=0).

    opened_by (written when detected; later writes of the same point keep it, InfluxDB merges fields):
    "probes" (fail_cycles failing cycles) or "alert" (an alert confirmed a suspect box, issue 26).
    detected_layer: the tag, the layer at detection; it never changes within a freeze, so every write of the
    freeze lands in one series (a tag is part of the series key: a changing tag would split the point in two).
    None or "" leaves it out (a freeze opened before the tag existed keeps its untagged series). layer: the
    field, the deepest layer the freeze reached so far.
    """
    return Point("freeze", _tags(box, kind, site, detected_layer=detected_layer or None),
                 {"open": 1 if open_ else 0, "layer": layer, "duration_s": float(duration_s), "evidence": evidence,
                  "opened_by": opened_by}, ns_from_s(start_s))


def agent_point(site: str | None, time_s: float, *, cycle_s: float, misfires: int, spool_points: int,
                write_errors: int, dropped: int = 0, rejected: int = 0, host: str | None = None,
                **extra: FieldValue) -> Point:
    """`agent`: the agent's own health each cycle."""
    return Point("agent", {"site": site, "host": host},
                 {"cycle_s": float(cycle_s), "misfires": int(misfires), "spool_points": int(spool_points),
                  "write_errors": int(write_errors), "dropped": int(dropped), "rejected": int(rejected), **extra},
                 ns_from_s(time_s))


def clock_step_point(site: str | None, time_s: float, step_s: float, host: str | None = None) -> Point:
    """`agent` with tag event=clock_step: the wall clock stepped by step_s seconds (negative: back) against the
    monotonic clock, seen by the probe loop at time_s (the new wall time; agent.schedule.StepDetector)."""
    detail = (f"wall clock stepped {'forward' if step_s > 0 else 'back'} by {abs(step_s):.3f} s; probing kept its "
              "rhythm on the monotonic clock")
    return Point("agent", {"site": site, "host": host, "event": "clock_step"},
                 {"clock_step_s": float(step_s), "detail": detail}, ns_from_s(time_s))


def remediation_point(box: str, kind: str, site: str | None, action: str, trigger: str, ok: bool,
                      recovered: bool | None, dry_run: bool, duration_s: float, detail: str, time_s: float, *,
                      outcome: str = "done", reason: str = "", who: str | None = None, why: str | None = None,
                      forced: bool = False) -> Point:
    """`remediation`: one decision (trigger auto|alert|manual; outcome done|refused|held|deferred|dry_run|reset).

    ok/recovered are written only for outcome done (an action that ran), so count("ok") and
    mean("recovered") count actions that ran; recovered None (absent): ran, not verified (the agent stopped);
    reason says why it was refused/held/deferred;
    deferred=1 for outcome deferred (kept for older queries); who/why/forced for an admin's request.
    """
    ran = outcome == "done" and action != "reset"
    return Point("remediation", _tags(box, kind, site, action=action, trigger=trigger, outcome=outcome),
                 {"ok": int(bool(ok)) if ran else None,
                  "recovered": int(bool(recovered)) if ran and recovered is not None else None,
                  "dry_run": int(bool(dry_run)), "deferred": int(outcome == "deferred"),
                  "duration_s": float(duration_s), "detail": detail, "reason": reason or None,
                  "who": who, "why": why, "forced": 1 if forced else None},
                 ns_from_s(time_s))


def container_event_point(box: str, kind: str, site: str | None, event: str, time_s: float, detail: str = "",
                          exit_code: int | None = None, container_state: str | None = None,
                          operator: bool | None = None) -> Point:
    """`container_event`: a Docker event (die, oom, restart, pause, disconnect, resync, ...) of a configured box.

    container_state: the container's state after it; operator: 1 when the box is stopped by someone else.
    """
    return Point("container_event", _tags(box, kind, site, event=event),
                 {"n": 1, "detail": detail, "exit_code": exit_code, "container_state": container_state,
                  "operator": None if operator is None else int(operator)}, ns_from_s(time_s))


def mac_change_point(box: str, kind: str, site: str | None, address: str, old: str, new: str,
                     time_s: float, ours: bool = False) -> Point:
    """`mac_change`: ARP/NDP answered with a different MAC than last seen for the address; `ours` 1 (else absent)
    when a remediation action of ours on the box caused it (agent.core.events.MacChanged)."""
    fields: dict[str, FieldValue | None] = {"old": old, "new": new}
    if ours:
        fields["ours"] = 1
    return Point("mac_change", _tags(box, kind, site, address=address), fields, ns_from_s(time_s))


def name_point(box: str, kind: str, site: str | None, hostname: str, event: str, time_s: float, *,
               state: str | None = None, detail: str | None = None, ipv4: str | None = None,
               ipv6: str | None = None, family: int | None = None, old: str | None = None,
               new: str | None = None) -> Point:
    """`name`: a box's hostname (agent.resolve) changed resolver state (event "state": state, detail and the
    addresses probed, "" for none) or resolved to a new address (event "address": family 4|6, old, new; ""
    for none)."""
    fields: dict[str, FieldValue | None] = (
        {"state": state, "detail": detail, "ipv4": ipv4 or "", "ipv6": ipv6 or ""} if event == "state"
        else {"family": family, "old": old or "", "new": new or ""})
    return Point("name", _tags(box, kind, site, hostname=hostname, event=event), fields, ns_from_s(time_s))


def address_conflict_point(box: str, kind: str, site: str | None, address: str, macs: Iterable[str], open_: bool,
                           time_s: float) -> Point:
    """`address_conflict`: ARP/NDP for the address answered from several MACs in one sweep (open 1), or from one
    again (open 0); macs: comma-separated, the first answerer first."""
    return Point("address_conflict", _tags(box, kind, site, address=address),
                 {"macs": ",".join(macs), "open": 1 if open_ else 0}, ns_from_s(time_s))


def engine_down_point(site: str | None, since_s: float, open_: bool, duration_s: float, reason: str) -> Point:
    """`engine_down`: the container engine unreachable from since_s (open 1), rewritten when it returns (open 0)."""
    return Point("engine_down", {"site": site}, {"open": 1 if open_ else 0, "duration_s": float(duration_s),
                                                 "reason": reason}, ns_from_s(since_s))


def segment_freeze_point(segment: str, site: str | None, start_s: float, boxes: Iterable[str], layer: str,
                         open_: bool, duration_s: float, reason: str = "") -> Point:
    """`segment_freeze`: many boxes of one segment froze together; at its start, rewritten when it closes.

    reason: the evidence it opened on, and once closed the evidence that ended it (agent.core.correlation).
    """
    names = sorted(boxes)
    return Point("segment_freeze", {"segment": segment, "site": site},
                 {"boxes": len(names), "box_names": ",".join(names), "layer": layer, "open": 1 if open_ else 0,
                  "duration_s": float(duration_s), "reason": reason or None}, ns_from_s(start_s))


def witness_point(site: str | None, probe: str, address: str, ok: bool, rtt_ms: float | None, error: str | None,
                  mac: str | None, time_s: float) -> Point:
    """`witness`: one probe of the [correlation] witness (ARP/NDP or ping; timestamp: when it answered or timed out)."""
    fields: dict[str, FieldValue | None] = {"ok": 1 if ok else 0, "rtt_ms": float(rtt_ms) if ok and rtt_ms is not None
                                            else None, "error": None if ok else (error or "failed"), "mac": mac}
    return Point("witness", {"site": site, "probe": probe, "address": address}, fields, ns_from_s(time_s))


def audit_point(box: str, kind: str, site: str | None, finding: str, severity: str, audit_class: str, detail: str,
                evidence: str, fix: str, bench: str, time_s: float) -> Point:
    """`audit`: one finding of a box's isolation audit (agent.audit; finding = its id, e.g. "5.4")."""
    return Point("audit", _tags(box, kind, site, finding=finding, severity=severity),
                 {"audit_class": audit_class, "detail": detail, "evidence": evidence, "fix": fix, "bench": bench,
                  "n": 1}, ns_from_s(time_s))


def audit_box_point(box: str, kind: str, site: str | None, audit_class: str, counts: Mapping[str, int],
                    privileges: Iterable[str], proc: str, trigger: str, error: str | None, time_s: float) -> Point:
    """`audit_box`: a box's audit (class, findings by severity, privileges space-separated); error: not audited."""
    return Point("audit_box", _tags(box, kind, site),
                 {"audit_class": audit_class, **{s: int(n) for s, n in counts.items()},
                  "privileges": " ".join(sorted(privileges)), "proc": proc, "trigger": trigger, "error": error},
                 ns_from_s(time_s))


def audit_change_point(box: str, kind: str, site: str | None, added: Iterable[str], removed: Iterable[str],
                       old_class: str, new_class: str, detail: str, time_s: float) -> Point:
    """`audit_change`: a box's privileges changed between two audits ("privileges changed: +CAP_SYS_ADMIN")."""
    return Point("audit_change", _tags(box, kind, site),
                 {"added": " ".join(added), "removed": " ".join(removed), "old_class": old_class,
                  "new_class": new_class, "detail": detail}, ns_from_s(time_s))
