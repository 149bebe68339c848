"""`vobox-lab`: the test lab's command (not part of the product): up, status, fault, clear, down, demo."""
from __future__ import annotations

import argparse
import logging


def build_parser() -> argparse.ArgumentParser:
    """The `vobox-lab` parser: the lab's actions (lab.commands) and the demo (lab.demo)."""
    from lab import commands, demo

    parser = argparse.ArgumentParser(
        prog="vobox-lab",
        description="A lab of VO-Box containers on a macvlan network, VM stand-ins and InfluxDB, all in network "
                    "namespaces of its own, to rehearse faults and run the demo. Needs root and a Docker engine.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    sub = commands.register(parser)
    demo.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, set up logging and run the action."""
    from agent.ops import logs

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        logs.setup(args.log_level)
    except ValueError as exc:
        parser.error(str(exc))
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
    return int(args.func(args) or 0)
