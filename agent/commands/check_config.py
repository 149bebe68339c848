"""`vobox-agent check-config -c FILE`: validate a config, print a summary or every error (exit 0 / 2)."""
from __future__ import annotations

import argparse
import sys
from collections import Counter

from agent.commands import CONFIG_HELP

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
    what = p.add_mutually_exclusive_group()
    what.add_argument("-c", "--config", metavar="FILE", help=CONFIG_HELP)
    what.add_argument("--schema", action="store_true",
                      help="print the config's JSON Schema (for editors, e.g. taplo / Even Better TOML) and exit")
    p.add_argument("--json", action="store_true",
                   help="print the verdict as one JSON object: valid, file, boxes or errors "
                        "(schema: docs/schemas/check-config.json)")
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


def summary_data(cfg, path: str) -> dict:
    """What `summary` says, as data (check-config --json): the boxes, the sink, remediation and discovery."""
    rem = ("dry_run" if cfg.remediation.dry_run else "on") if cfg.remediation.enabled else "off"
    return {"valid": True, "file": path, "errors": [],
            "boxes": [{"name": b.name, "kind": b.kind, "ipv4": b.ipv4, "ipv6": b.ipv6} for b in cfg.boxes],
            "interval_s": cfg.agent.interval_s, "timeout_s": cfg.agent.timeout_s, "site": cfg.agent.site,
            "influxdb": {"api": cfg.influxdb.api, "url": cfg.influxdb.url}, "remediation": rem,
            "discovery": {"docker": cfg.discovery.docker, "label": cfg.discovery.label,
                          "networks": list(cfg.discovery.networks)}}


def _run_json(path: str | None) -> int:
    """check-config --json: the verdict on stdout as one object (errors in it too); exit 0 / 2 as without."""
    import json

    from agent.commands import default_config
    from agent.core import config

    if path is None:
        path, source = default_config()
        print(f"vobox-agent: reading config {path} ({source}; -c FILE to choose another)", file=sys.stderr)
    try:
        cfg = config.load(path, check_files=True)
    except config.ConfigError as exc:
        print(json.dumps({"valid": False, "file": path, "errors": list(exc.errors)}, indent=2))
        return EXIT_INVALID
    except OSError as exc:   # load says a missing file with ConfigError; anything else the OS says, too
        why = exc.strerror or str(exc)
        print(json.dumps({"valid": False, "file": path, "errors": [f"{path}: {why}"]}, indent=2))
        return EXIT_INVALID
    print(json.dumps(summary_data(cfg, path), indent=2))
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Load the config; print "OK: ..." (exit 0) or every error, one a line (exit 2); --schema: the JSON Schema."""
    if args.schema:
        import json

        from agent.core.config.schema import json_schema

        print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
        return EXIT_OK
    if args.json:
        return _run_json(args.config)
    from agent.commands import load_config

    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_INVALID
    print(summary(cfg))
    if not cfg.stores():
        import sys

        print(f"check-config: WARNING: {NO_STORE_WARNING}", file=sys.stderr)
    return EXIT_OK
