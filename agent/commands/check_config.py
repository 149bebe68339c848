"""`vobox-agent check-config -c FILE`: validate a config, print a summary or every error (exit 0 / 2)."""
from __future__ import annotations

import argparse
from collections import Counter

EXIT_OK = 0
EXIT_INVALID = 2
# A valid config may configure no store (issue 31): said, not refused.
NO_STORE_WARNING = ("no store configured (no [influxdb], [metrics] listen or [otlp] endpoint): the agent probes, "
                    "remediates and writes status.json, but keeps no history of freezes and remediations")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the check-config subcommand."""
    p = subparsers.add_parser(
        "check-config",
        description=(
            "Validate FILE strictly (unknown keys are errors) and print every problem with its key path. Exit"
            " 0 when valid, 2 when not."),
        help="validate a config file and exit (0 valid, 2 invalid)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("-c", "--config", metavar="FILE", help="agent config (TOML)")
    what.add_argument("--schema", action="store_true",
                      help="print the config's JSON Schema (for editors, e.g. taplo / Even Better TOML) and exit")
    p.set_defaults(func=run)


def summary(cfg) -> str:
    """One line: number of boxes by kind, sink, remediation and correlation settings."""
    kinds = Counter(b.kind for b in cfg.boxes)
    kinds_text = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(kinds.items()))
    sink = ", ".join(cfg.stores()) or "no store"
    rem = ("remediation " + ("dry-run" if cfg.remediation.dry_run else "on")) if cfg.remediation.enabled \
        else "remediation off"
    disc = cfg.discovery
    found = (f" + discovered (label {disc.label}" + (f" or networks {', '.join(disc.networks)}" if disc.networks
                                                   else "") + ")") if disc.docker else ""
    return (f"OK: {len(cfg.boxes)} box{'es' if len(cfg.boxes) != 1 else ''} ({kinds_text}){found}; "
            f"interval {cfg.agent.interval_s:g} s; {sink}; {rem}")


def run(args: argparse.Namespace) -> int:
    """Load the config; print "OK: ..." (exit 0) or every error, one a line (exit 2); --schema: the JSON Schema."""
    if args.schema:
        import json

        from agent.core.config.schema import json_schema

        print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
        return EXIT_OK
    from agent.commands import load_config

    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_INVALID
    print(summary(cfg))
    if not cfg.stores():
        import sys

        print(f"check-config: WARNING: {NO_STORE_WARNING}", file=sys.stderr)
    return EXIT_OK
