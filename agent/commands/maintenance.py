"""`vobox-agent maintenance start|end|list -c FILE`: ad-hoc maintenance windows in state_dir/maintenance.json.

A running agent reads the file again when it changes (from its next cycle, no restart); a box in
maintenance is probed and stored (marked), opens no freeze and is never remediated. Each start and
end is also recorded as a `maintenance` point (origin command, who) when InfluxDB answers; when it
does not, the command says so and still succeeds: the window is in the file, which is what counts.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time

from agent.commands import (
    EXIT_BAD_CONFIG,
    INFLUX_CHECK,
    add_config_option,
    influx_reason as _influx_reason,
    load_config,
)

EXIT_OK = 0
EXIT_NOT_WRITTEN = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the maintenance subcommand (start, end, list)."""
    p = subparsers.add_parser(
        "maintenance",
        description=(
            "Maintenance windows: a box in maintenance is still probed and its points are stored (tagged "
            "maintenance=true, without up), but it opens no freeze, nothing remediates it (alerts and "
            "`remediate --force` are refused with the reason), and the report and dashboards leave the time "
            "out. Windows started here live in the agent's state_dir and apply from the running agent's next "
            "cycle; recurring windows are [[maintenance]] tables of the config."),
        help="start, end or list maintenance windows (no freeze, no remediation, left out of availability)")
    common = argparse.ArgumentParser(add_help=False)
    add_config_option(common)
    sub = p.add_subparsers(dest="maintenance_action", metavar="ACTION", required=True)
    s = sub.add_parser("start", parents=[common], help="put boxes in maintenance now",
                       description="Put BOX... (or --all) in maintenance from now, for --for or until `end`.")
    s.add_argument("boxes", nargs="*", metavar="BOX", help="box names from the config")
    s.add_argument("--all", action="store_true", help="every box of the config")
    s.add_argument("--for", dest="for_", metavar="DURATION",
                   help="how long: 90s, 15m, 2h, 1d (default: until `maintenance end`)")
    s.add_argument("--reason", default="", metavar="TEXT", help="why (shown by status, stored with the points)")
    s.add_argument("--json", action="store_true",
                   help="print what was done as one JSON object (schema: docs/schemas/maintenance-change.json)")
    e = sub.add_parser("end", parents=[common], help="end the maintenance of boxes now",
                       description="End the ad-hoc maintenance of BOX... (or --all) now; recurring windows of "
                                   "the config are not ended (edit the config for those).")
    e.add_argument("boxes", nargs="*", metavar="BOX", help="box names from the config")
    e.add_argument("--all", action="store_true", help="every box")
    e.add_argument("--json", action="store_true",
                   help="print what was done as one JSON object (schema: docs/schemas/maintenance-change.json)")
    li = sub.add_parser("list", parents=[common], help="the boxes in maintenance now and the windows",
                        description="The boxes in maintenance now (and why, by whom, until when), the ad-hoc "
                                    "windows of the state_dir and the recurring ones of the config.")
    li.add_argument("--json", action="store_true", help="print as JSON (schema: docs/schemas/maintenance-list.json)")
    p.set_defaults(func=run)


def who_am_i() -> str:
    """The login user and uid behind this command (the sudo caller when run with sudo)."""
    name = os.environ.get("SUDO_USER") or getpass.getuser()
    uid = os.environ.get("SUDO_UID") if os.environ.get("SUDO_USER") else None
    return f"{name} (uid {uid if uid is not None else os.getuid()})"


def _iso(time_s: float | None) -> str:
    if time_s is None:
        return "until ended"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_s))


def run(args: argparse.Namespace) -> int:
    """Start, end or list; exit 0 done, 1 the file could not be written, 2 bad config or arguments."""
    from agent import maintenance as store

    cfg = load_config(args.config, check_files=False)
    if cfg is None:
        return EXIT_BAD_CONFIG
    kinds = _known_boxes(cfg)
    names = list(kinds)
    path = store.path_in(cfg.agent.state_dir)
    now_s = time.time()
    if args.maintenance_action == "list":
        return _list(cfg, path, names, now_s, args.json)
    if bool(args.boxes) == bool(args.all):
        print(f"maintenance {args.maintenance_action}: name boxes or give --all (not both)", file=sys.stderr)
        return EXIT_BAD_CONFIG
    unknown = [b for b in args.boxes if b not in names]
    if unknown and cfg.discovery.docker:
        # A discovered box is known to the running agent only; its name is kept for the container of that name.
        print(f"maintenance {args.maintenance_action}: {', '.join(map(repr, unknown))} not seen yet (not in the config "
              "nor in the agent's status.json); kept for a discovered container of that name", file=sys.stderr)
        names += unknown
        kinds.update({b: "container" for b in unknown})
    elif unknown:
        print(f"maintenance {args.maintenance_action}: unknown box {', '.join(map(repr, unknown))}; configured: "
              f"{', '.join(names)}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    boxes = None if args.all else list(dict.fromkeys(args.boxes))
    who = who_am_i()
    if args.maintenance_action == "start":
        for_s = None
        if args.for_ is not None:
            from agent.timeparse import parse_duration_s
            try:
                for_s = parse_duration_s(args.for_)
            except ValueError as exc:
                print(f"maintenance start: --for: {exc}", file=sys.stderr)
                return EXIT_BAD_CONFIG
            if for_s <= 0:
                print(f"maintenance start: --for: expected a duration > 0, got {args.for_!r}", file=sys.stderr)
                return EXIT_BAD_CONFIG
        reason = args.reason.strip() or "no reason given"
        try:
            w = store.start(path, boxes, now_s, for_s, reason, who)
        except (OSError, ValueError) as exc:
            print(f"maintenance start: NOT STARTED: cannot write {path}: {exc}", file=sys.stderr)
            return EXIT_NOT_WRITTEN
        if not args.json:
            print(f"maintenance started for {', '.join(boxes) if boxes else 'every box'}: {reason!r} by {who}, "
                  f"{_iso(w.end_s) if w.end_s is None else 'until ' + _iso(w.end_s)} ({path}; a running agent "
                  "applies it from its next cycle)")
        recorded = _record(cfg, kinds, boxes or names, "start", reason, who, w.end_s, now_s, quiet=args.json)
        if args.json:
            print(json.dumps({"action": "start", "boxes": boxes if boxes else "all", "reason": reason, "who": who,
                              "start_s": now_s, "end_s": w.end_s, "file": path, "recorded": recorded}, indent=2))
        return EXIT_OK
    from agent.core.maintenance import in_maintenance
    try:
        before = store.load(path)
        store.end(path, boxes, names, now_s)
    except (OSError, ValueError) as exc:
        print(f"maintenance end: NOT ENDED: cannot write {path}: {exc}", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    targets = boxes or names
    ended = [b for b in targets if in_maintenance([b], before, (), now_s)]
    if not args.json:
        print(f"maintenance ended for {', '.join(ended) if ended else 'no box (none was in an ad-hoc window)'} "
              f"({path}; a running agent applies it from its next cycle)")
    still = in_maintenance(targets, (), [m.recurring() for m in cfg.maintenance], now_s)
    for name, why in sorted(still.items()):
        print(f"box {name} stays in maintenance until {_iso(why.until_s)}: recurring window {why.reason!r} of the "
              "config ([[maintenance]])", file=sys.stderr)
    ended_recorded: bool | None = None   # None: nothing ended, nothing to record
    if ended:
        ended_recorded = _record(cfg, kinds, ended, "end", "ended by " + who, who, now_s, now_s, quiet=args.json)
    if args.json:
        print(json.dumps({"action": "end", "boxes": ended, "who": who, "end_s": now_s, "file": path,
                          "still_in_maintenance": sorted(still), "recorded": ended_recorded}, indent=2))
    return EXIT_OK


def _list(cfg, path: str, names: list[str], now_s: float, as_json: bool) -> int:
    from agent import maintenance as store
    from agent.core.maintenance import in_maintenance

    try:
        windows = store.load(path)
    except ValueError as exc:
        print(f"maintenance list: {exc}", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    recurring = [m.recurring() for m in cfg.maintenance]
    active = in_maintenance(names, windows, recurring, now_s)
    current = [w for w in windows if w.end_s is None or w.end_s > now_s]
    if as_json:
        print(json.dumps({
            "now_s": now_s,
            "boxes": {n: {"reason": a.reason, "who": a.who, "until_s": a.until_s, "source": a.source}
                      for n, a in sorted(active.items())},
            "windows": [{"boxes": list(w.boxes) if w.boxes is not None else "all", "start_s": w.start_s,
                         "end_s": w.end_s, "reason": w.reason, "who": w.who} for w in current],
            "recurring": [{"boxes": list(m.boxes) if m.boxes is not None else "all",
                           "weekdays": list(m.weekdays), "start": f"{m.start_min // 60:02d}:{m.start_min % 60:02d}",
                           "duration_s": m.duration_s, "timezone": m.timezone, "reason": m.reason}
                          for m in cfg.maintenance]}, indent=2))
        return EXIT_OK
    if not active:
        print("no box is in maintenance now")
    for name, a in sorted(active.items()):
        by = f" by {a.who}" if a.who else ""
        print(f"{name:<20} maintenance {_iso(a.until_s) if a.until_s is None else 'until ' + _iso(a.until_s)}"
              f"  {a.reason!r}{by}  [{a.source}]")
    for w in current:
        print(f"window   {', '.join(w.boxes) if w.boxes is not None else 'all boxes'}: {_iso(w.start_s)} .. "
              f"{_iso(w.end_s) if w.end_s is not None else 'until ended'}  {w.reason!r} by {w.who}")
    for m in cfg.maintenance:
        days = ",".join(m.weekdays) or "every day"
        print(f"recurring {', '.join(m.boxes) if m.boxes is not None else 'all boxes'}: {days} "
              f"{m.start_min // 60:02d}:{m.start_min % 60:02d} {m.timezone} for {m.duration_s:g} s  {m.reason!r}")
    return EXIT_OK


def _known_boxes(cfg) -> dict[str, str]:
    """Box name -> kind: the config's boxes and those the agent last wrote in status.json (discovered ones)."""
    from agent.listeners.status import STATUS_FILE

    kinds = {b.name: b.kind for b in cfg.boxes}
    try:
        with open(os.path.join(cfg.agent.state_dir, STATUS_FILE), encoding="utf-8") as fh:
            seen = json.load(fh).get("boxes") or {}
        for name, b in seen.items():
            if isinstance(b, dict):
                kinds.setdefault(name, str(b.get("kind") or "container"))
    except (OSError, ValueError, AttributeError):
        pass   # no agent ran yet, or its status is unreadable: the config's boxes
    return kinds


def _record(cfg, kinds: dict[str, str], boxes: list[str], event: str, reason: str, who: str, until_s: float | None,
            now_s: float, quiet: bool = False) -> bool:
    """Write one `maintenance` point per box (origin command) to InfluxDB; say so on stderr when that fails (and
    on stdout when it worked, unless QUIET: --json prints one object)."""
    from agent.storage import points as P
    from agent.storage.influx import make_writer

    if cfg.influxdb is None:   # stores are optional: nothing to record in, and nothing failed
        print("not recorded in InfluxDB: no [influxdb] in the config (the window itself is in effect)")
        return True
    pts = [P.maintenance_point(b, kinds[b], cfg.agent.site, event, "command", reason, who, until_s, "command", now_s)
           for b in boxes]
    writer = make_writer(cfg.influxdb)
    try:
        writer.send("\n".join(P.to_lines(pts)).encode())
        if not quiet:
            print(f"recorded in InfluxDB ({len(pts)} maintenance point{'s' if len(pts) != 1 else ''})")
        return True
    except Exception as exc:  # noqa: BLE001 - SinkError and connection trouble alike: say so; the file counts
        print(f"maintenance {event}: not recorded in InfluxDB ({_influx_reason(exc)}); the window itself is in "
              f"effect; {INFLUX_CHECK}", file=sys.stderr)
        return False
    finally:
        writer.close()
