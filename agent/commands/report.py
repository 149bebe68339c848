"""`vobox-agent report -c FILE --since 7d [--html report.html]`: fleet stability with 95% intervals, containers vs VMs."""
from __future__ import annotations

import argparse
import os
import sys
import time

from agent.commands import EXIT_BAD_CONFIG, load_config
from agent.timeparse import parse_duration_s, parse_time_s


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the report subcommand."""
    p = subparsers.add_parser(
        "report",
        description=(
            "Availability, freezes and time to recovery per kind (container, VM) and per box, with 95%% "
            "confidence intervals, from InfluxDB over --since up to --until (default now). The report states "
            "the span it really covers (first to last point), the boxes and cycles in it, and lists segment "
            "outages (every box down at once) apart. --html FILE also writes a self-contained page with "
            "charts."),
        help="stability report per kind and per box with 95%% intervals")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="agent config (TOML)")
    p.add_argument("--since", default="7d", help="how far back, e.g. 24h, 7d, 4w (default 7d)")
    p.add_argument("--until", default=None, metavar="TIME",
                   help="end of the range: epoch seconds or ISO 8601 with a UTC offset (default: now)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with charts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read, compute, print; 2 on a bad argument or config, 1 when InfluxDB cannot be read."""
    from agent.report import build_report, read_fleet, render_html, render_text, source_from_config
    from agent.storage.read import QueryError

    try:
        since_s = parse_duration_s(args.since)
    except ValueError as exc:
        print(f"vobox-agent report: --since: {exc}", file=sys.stderr)
        return 2
    try:
        end_s = parse_time_s(args.until) if args.until is not None else time.time()
    except ValueError as exc:
        print(f"vobox-agent report: --until: {exc}", file=sys.stderr)
        return 2
    cfg = load_config(args.config, check_files=False)
    if cfg is None:
        return EXIT_BAD_CONFIG
    source = source_from_config(cfg)
    end_ms = int(end_s * 1000)
    start_ms = end_ms - int(since_s * 1000)
    try:
        obs = read_fleet(source.query, start_ms, end_ms, source.interval_s, source.site)
    except QueryError as exc:
        print(f"vobox-agent report: cannot read {source.where}: {exc}", file=sys.stderr)
        return 1
    if not obs.boxes:
        print(f"vobox-agent report: no `box` points in {source.where} for the last {args.since}"
              + (f" at site {source.site!r}" if source.site else ""), file=sys.stderr)
        return 1
    report = build_report(obs)
    sys.stdout.write(render_text(report))
    if args.html:
        tmp = args.html + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(render_html(report))
            os.replace(tmp, args.html)
        except OSError as exc:
            print(f"vobox-agent report: cannot write --html {args.html}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.html}")
    return 0
