"""`vobox-agent discover [-c FILE]`: print the [[box]] TOML of the containers discovery finds (exit 0; 1: no Docker)."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the discover subcommand."""
    p = subparsers.add_parser(
        "discover",
        description=(
            "Ask the Docker engine which containers [discovery] selects (the label, default "
            "vobox.monitor=true, or one of [discovery] networks) and print a [[box]] table for each, with "
            "the addresses, network and MAC the engine reports, for a fixed config file. Containers the "
            "config already has as [[box]] are left out; skipped ones (bad labels, no address) are listed "
            "on stderr. Exit 0, 1 when Docker cannot be asked, 2 for a bad config."),
        help="print the [[box]] TOML of the containers discovery finds")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="agent config whose [discovery] (and [[box]] overrides) apply; default: $VOBOX_AGENT_CONFIG, "
                        "else /etc/vobox-agent/agent.toml when it exists, else the label vobox.monitor=true only")
    p.add_argument("--json", action="store_true",
                   help="print the boxes found as one JSON object (schema: docs/schemas/discover.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the TOML; warnings and overridden containers as comments on stderr."""
    from agent.commands import EXIT_BAD_CONFIG, load_config, optional_config
    from agent.core import config as C
    from agent.core.discovery import to_toml
    from agent.discovery import discover_now
    from agent.wiring import docker_factory

    config_path = optional_config(args.config)
    if config_path is not None:
        cfg = load_config(config_path, check_files=False)
        if cfg is None:
            return EXIT_BAD_CONFIG
    else:
        cfg = C.parse({"discovery": {"docker": True}})
    try:
        found = discover_now(cfg, docker_factory(timeout_s=10, socket=cfg.engine.socket)())
    except Exception as exc:  # noqa: BLE001 - Docker unreachable or refusing: one line, exit 1
        from agent.commands import engine_problem

        print(f"vobox-agent discover: {engine_problem(exc, cfg.engine.socket)}", file=sys.stderr)
        return 1
    if args.json:
        import json

        print(json.dumps({"boxes": [{"table": f.table, "container_id": f.container_id, "mac": f.mac}
                                    for f in found.found],
                          "overridden": list(found.overridden), "warnings": list(found.warnings),
                          "label": cfg.discovery.label, "networks": list(cfg.discovery.networks)}, indent=2))
        return 0
    for name in found.overridden:
        print(f"# container {name}: already a [[box]] of the config, left out", file=sys.stderr)
    for w in found.warnings:
        print(f"# {w}", file=sys.stderr)
    print(f"# {len(found.found)} container box{'es' if len(found.found) != 1 else ''} found by discovery "
          f"(label {cfg.discovery.label}"
          + (f", networks {', '.join(cfg.discovery.networks)}" if cfg.discovery.networks else "") + ")")
    sys.stdout.write(to_toml(found.found))
    return 0
