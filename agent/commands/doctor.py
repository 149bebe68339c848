"""`vobox-agent doctor -c FILE [--create-database]`: pre-flight checks, each with a PASS/WARN/FAIL line and a fix."""
from __future__ import annotations

import argparse

from agent.commands import add_config_option


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the doctor subcommand."""
    p = subparsers.add_parser(
        "doctor",
        description=(
            "Check what the agent needs before it runs: the files the config names, raw-socket privileges, "
            "the Docker API, InfluxDB (and "
            "its database or bucket), the macvlan host trap, and that every configured box answers. Each "
            "failure comes with the command that fixes it. Exit 0 when nothing failed, 1 otherwise."),
        help="check privileges, Docker, InfluxDB and every box; print fixes "
                                             "(exit 0 when nothing failed, 1 otherwise)")
    add_config_option(p)
    p.add_argument("--create-database", action="store_true",
                   help="create the InfluxDB database (v1) or bucket (v2) when it is missing")
    p.add_argument("--json", action="store_true",
                   help="print the checks as one JSON object (schema: docs/schemas/doctor.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, run every check, print the results; exit 0 when nothing failed, 1 otherwise (2: bad config)."""
    from agent.commands import EXIT_BAD_CONFIG, load_config
    from agent.ops import doctor

    cfg = load_config(args.config, check_files=False)   # the files are checks of their own (topic files)
    if cfg is None:
        return EXIT_BAD_CONFIG
    from agent.wiring import docker_factory

    results = doctor.run_checks(cfg, docker_factory=docker_factory(timeout_s=10, socket=cfg.engine.socket),
                                create_database=args.create_database)
    from agent import redact
    from agent.ops.logs import config_secrets

    # an error text may quote a request URL with the InfluxDB password in it: values redacted
    if args.json:
        import json

        print(json.dumps(redact.data(doctor.results_data(results), config_secrets(cfg)), indent=2))
    else:
        print(redact.text(doctor.format_results(results), config_secrets(cfg)))
    return doctor.exit_code(results)
