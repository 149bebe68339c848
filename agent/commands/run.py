"""`vobox-agent run -c FILE`: the agent itself (the parts are wired in agent.wiring)."""
from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
import threading
from typing import Any

from agent.commands import add_config_option

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
    add_config_option(p)
    p.add_argument("--cycles", type=int, default=0, metavar="N", help="stop after N cycles (0: run until signalled)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT (or --cycles N): finish the cycle, flush storage, exit 0."""
    from agent.commands import load_config
    from agent.ops import systemd
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
    # The main thread waits on a pipe, never in a lock without a timeout: a process signal that the
    # kernel delivers to another thread does not interrupt a lock wait, so the Python handler (run by
    # the main thread only) would never run and SIGTERM would be lost. signal.set_wakeup_fd has the C
    # handler write to the pipe from whichever thread got the signal; the handlers take no lock.
    signals: list[int] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    def on_signal(signum: int, _frame: Any) -> None:
        signals.append(signum)   # list.append is atomic, and takes no lock a thread could hold
        try:
            os.write(wake_w, b"\0")
        except OSError:   # the pipe is full: the main thread is awake already
            pass

    def request_stop() -> None:   # from another thread (--cycles), never from a handler
        stop.set()

    def take_signals() -> bool:
        """Act on the signals noted so far; True when SIGHUP asked for a reload."""
        reload = False
        while signals:
            if signals.pop(0) == signal.SIGHUP:
                reload = True
            else:
                stop.set()
        return reload

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

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # before assembling: a signal during start-up
        signal.signal(sig, on_signal)                             # stops cleanly too
    from agent.wiring import SetupError, assemble

    try:
        assembly = assemble(cfg, on_cycle=on_cycle, monitor_netns=getattr(args, "netns", None))
    except SetupError as exc:
        print(f"vobox-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    take_signals()
    if stop.is_set():
        assembly.close()
        return EXIT_OK
    assembly.start()
    systemd.ready(f"probing {len(cfg.boxes)} boxes every {cfg.agent.interval_s:g} s")
    log.info("agent running: %d boxes, interval %g s, state in %s", len(cfg.boxes), cfg.agent.interval_s,
             cfg.agent.state_dir)
    while not stop.is_set():
        if select.select([wake_r], [], [], 0.5)[0]:
            os.read(wake_r, 4096)
        if take_signals() and not stop.is_set():
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
