"""`vobox-agent events -c FILE --since 24h [--box B] [--json]`: freezes, remediations and container events in time order."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from agent.commands import EXIT_BAD_CONFIG, add_config_option, influx_unreadable, load_config
from agent.timeparse import parse_duration_s

if TYPE_CHECKING:
    from agent.storage.read import EventRow


def _fmt_time(t_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t_s)) + "Z"


def describe(event: EventRow) -> str:
    """One human line for an event."""
    f, tags = event.fields, event.tags
    if event.measurement == "freeze":
        dur = f.get("duration_s")
        if f.get("open") == 1:
            return f"freeze OPEN, layer {f.get('layer', '?')}" + (f", {dur:.0f} s so far" if dur else "")
        return f"freeze, layer {f.get('layer', '?')}" + (f", {dur:.1f} s" if dur is not None else "")
    if event.measurement == "remediation":
        outcome = tags.get("outcome") or ("deferred" if f.get("deferred") == 1 else "done")
        if outcome != "done":  # refused, held, deferred, dry_run: nothing ran, so no ok/FAILED
            reason = f.get("reason") or f.get("detail") or ""
            return (f"remediation {tags.get('action', '?')} ({tags.get('trigger', '?')}): "
                    f"{outcome.upper().replace('_', '-')}" + (f" - {reason}" if reason else ""))
        flags = []
        if f.get("dry_run") == 1:
            flags.append("dry-run")
        flags.append("ok" if f.get("ok") == 1 else "FAILED")
        if f.get("recovered") is not None:
            flags.append("recovered" if f.get("recovered") == 1 else "not recovered")
        elif f.get("ok") == 1 and f.get("reason"):
            flags.append(f["reason"])   # ran, not verified (the agent stopped during the verify wait)
        if f.get("forced") == 1:
            flags.append(f"FORCED by {f.get('who') or '?'}" + (f" ({f['why']})" if f.get("why") else ""))
        detail = f" - {f['detail']}" if f.get("detail") else ""
        return (f"remediation {tags.get('action', '?')} ({tags.get('trigger', '?')}): "
                f"{', '.join(flags)}{detail}")
    if event.measurement == "container_event":
        what = tags.get("event") or f.get("event") or f.get("action") or "?"
        detail = f" - {f['detail']}" if f.get("detail") else ""
        return f"container event {what}{detail}"
    if event.measurement == "mac_change":
        return f"MAC changed {f.get('old_mac', f.get('old', '?'))} -> {f.get('new_mac', f.get('new', '?'))}" + \
               (f" on {tags['address']}" if tags.get("address") else "")
    if event.measurement == "maintenance":
        what = tags.get("event", "?")
        by = f" by {f['who']}" if f.get("who") else ""
        until = f" until {_fmt_time(float(f['until_s']))}" if f.get("until_s") and what == "start" else ""
        return f"maintenance {what}{by}{until}" + (f" - {f['reason']}" if f.get("reason") else "")
    if event.measurement == "name":   # boxes by name (agent.resolve): the name beside the address
        if tags.get("event") == "address":
            return (f"name {tags.get('hostname', '?')}: IPv{f.get('family', '?')} address "
                    f"{f.get('old') or 'none'} -> {f.get('new') or 'none'}")
        probed = " ".join(a for a in (f.get("ipv4"), f.get("ipv6")) if a) or "not probed"
        return f"name {tags.get('hostname', '?')} {f.get('state', '?')} ({probed}) - {f.get('detail', '')}"
    if event.measurement == "segment_freeze":
        seg = tags.get("segment", "?")
        return f"segment {seg} freeze" + (" OPEN" if f.get("open") == 1 else "") + \
               (f", {f['boxes']} boxes" if "boxes" in f else "") + \
               (f", {f['duration_s']:.1f} s" if isinstance(f.get("duration_s"), (int, float)) else "")
    return f"{event.measurement} " + " ".join(f"{k}={v}" for k, v in sorted(f.items()))


def format_events(events: list[EventRow]) -> str:
    """Time-ordered text lines: time, box, description."""
    if not events:
        return "no events"
    width = max((len(e.box or "-") for e in events), default=1)
    return "\n".join(f"{_fmt_time(e.time_s)}  {(e.box or '-'):<{width}}  {_one_line(describe(e))}" for e in events)


def _one_line(text: str) -> str:
    """An event on one line: a detail's own lines (a command's output) joined with " / "."""
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the events subcommand."""
    p = subparsers.add_parser(
        "events",
        description=(
            "Print freezes, remediations and Docker container events of the last --since from InfluxDB, "
            "oldest first, one a line (or JSON with --json)."),
        help="freezes, remediations and container events from InfluxDB, in time order")
    add_config_option(p)
    p.add_argument("--since", default="24h", help="how far back, e.g. 90m, 24h, 7d (default 24h)")
    p.add_argument("--box", help="only this box")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the events; exit 1 when InfluxDB cannot be queried, 2 on bad arguments or config."""
    from agent.storage.read import QueryError, fetch_events, influx_query

    try:
        since_s = parse_duration_s(args.since)
    except ValueError as exc:
        print(f"vobox-agent events: --since: {exc}", file=sys.stderr)
        return 2
    cfg = load_config(args.config, check_files=False)
    if cfg is None:
        return EXIT_BAD_CONFIG
    if args.box is not None:
        try:
            cfg.box(args.box)
        except KeyError as exc:
            print(f"vobox-agent events: {exc.args[0]}", file=sys.stderr)
            return 2
    try:
        events = fetch_events(influx_query(cfg.influxdb), since_s, args.box, cfg.agent.site)
    except QueryError as exc:
        print(f"vobox-agent events: {influx_unreadable(exc)}", file=sys.stderr)
        return 1
    if args.json:
        for e in events:
            print(json.dumps({"time": _fmt_time(e.time_s), **asdict(e)}, sort_keys=True))
    else:
        print(format_events(events))
    return 0
