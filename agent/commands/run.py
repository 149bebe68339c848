"""`vobox-agent run -c FILE`: the agent itself. This module is where every part is wired together."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_PRIVILEGE = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the run subcommand."""
    p = subparsers.add_parser("run", help="run the agent: probe cycles, freeze detection, storage, remediation")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="agent config (TOML)")
    p.add_argument("--cycles", type=int, default=0, metavar="N", help="stop after N cycles (0: run until signalled)")
    p.set_defaults(func=run)


@dataclass
class Assembly:
    """A wired agent and the background services around it, started and stopped together."""

    agent: Any
    scheduler: Any
    services: list[Any] = field(default_factory=list)   # objects with start()/stop()
    closers: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        """Start the services, then the probe cycles."""
        for s in self.services:
            s.start()
        self.scheduler.start()

    def stop(self) -> None:
        """Finish the running cycle, stop the services, flush storage (in that order)."""
        self.scheduler.stop()
        for s in reversed(self.services):
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("stopping %r failed", s)
        self.close()

    def close(self) -> None:
        """Flush storage, save state, close files (also for an assembly that never started)."""
        for close in self.closers:
            try:
                close()
            except Exception:  # noqa: BLE001
                log.exception("closing failed")


def assemble(cfg: Any, *, on_cycle: Callable[[Any], None] | None = None, monitor_netns: str | None = None,
             docker_factory: Callable[[], Any] | None = None) -> Assembly:
    """Build the agent from a Config: storage, forensics, correlation, remediation, webhook, scheduler."""
    from agent.core import correlation, macwatch
    from agent.ops import systemd
    from agent.commands.remediate import policy_from_config, target_from_box
    from agent.forensics.evidence import EvidenceCollector
    from agent.forensics.recorder import FlightRecorder
    from agent.pipeline import Agent
    from agent.schedule import CycleScheduler
    from agent.storage import points as P
    from agent.storage.store import Storage

    storage = Storage.from_config(cfg)
    site = cfg.agent.site
    kinds = {b.name: b.kind for b in cfg.boxes}
    make_docker = docker_factory
    if make_docker is None:
        from remediations import default_docker_factory

        make_docker = default_docker_factory()
    recorder = evidence = None
    fx = cfg.forensics
    if fx.enabled:
        # The ring must still hold the onset when the freeze is detected fail_cycles later.
        recorder = FlightRecorder({b.name: b.addresses() for b in cfg.boxes},
                                  cycles=fx.ring_cycles or cfg.freeze.fail_cycles + 2)
        evidence = EvidenceCollector(cfg.agent.state_dir, recorder, docker_client=_LazyDocker(make_docker),
                                     monitor_netns=monitor_netns, interface=cfg.agent.interface,
                                     max_bundles=fx.max_bundles, max_bytes=int(fx.max_mb * 1e6))
    correlator = correlation.Correlator(correlation.CorrelationSettings.from_config(cfg.correlation),
                                        correlation.memberships_from_config(cfg))
    services: list[Any] = []
    agent_box: dict[str, Agent] = {}

    remediation = None
    targets = [target_from_box(b) for b in cfg.boxes]
    if cfg.remediation.enabled:
        from remediations import ActionContext, RemediationService, Remediator, history

        policy = policy_from_config(cfg.remediation)

        def on_record(rec: Any) -> None:
            if rec.deferred:
                log.warning("box %s: %s deferred: %s", rec.box, rec.action, rec.deferred_reason)
            storage.write([P.remediation_point(rec.box, rec.kind, site, rec.action, rec.trigger, rec.ok,
                                               rec.recovered, rec.dry_run, rec.duration_s, rec.detail, rec.time_s,
                                               deferred=rec.deferred)])

        engine = Remediator(policy, targets, reprobe=lambda name: agent_box["agent"].reprobe(name))
        remediation = RemediationService(engine, ActionContext(docker_factory=make_docker, policy=policy), on_record,
                                         history_path=history.path_in(cfg.agent.state_dir))
        services.append(remediation)
        if cfg.remediation.webhook_listen:
            from remediations.webhook import WebhookReceiver, read_token

            services.append(WebhookReceiver(cfg.remediation.webhook_host, cfg.remediation.webhook_port,
                                            read_token(cfg.remediation.webhook_token_file), [b.name for b in cfg.boxes],
                                            lambda box, action: remediation.request(box, action, "alert"),
                                            max_bytes=cfg.remediation.webhook_max_bytes))
    if any(t.container for t in targets):
        from remediations.docker_events import DockerEventWatcher

        def on_event(rec: Any) -> None:
            storage.write([P.container_event_point(rec.box, kinds.get(rec.box, "container"), site, rec.event,
                                                   rec.time_s, rec.detail, rec.exit_code)])

        services.append(DockerEventWatcher(targets, make_docker, on_event))

    agent = Agent(cfg, storage, remediation=remediation, recorder=recorder, evidence=evidence,
                  correlator=correlator, macwatch=macwatch.MacWatch())
    agent_box["agent"] = agent
    storage.flush()  # an agent restarted with a non-empty spool replays it first

    def cycle() -> None:
        summary = agent.run_cycle()
        systemd.watchdog()
        if on_cycle is not None:
            on_cycle(summary)

    def count_misfire() -> None:
        agent.misfires += 1

    scheduler = CycleScheduler(cycle, cfg.agent.interval_s, cfg.agent.jitter_s, on_misfire=count_misfire)
    closers = [lambda: evidence.close(10.0)] if evidence is not None else []
    closers += [agent.close, storage.close]
    return Assembly(agent, scheduler, services, closers)


class _LazyDocker:
    """A docker client made on first use (the agent must start even when dockerd is down)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._factory()
        return getattr(self._client, name)



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

    stop = threading.Event()
    done_cycles = [0]

    def on_cycle(summary: Any) -> None:
        done_cycles[0] += 1
        systemd.status(f"{summary.boxes - len(summary.frozen)} of {summary.boxes} boxes not frozen; "
                       f"last cycle {summary.cycle_s:.2f} s")
        if summary.unhealthy:
            log.info("cycle: %d boxes, %.2f s, unhealthy: %s, frozen: %s", summary.boxes, summary.cycle_s,
                     ", ".join(summary.unhealthy), ", ".join(summary.frozen) or "-")
        if args.cycles and done_cycles[0] >= args.cycles:
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):  # before assembling: a signal during start-up stops cleanly too
        signal.signal(sig, lambda *_: stop.set())
    assembly = assemble(cfg, on_cycle=on_cycle, monitor_netns=getattr(args, "netns", None))
    if stop.is_set():
        assembly.close()
        return EXIT_OK
    assembly.start()
    systemd.ready(f"probing {len(cfg.boxes)} boxes every {cfg.agent.interval_s:g} s")
    log.info("agent running: %d boxes, interval %g s, state in %s", len(cfg.boxes), cfg.agent.interval_s,
             cfg.agent.state_dir)
    stop.wait()
    systemd.stopping()
    log.info("stopping: finishing the cycle in progress and flushing storage")
    assembly.stop()
    return EXIT_OK
