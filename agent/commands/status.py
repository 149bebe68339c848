"""`vobox-agent status -c FILE`: one line per box from the running agent's status.json, else from InfluxDB."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict

from agent.commands import EXIT_BAD_CONFIG, add_config_option, influx_unreadable, load_config, number_in, seconds


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the status subcommand."""
    p = subparsers.add_parser(
        "status",
        description=(
            "One line per box from the running agent's status.json when it is fresh, else rebuilt from "
            "InfluxDB. --check reads status.json only and exits 0 when it is fresh, 1 when it is missing or "
            "stale (a container HEALTHCHECK)."),
        help="one line per box: state, layer, since, RTTs, open freeze, budget")
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    p.add_argument("--check", action="store_true",
                   help="health check: exit 0 when the running agent's status.json is fresh, 1 otherwise")
    p.add_argument("--watch", action="store_true",
                   help="redraw one table in place until Ctrl-C (plain lines when not a terminal)")
    interval = number_in(seconds, 0, 3600, "an interval in seconds > 0 and <= 3600 (or e.g. 500ms)", low_open=True)
    p.add_argument("--interval", type=interval, default=1.0, metavar="S",
                   help="--watch: seconds between redraws, or with a unit: 500ms")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the status; exit 1 when neither status.json nor InfluxDB can be read, 2 on a bad config."""
    from agent import redact
    from agent.ops.logs import config_secrets
    from agent.status import STATUS_FILE, format_status, read_status_file, snapshot

    if args.watch and (args.json or args.interval <= 0):   # a usage error, said before the config is read
        print("vobox-agent status: --watch takes no --json and needs --interval > 0", file=sys.stderr)
        return EXIT_BAD_CONFIG
    cfg = load_config(args.config, check_files=False)
    if cfg is None:
        return EXIT_BAD_CONFIG
    if args.watch:
        from agent.live import watch
        from agent.storage.read import QueryError

        def read(now: float):
            try:
                return snapshot(cfg, now), None
            except QueryError as exc:
                reason = read_status_file(os.path.join(cfg.agent.state_dir, STATUS_FILE), now)[1]
                return None, f"{reason}; and {influx_unreadable(exc)}"

        watch(read, args.interval)
        return 0
    now_s = time.time()
    if args.check:
        snap, reason = read_status_file(os.path.join(cfg.agent.state_dir, STATUS_FILE), now_s)
        if snap is None:
            print(f"vobox-agent status: unhealthy: {reason}", file=sys.stderr)
            return 1
        print(f"healthy: status.json written {snap.age_s or 0:.0f} s ago, {len(snap.boxes)} boxes")
        return 0
    try:
        snap = snapshot(cfg, now_s)
    except Exception as exc:
        # agent.storage.read is loaded already when InfluxDB was asked; a fresh status.json never imports it
        from agent.storage.read import QueryError

        if not isinstance(exc, QueryError):
            raise
        reason = read_status_file(os.path.join(cfg.agent.state_dir, STATUS_FILE), now_s)[1]
        print(f"vobox-agent status: {reason}; and {influx_unreadable(exc)}", file=sys.stderr)
        return 1
    secrets = config_secrets(cfg)
    if args.json:
        print(json.dumps(redact.data(asdict(snap), secrets), indent=2, sort_keys=True))
    else:
        print(redact.text(format_status(snap, now_s), secrets))
    return 0
