"""`vobox-agent report -c FILE --since 7d [--html report.html]`: fleet stability with 95% intervals, containers vs VMs."""
from __future__ import annotations

import argparse
import os
import sys
import time

from agent.commands import EXIT_BAD_CONFIG, default_config, influx_unreadable, load_config, optional_config
from agent.timeparse import parse_duration_s, parse_time_s


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the report subcommand."""
    p = subparsers.add_parser(
        "report",
        description=(
            "Availability, freezes and time to recovery per kind (container, VM) and per box, with 95%% "
            "confidence intervals, from InfluxDB (or a Prometheus query API: --prometheus) over --since up to "
            "--until (default now). The report states the span it really covers (first to last point), the "
            "boxes and cycles in it, and lists segment outages (every box down at once) apart. --html FILE also "
            "writes a self-contained page with charts."),
        help="stability report per kind and per box with 95%% intervals")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="agent config (TOML): [influxdb] to read and [agent] site (needed without --prometheus); "
                        "default $VOBOX_AGENT_CONFIG, else /etc/vobox-agent/agent.toml")
    p.add_argument("--since", default="7d", help="how far back, e.g. 24h, 7d, 4w (default 7d)")
    p.add_argument("--until", default=None, metavar="TIME",
                   help="end of the range: epoch seconds or ISO 8601 with a UTC offset (default: now)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with charts")
    p.add_argument("--prometheus", metavar="URL",
                   help="read the agents' metrics from this Prometheus query API (Prometheus, Thanos Query, Mimir's "
                        ".../prometheus; only Prometheus is tested) instead of InfluxDB")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                   help="an HTTP header for --prometheus, e.g. X-Scope-OrgID:tenant (repeatable)")
    p.add_argument("--bearer-token-file", metavar="FILE",
                   help="--prometheus: send the token in FILE as Authorization: Bearer")
    p.add_argument("--site-label", default=None, metavar="NAME",
                   help="--prometheus: the label that carries the site (default: the config's [metrics] site_label, "
                        "vobox_site unless set; `site` when the scrape config puts the site on the targets)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--site", metavar="NAME", help="the boxes of this site (default: the config's [agent] site)")
    where.add_argument("--all-sites", action="store_true",
                       help="the whole fleet: every site's boxes in one table (named SITE/BOX)")
    p.add_argument("--json", action="store_true",
                   help="print the report as one JSON object (schema: docs/schemas/report.json)")
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
    cfg = None
    # InfluxDB needs a config: -c, else the default (issue 33); --prometheus reads the default only when it exists
    config_path = args.config if args.config is not None or args.prometheus is None else optional_config(None)
    if config_path is None and args.prometheus is None:
        default, chosen_by = default_config()
        if not os.path.isfile(default):
            print(f"vobox-agent report: -c FILE is needed to read InfluxDB (or --prometheus URL): the default "
                  f"{default} ({chosen_by}) does not exist; write one with `vobox-agent init --output {default}`",
                  file=sys.stderr)
            return EXIT_BAD_CONFIG
    if config_path is not None or args.prometheus is None:
        cfg = load_config(config_path, check_files=False)
        if cfg is None:
            return EXIT_BAD_CONFIG
    site = None if args.all_sites else args.site if args.site is not None else cfg.agent.site if cfg else None
    end_ms = int(end_s * 1000)
    start_ms = end_ms - int(since_s * 1000)
    footer = ""
    if args.prometheus is not None:
        if site is None and not args.all_sites and cfg is None:
            print("vobox-agent report: --prometheus needs --site NAME or --all-sites (or -c FILE for its site)",
                  file=sys.stderr)
            return 2
        read = _read_prometheus(args, start_ms, end_ms, site, cfg.metrics.site_label if cfg is not None else None)
        if isinstance(read, int):
            return read
        obs, footer = read
        where = args.prometheus
    else:
        assert cfg is not None
        source = source_from_config(cfg)
        where = source.where
        try:
            obs = read_fleet(source.query, start_ms, end_ms, source.interval_s, site)
        except QueryError as exc:
            print(f"vobox-agent report: {influx_unreadable(exc, source.where)}", file=sys.stderr)
            return 1
    if not obs.boxes:
        print(f"vobox-agent report: no boxes in {where} for the last {args.since}"
              + (f" at site {site!r}" if site else ""), file=sys.stderr)
        return 1
    report = build_report(obs)
    if args.json:
        import json

        from agent.report.data import report_data

        data = report_data(report)
        # where the figures come from; the footer's Prometheus details stay in the text
        data["source"] = {"kind": "prometheus" if args.prometheus is not None else "influxdb", "where": where}
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_text(report) + footer)
    if args.html:
        tmp = args.html + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(render_html(report))
            os.replace(tmp, args.html)
        except OSError as exc:
            print(f"vobox-agent report: cannot write --html {args.html}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.html}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _read_prometheus(args: argparse.Namespace, start_ms: int, end_ms: int, site: str | None,
                     config_label: str | None = None):
    """(observation, footer line) from --prometheus, or an exit code after a one-line error.

    The site label: --site-label, else the config's [metrics] site_label, else its default (vobox_site)."""
    from agent.report.prom import SITE_LABEL, Api, PromError, http_fetch, read_prometheus
    from agent.secretfile import SecretFileError, read_secret

    headers: dict[str, str] = {}
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip() or any(c in name for c in " \t\r\n") or any(c in value for c in "\r\n"):
            print(f"vobox-agent report: --header {h!r}: expected NAME:VALUE (e.g. X-Scope-OrgID:tenant)",
                  file=sys.stderr)
            return 2
        headers[name.strip()] = value.strip()
    if args.bearer_token_file:
        try:
            headers["Authorization"] = "Bearer " + read_secret(args.bearer_token_file)
        except SecretFileError as exc:
            print(f"vobox-agent report: --bearer-token-file: {exc}", file=sys.stderr)
            return 2
    try:
        read = read_prometheus(Api(http_fetch(args.prometheus, headers)), start_ms, end_ms, site,
                               args.site_label or config_label or SITE_LABEL)
    except PromError as exc:
        print(f"vobox-agent report: cannot read Prometheus: {exc}", file=sys.stderr)
        return 1
    scrape = f"{read.scrape_interval_s:g} s" if read.scrape_interval_s else "-"
    footer = (f"source: {args.prometheus} (Prometheus), sites {', '.join(s or '(none)' for s in read.sites) or '-'}, "
              f"scrape interval {scrape}, unobserved {read.unobserved_s:.0f} s (no sample for 2 scrape intervals); "
              "per-freeze start times, segment outages and audit classes are read from InfluxDB only\n")
    return read.observation, footer
