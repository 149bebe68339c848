"""What `status` shows: the running agent's status.json when fresh, else a snapshot rebuilt from InfluxDB, as text."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.listeners.status import STATUS_FILE, STATUS_VERSION, boot_id, boottime_s
from agent.timeparse import format_age
from probes import LAYERS, PROBES

if TYPE_CHECKING:
    from agent.storage.read import Query

# agent.storage.read (and its HTTP clients) is imported only when InfluxDB is asked: `status` with a
# fresh status.json starts without it.

STALE_INTERVALS = 3
# RTT columns: IPv4 kinds, IPv6 kinds, then port probes; within a family the shallower layer first (icmp, arp).
_FAMILY_ORDER: dict[int | None, int] = {4: 0, 6: 1}  # None (both families): the port probes, last
PROBE_ORDER: tuple[str, ...] = tuple(sorted(PROBES, key=lambda k: (_FAMILY_ORDER.get(PROBES[k].FAMILY, 2),
                                                                   -LAYERS.index(PROBES[k].LAYER))))


@dataclass(frozen=True, slots=True)
class BoxStatus:
    """What status shows for one box."""

    name: str
    kind: str
    state: str
    layer: str
    since_s: float | None
    rtt_ms: dict[str, float] = field(default_factory=dict)
    open_freeze: dict | None = None
    budget_left: int | None = None
    halted: bool = False
    halt_reason: str | None = None
    held: dict | None = None          # {"kind", "segment", "since_s", "reason"} while remediation is held
    judged_s: float | None = None     # the last cycle that judged this box
    warnings: tuple[str, ...] = ()    # messages of the last cycle's warnings (certificates expiring, disks filling)
    degraded: dict | None = None      # {"degraded", "percent_state_change", "failed_share", "reason"} (flapping)
    maintenance: dict | None = None   # {"reason", "who", "until_s", "source"} while in a maintenance window
    addresses: tuple[str, ...] = ()   # the addresses the box is probed at (status.json only)
    resolution: dict | None = None    # {"hostname", "state", "detail", "since_s"}: a box by name (agent.resolve)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All boxes, where they came from, and why that source was chosen."""

    source: str              # "agent" (status.json) or "influxdb"
    updated_s: float | None
    boxes: tuple[BoxStatus, ...]
    note: str | None = None  # e.g. why status.json was not used
    error: str | None = None  # why the last cycle judged no box
    age_s: float | None = None  # status.json's age (monotonic when it says its boot, else wall clock)
    unprobed: tuple[tuple[str, dict], ...] = ()  # (box, its name) for boxes by name not probed: never resolved


def status_age_s(data: dict, now_s: float, boot: str | None, boottime_now_s: float) -> tuple[float | None, str]:
    """How old a status.json payload is, in seconds, and by which clock; (None, why) when it cannot be fresh.

    Written in this boot (boot_id) with a CLOCK_BOOTTIME stamp: the monotonic age, whatever the wall clock did.
    Written in another boot: None. Without those fields (an older agent): the wall-clock age, and None when it
    is negative (the wall clock moved back since: the age is unknown, never taken for fresh).
    """
    stamp = data.get("boottime_s")
    if data.get("boot_id") and isinstance(stamp, (int, float)):
        if data["boot_id"] != boot:
            return None, "written before the last boot (boot_id differs)"
        age = boottime_now_s - float(stamp)
        if age < 0:
            return None, f"its monotonic stamp lies {-age:.0f} s ahead of this boot's clock"
        return age, "monotonic"
    age = now_s - float(data.get("updated_s", 0))
    if age < 0:
        return None, (f"written {format_age(-age)} in the future by the wall clock (the clock moved back; "
                      "the file carries no monotonic stamp)")
    return age, "wall"


def read_status_file(path: str, now_s: float, *, boot: str | None = None,
                     boottime_now_s: float | None = None) -> tuple[Snapshot | None, str | None]:
    """Parse the runner's status.json; (None, reason) when absent, unreadable or stale (> 3 intervals old, or of
    unknown age: see status_age_s). boot/boottime_now_s: this boot's id and CLOCK_BOOTTIME (read when None)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, f"{path} not found (is the agent running?)"
    except (OSError, ValueError) as exc:
        return None, f"{path} unreadable: {exc}"
    if not isinstance(data, dict) or data.get("version") != STATUS_VERSION:
        return None, f"{path}: unknown format version {data.get('version') if isinstance(data, dict) else '?'}"
    updated_s = float(data.get("updated_s", 0))
    interval_s = float(data.get("interval_s", 10))
    age_s, clock = status_age_s(data, now_s, boot_id() if boot is None else boot,
                                boottime_s() if boottime_now_s is None else boottime_now_s)
    if age_s is None:
        return None, f"{path} is not fresh: {clock} (is the agent running?)"
    if age_s > STALE_INTERVALS * interval_s:
        return None, (f"{path} is stale: last written {format_age(age_s)} ago, more than {STALE_INTERVALS} "
                      f"intervals of {interval_s:g} s, by the {clock} clock (is the agent running?)")
    boxes = []
    for name, b in sorted((data.get("boxes") or {}).items()):
        rem = b.get("remediation") or {}
        boxes.append(BoxStatus(name=name, kind=b.get("kind", "?"), state=b.get("state", "?"),
                               layer=b.get("layer", "none"), since_s=b.get("since_s"),
                               rtt_ms={k: v for k, v in (b.get("rtt_ms") or {}).items() if v is not None},
                               open_freeze=b.get("open_freeze"), budget_left=rem.get("budget_left"),
                               halted=bool(rem.get("halted")), halt_reason=rem.get("reason"),
                               held=b.get("held"), judged_s=b.get("judged_s"), maintenance=b.get("maintenance"),
                               warnings=tuple(str(w.get("message")) for w in b.get("warnings") or ()
                                              if isinstance(w, dict)),
                               degraded=b.get("degraded") if isinstance(b.get("degraded"), dict) else None,
                               addresses=tuple(b.get("addresses") or ()),
                               resolution=b.get("name") if isinstance(b.get("name"), dict) else None))
    unprobed = tuple((box, n) for box, n in sorted((data.get("unprobed") or {}).items()) if isinstance(n, dict))
    return Snapshot("agent", updated_s, tuple(boxes), None, data.get("error"), age_s, unprobed), None


def from_influx(cfg: Any, query: Query, now_s: float) -> Snapshot:
    """Rebuild the status from InfluxDB: last `box` point, last RTT per probe, open `freeze`, last hour's actions."""
    from agent.storage.read import quote_str

    # one InfluxDB may hold many sites: only this agent's site
    site = f' AND "site" = {quote_str(cfg.agent.site)}' if cfg.agent.site else ""
    latest: dict[str, dict] = {}
    for tags, row in query(f'SELECT * FROM "box" WHERE time > now() - 7d{site} GROUP BY "box" '
                           'ORDER BY time DESC LIMIT 1'):
        latest[tags.get("box") or row.get("box") or ""] = row
    rtts: dict[str, dict[str, float]] = {}
    for tags, row in query('SELECT last("rtt_ms") FROM "probe" WHERE time > now() - 1h' + site +
                           ' GROUP BY "box", "probe"'):
        if row.get("last") is not None:
            rtts.setdefault(tags.get("box", ""), {})[tags.get("probe", "")] = float(row["last"])
    freezes: dict[str, dict] = {}
    for tags, row in query('SELECT * FROM "freeze" WHERE "open" = 1 AND time > now() - 30d' + site +
                           ' GROUP BY "box"'):
        freezes[tags.get("box", "")] = {"start_s": row["time"] / 1000.0, "layer": row.get("layer")}
    last_down: dict[str, float] = {}
    for tags, row in query('SELECT last("up") FROM "box" WHERE "up" = 0 AND time > now() - 30d' + site +
                           ' GROUP BY "box"'):
        last_down[tags.get("box", "")] = row["time"] / 1000.0
    remediation = _remediation_from_influx(query, site, now_s)
    cap = cfg.remediation.max_per_box_per_hour if cfg.remediation.enabled else None
    boxes = []
    updated = None
    for box in cfg.boxes:
        box_row = latest.get(box.name)
        fr = freezes.get(box.name)
        if box_row is None:
            boxes.append(BoxStatus(box.name, box.kind, "unknown", "none", None, rtts.get(box.name, {}), fr))
            continue
        updated = max(updated or 0.0, box_row["time"] / 1000.0)
        state = box_row.get("state") or ("up" if box_row.get("up") == 1 else "down")
        since = fr["start_s"] if fr else last_down.get(box.name)
        rem = remediation.get(box.name, _BoxRemediation())
        budget = None if cap is None else max(cap - rem.actions_last_hour, 0)
        # Halted as the engine is: a cap refusal after the last action and reset, until the box has been
        # up for reset_after (measured from its last down cycle here).
        up_for_s = now_s - last_down[box.name] if state == "up" and box.name in last_down else None
        halted = (cap is not None and rem.cap_reason is not None
                  and not (up_for_s is not None and up_for_s >= cfg.remediation.reset_after_s))
        held = None
        if box_row.get("held"):
            held = {"kind": box_row["held"], "segment": box_row.get("held_segment"), "since_s": box_row.get("held_since_s"),
                    "reason": box_row.get("held_reason")}
        degraded = ({"degraded": bool(box_row.get("degraded")), "percent_state_change": box_row.get("percent_state_change"),
                     "failed_share": box_row.get("failed_share"), "reason": None}
                    if box_row.get("percent_state_change") is not None else None)
        boxes.append(BoxStatus(box.name, box.kind, state, box_row.get("layer") or "none", since,
                               rtts.get(box.name, {}), fr, budget, halted, rem.cap_reason if halted else None,
                               held=held, judged_s=box_row["time"] / 1000.0, degraded=degraded))
    return Snapshot("influxdb", updated, tuple(boxes))


@dataclass(frozen=True, slots=True)
class _BoxRemediation:
    """One box's remediation budget and halt as the engine counts them, from its `remediation` points."""

    actions_last_hour: int = 0       # actions that ran (outcome done, not dry run) since the later of 1 h ago and the last reset
    cap_reason: str | None = None    # the last cap refusal, when no action ran and no reset came after it


def _remediation_from_influx(query: Query, site: str, now_s: float) -> dict[str, _BoxRemediation]:
    """Per box: the engine's budget and halt rebuilt from the last hour's `remediation` points (see remediations.engine)."""
    from agent.storage.read import QueryError

    try:
        rows = query('SELECT "outcome", "action", "dry_run", "reason" FROM "remediation" WHERE time > now() - 1h'
                     + site + ' GROUP BY "box"')
    except QueryError:
        return {}   # no remediation measurement yet
    by_box: dict[str, list[tuple[float, str, str, str]]] = {}
    for tags, r in rows:
        # outcome and action are tags: InfluxQL returns them in the row when selected by name
        outcome = r.get("outcome") or tags.get("outcome") or "done"
        action = r.get("action") or tags.get("action") or ""
        if r.get("dry_run") == 1:
            continue
        by_box.setdefault(tags.get("box", ""), []).append((r["time"] / 1000.0, outcome, action, r.get("reason") or ""))
    out = {}
    for box, recs in by_box.items():
        recs.sort()
        reset_s = max((t for t, outcome, action, _ in recs if outcome == "reset" or action == "reset"),
                      default=float("-inf"))
        ran = [t for t, outcome, action, _ in recs if outcome == "done" and action != "reset" and t > reset_s]
        cap_reason = None
        for t, outcome, _action, reason in recs:
            if outcome == "refused" and reason.startswith("cap reached") and t > reset_s and (not ran or t > ran[-1]):
                cap_reason = reason
        out[box] = _BoxRemediation(len(ran), cap_reason)
    return out


def format_line(b: BoxStatus, now_s: float) -> str:
    """One line for one box."""
    since = f"since {format_age(now_s - b.since_s)}" if b.since_s else "since -"
    rtt = " ".join(f"{p} {b.rtt_ms[p]:.2f}ms" for p in sorted(b.rtt_ms, key=lambda p: (
        PROBE_ORDER.index(p) if p in PROBE_ORDER else 99, p))) or "rtt -"
    if b.open_freeze:
        freeze = f"freeze {b.open_freeze.get('layer') or '?'} {format_age(now_s - b.open_freeze['start_s'])}"
    else:
        freeze = "freeze -"
    if b.maintenance:
        until = b.maintenance.get("until_s")
        budget = (f"MAINTENANCE {b.maintenance.get('reason')!r}"
                  + (f" by {b.maintenance['who']}" if b.maintenance.get("who") else "")
                  + (f", {format_age(until - now_s)} left" if until else ", until ended"))
    elif b.held:
        budget = (f"remediation HELD ({b.held.get('kind')}"
                  + (f" {b.held['segment']}" if b.held.get("segment") else "")
                  + (f", {format_age(now_s - b.held['since_s'])}" if b.held.get("since_s") else "") + ")")
    elif b.halted:
        budget = f"remediation HALTED ({b.halt_reason or 'cap reached'})"
    elif b.budget_left is None:
        budget = "remediation -"
    else:
        budget = f"budget {b.budget_left}"
    line = f"{b.name:<16} {b.kind:<9} {b.state:<10} {b.layer:<4} {since:<14} {rtt:<44} {freeze:<16} {budget}"
    if b.resolution:
        line += f"\n{'':<16} {name_text(b.resolution, b.addresses)}"
    if b.degraded and b.degraded.get("degraded"):
        line += f"\n{'':<16} DEGRADED {degraded_text(b.degraded)} (not remediated for that)"
    return line + "".join(f"\n{'':<16} WARNING {w}" for w in b.warnings)


def name_text(name: dict, addresses: tuple[str, ...] = ()) -> str:
    """A box's hostname beside the addresses it is probed at, and its resolver state when not resolved."""
    at = " ".join(addresses)
    state = str(name.get("state", "?"))
    if state == "resolved":
        return f"name {name.get('hostname', '?')} -> {at or 'not probed'}"
    return f"name {name.get('hostname', '?')} {state.upper()} ({name.get('detail', '')})" + \
        (f"; probed at {at}" if at else "")


def degraded_text(d: dict) -> str:
    """A degraded box's figures now (percent state change, failed share of the window), then why it became so.

    The reason is the one given when the box became degraded (its figures then); the figures
    before it are the last cycle's, so the line never shows a stale percentage as current.
    """
    figures = []
    if d.get("percent_state_change") is not None:
        figures.append(f"{float(d['percent_state_change']):.0f} % state change")
    if d.get("failed_share") is not None:
        figures.append(f"{100 * float(d['failed_share']):.0f} % of cycles failed")
    now = ", ".join(figures)
    if d.get("reason"):
        return f"{now} now; became degraded on {d['reason']}" if now else str(d["reason"])
    return now or "degraded"


def format_status(snap: Snapshot, now_s: float) -> str:
    """A header naming the source, then one line per box."""
    head = f"source: {snap.source}"
    if snap.updated_s:
        head += f", updated {format_age(snap.age_s if snap.age_s is not None else now_s - snap.updated_s)} ago"
    lines = [head] if snap.note is None else [f"note: {snap.note}", head]
    if snap.error:
        lines.append(f"LAST CYCLE JUDGED NO BOX: {snap.error} (states below are from earlier cycles)")
    lines += [format_line(b, now_s) for b in snap.boxes]
    lines += [f"{box:<16} NOT PROBED: {name_text(n)}" for box, n in snap.unprobed]
    return "\n".join(lines)


def snapshot(cfg: Any, now_s: float, query: Query | None = None) -> Snapshot:
    """status.json when fresh, else InfluxDB (with a note saying why)."""
    path = os.path.join(cfg.agent.state_dir, STATUS_FILE)
    snap, reason = read_status_file(path, now_s)
    if snap is not None:
        return snap
    if query is None:
        from agent.storage.read import influx_query

        query = influx_query(cfg.influxdb)
    snap = from_influx(cfg, query, now_s)
    return Snapshot(snap.source, snap.updated_s, snap.boxes, reason)
