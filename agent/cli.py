"""Command-line entry point: the only place that wires config, probes, storage and remediation."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from agent import version as _version

# Subcommand name -> module under agent.commands. Each module exposes
# `register(subparsers) -> None`, which adds its parser and sets `func`
# (a callable taking the parsed args and returning an exit code).
COMMANDS: dict[str, str] = {
    "probe": "agent.commands.probe",
    "check-config": "agent.commands.check_config",
    "run": "agent.commands.run",
    "remediate": "agent.commands.remediate",
    "report": "agent.commands.report",
    "status": "agent.commands.status",
    "events": "agent.commands.events",
    "doctor": "agent.commands.doctor",
    "evidence": "agent.commands.evidence",
    "discover": "agent.commands.discover",
    "init": "agent.commands.init",
    "maintenance": "agent.commands.maintenance",
    "audit": "agent.commands.audit",
}


def _netns_name(text: str) -> str:
    """A name under /run/netns: not empty, no '/', not '.' or '..' (argparse type)."""
    if not text or "/" in text or text in (".", "..") or "\x00" in text:
        raise argparse.ArgumentTypeError(f"expected a network namespace name (as `ip netns list` shows), got {text!r}")
    return text


DESCRIPTION = """\
Watch VO-Box nodes (Docker containers on a macvlan network, and VMs): probe them
every cycle (ARP/NDP, ICMP, TCP, services), detect freezes and the layer that
failed, store everything in InfluxDB, and remediate (reconnect the network,
restart the container, a VM hook) within a budget."""

EPILOG = """\
Start with `vobox-agent init --output /etc/vobox-agent/agent.toml` (a config for
this host), `vobox-agent doctor`, then `vobox-agent run` (or the systemd unit).
Without -c FILE the commands read $VOBOX_AGENT_CONFIG, else
/etc/vobox-agent/agent.toml. `vobox-agent COMMAND --help` describes each command;
--json prints results as JSON (docs/schemas/). Exit 0 ok, 1 failed, 2 bad
arguments or config, 3 remediate not recorded. Operator guide (installed with
the package):
  <prefix>/share/doc/vobox-agent/operator-guide.md, e.g. under /opt/vobox-agent."""


def version() -> str:
    """The version (agent.version: the build's, else the checkout's git tag), as the distribution's metadata has it."""
    return _version.version()


def __getattr__(name: str) -> str:
    """`agent.cli.__version__`, as before versions came from tags (PEP 562: computed when read, not at import)."""
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _VersionAction(argparse.Action):
    """`--version`, asked only when given: a checkout's version runs `git describe`, which no other command pays."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str = "show the version and exit") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        try:
            text = version()
        except ValueError as exc:   # a tag or $VOBOX_AGENT_VERSION that is no release version
            parser.exit(2, f"vobox-agent: {exc}\n")
        sys.stdout.write(f"{parser.prog} {text}\n")   # stdout, as argparse's own version action
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="vobox-agent", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    parser.add_argument("--log-json", action="store_true", help="log one JSON object per line (for log shippers)")
    parser.add_argument("--netns", metavar="NAME", type=_netns_name,
                        help="run inside this network namespace (e.g. the lab's monitor namespace)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, set up logging, enter the namespace and run the subcommand."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from agent.ops import logs

    try:
        logs.setup(args.log_level, json=args.log_json)
    except ValueError as exc:
        parser.error(str(exc))
    # APScheduler logs every job start and end at INFO: one line per cycle is noise at 3 a.m.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.netns:
        from agent import netns

        try:
            netns.enter_for_process(args.netns)
        except OSError as exc:  # not a network namespace file, or no privilege to enter it
            raise SystemExit(f"vobox-agent: cannot enter network namespace {args.netns!r}: {exc}") from None
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()   # buffered output to a reader that left fails here, not as "Exception ignored" at exit
        return code
    except BrokenPipeError:  # `vobox-agent status | head`: the reader left; no traceback, and none at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        # A server (InfluxDB, Prometheus, the engine, the webhook) that a command's own handling missed: one line,
        # exit 1 (issue 33). Anything else is a bug and keeps its traceback.
        from agent.commands import EXIT_FAILED, unreachable_problem

        problem = unreachable_problem(exc)
        if problem is None:
            raise
        logging.getLogger(__name__).debug("%s failed", args.command, exc_info=True)
        print(f"vobox-agent {args.command}: {problem}", file=sys.stderr)
        return EXIT_FAILED
