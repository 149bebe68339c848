"""`vobox-agent doctor -c FILE [--create-database]`: pre-flight checks, each with a PASS/WARN/FAIL line and a fix."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the doctor subcommand."""
    p = subparsers.add_parser("doctor", help="check privileges, Docker, InfluxDB and every box; print fixes "
                                             "(exit 0 when nothing failed, 1 otherwise)")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="agent config (TOML)")
    p.add_argument("--create-database", action="store_true",
                   help="create the InfluxDB database (v1) or bucket (v2) when it is missing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, run every check, print the results; exit 0 when nothing failed, 1 otherwise (2: bad config)."""
    from agent import config, doctor

    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print(f"FAIL  config: {args.config}: {len(exc.errors)} error(s)", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        return 2
    results = doctor.run_checks(cfg, create_database=args.create_database)
    print(doctor.format_results(results))
    return doctor.exit_code(results)
