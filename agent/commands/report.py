"""`vobox-agent report -c FILE --since 7d [--html report.html]`: fleet stability with 95% intervals, containers vs VMs."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReportSource:
    """What the report needs from the agent config: where to read, the site, the cycle length."""

    query: Callable[[str], list[dict]]
    site: str | None
    interval_s: float
    where: str  # for messages


def source_from_config(path: str) -> ReportSource:
    """Read [influxdb], [agent].site and [agent].interval through agent.core.config.load."""
    from agent.core.config import load
    from agent.storage.influx import query

    cfg = load(path)
    influx = cfg.influxdb
    if influx.api == "v2":
        # 2.x/3.x: InfluxQL through the v1 compatibility API; the bucket needs a DBRP mapping named after it
        kw = {"db": influx.bucket, "token": influx.token}
    else:
        kw = {"db": influx.database, "username": influx.username, "password": influx.password}
    timeout_s = max(30.0, influx.write_timeout_s)

    def run_query(q: str) -> list[dict]:
        return query(influx.url, q, timeout_s=timeout_s, epoch="ms", **kw)

    return ReportSource(run_query, cfg.agent.site, cfg.agent.interval_s, f"{influx.url} ({kw['db']})")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the report subcommand."""
    p = subparsers.add_parser("report", help="stability report per kind and per box with 95%% intervals")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="agent config (TOML)")
    p.add_argument("--since", default="7d", help="how far back, e.g. 24h, 7d, 4w (default 7d)")
    p.add_argument("--until", default=None, metavar="EPOCH_S",
                   help="end of the range as epoch seconds (default: now)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with charts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read, compute, print; 2 on a bad argument or config, 1 when InfluxDB cannot be read."""
    from agent.commands.events import parse_duration_s
    from agent.core.config import ConfigError
    from agent.report import build_report, read_fleet, render_html, render_text
    from agent.storage.influx import QueryError

    try:
        since_s = parse_duration_s(args.since)
        end_s = float(args.until) if args.until is not None else time.time()
    except ValueError as exc:
        print(f"vobox-agent report: {exc}", file=sys.stderr)
        return 2
    try:
        source = source_from_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"vobox-agent report: {exc}", file=sys.stderr)
        return 2
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
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(render_html(report))
        os.replace(tmp, args.html)
        print(f"wrote {args.html}")
    return 0
