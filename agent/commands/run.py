"""`vobox-agent run -c FILE`: the agent itself (the parts are wired in agent.wiring)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_PRIVILEGE = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the run subcommand."""
    p = subparsers.add_parser(
        "run",
        description=(
            "Run the agent in the foreground: a probe cycle every [agent] interval, freeze detection, "
            "InfluxDB writes (spooled when InfluxDB is down), remediation within its budget, evidence "
            "bundles, status.json. Stops on SIGTERM/SIGINT; SIGHUP reloads the webhook's TLS certificate and "
            "token. Under systemd it notifies readiness and the "
            "watchdog."),
        help="run the agent: probe cycles, freeze detection, storage, remediation")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="agent config (TOML)")
    p.add_argument("--cycles", type=int, default=0, metavar="N", help="stop after N cycles (0: run until signalled)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT (or --cycles N): finish the cycle, flush storage, exit 0."""
    from agent.ops import systemd
    from agent.commands import load_config
    from probes import PrivilegeError
    from probes.privileges import require_raw

    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    try:
        require_raw()
    except PrivilegeError as exc:
        print(f"vobox-agent: {exc}", file=sys.stderr)
        return EXIT_PRIVILEGE

    _warn_missing_capabilities(cfg)

    stop = threading.Event()
    reload = threading.Event()   # SIGHUP: reload the files services read (the webhook's TLS certificate), not stop
    wake = threading.Event()     # set with either: the main thread waits on it

    def request_stop(*_: Any) -> None:
        stop.set()
        wake.set()

    def request_reload(*_: Any) -> None:
        reload.set()
        wake.set()

    done_cycles = [0]

    def on_cycle(summary: Any) -> None:
        done_cycles[0] += 1
        systemd.status(f"{summary.boxes - len(summary.frozen)} of {summary.boxes} boxes not frozen; "
                       f"last cycle {summary.cycle_s:.2f} s")
        if summary.unhealthy:
            log.info("cycle: %d boxes, %.2f s, unhealthy: %s, frozen: %s", summary.boxes, summary.cycle_s,
                     ", ".join(summary.unhealthy), ", ".join(summary.frozen) or "-")
        if args.cycles and done_cycles[0] >= args.cycles:
            request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):  # before assembling: a signal during start-up stops cleanly too
        signal.signal(sig, request_stop)
    signal.signal(signal.SIGHUP, request_reload)
    from agent.wiring import SetupError, assemble

    try:
        assembly = assemble(cfg, on_cycle=on_cycle, monitor_netns=getattr(args, "netns", None))
    except SetupError as exc:
        print(f"vobox-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if stop.is_set():
        assembly.close()
        return EXIT_OK
    assembly.start()
    systemd.ready(f"probing {len(cfg.boxes)} boxes every {cfg.agent.interval_s:g} s")
    log.info("agent running: %d boxes, interval %g s, state in %s", len(cfg.boxes), cfg.agent.interval_s,
             cfg.agent.state_dir)
    while not stop.is_set():
        wake.wait()
        wake.clear()
        if reload.is_set() and not stop.is_set():
            reload.clear()
            log.info("SIGHUP: reloading the webhook's TLS certificate and token")
            assembly.reload()
    systemd.stopping()
    log.info("stopping: finishing the cycle in progress and flushing storage")
    assembly.stop()
    return EXIT_OK


def _warn_missing_capabilities(cfg: Any) -> None:
    """One WARNING per capability this config needs and the process lacks (what `doctor` says, at every start)."""
    import os

    from agent.ops.doctor.privileges import check_capabilities, read_proc_status

    try:
        results = check_capabilities(cfg, read_proc_status(), os.geteuid() == 0)
    except OSError as exc:
        log.warning("cannot read this process's capabilities: %s", exc)
        return
    for r in results:
        if not r.ok or r.warning:
            log.warning("%s: %s; %s", r.name, r.detail, r.fix or "")
