"""The one wiring module: builds storage, the pipeline, its listeners and the services around it from a Config.

Commands only parse arguments and format output; whatever needs more than one part of the
product is built here. The Docker client comes from one factory (remediations.default_docker_factory),
made lazily so the agent starts even while dockerd is down.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.core.config import MIB, BoxConfig, Config

log = logging.getLogger(__name__)


class SetupError(Exception):
    """Something the config names cannot be used at run (a missing file...): one line, the command exits 2."""


def docker_factory(timeout_s: float = 60.0) -> Callable[[], Any]:
    """The one Docker client factory: DOCKER_HOST (e.g. a socket proxy), else /var/run/docker.sock."""
    from remediations import default_docker_factory

    return default_docker_factory(timeout_s=timeout_s)


class LazyDocker:
    """A docker client made on first use (the agent must start even when dockerd is down)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._factory()
        return getattr(self._client, name)


def record_point(rec: Any, site: str | None) -> Any:
    """The `remediation` point (agent.storage.points) of a remediations.ActionRecord."""
    from agent.storage import points as P

    return P.remediation_point(rec.box, rec.kind, site, rec.action, rec.trigger, rec.ok, rec.recovered, rec.dry_run,
                               rec.duration_s, rec.detail, rec.time_s, outcome=rec.outcome, reason=rec.reason,
                               who=rec.who, why=rec.why, forced=rec.forced)


def maintenance_source(cfg: Any) -> Any:
    """The maintenance windows of a Config: its [[maintenance]] and state_dir/maintenance.json (agent.maintenance)."""
    from agent.maintenance import MaintenanceSource, path_in

    return MaintenanceSource(path_in(cfg.agent.state_dir), [m.recurring() for m in cfg.maintenance])


def host_routes() -> Callable[[str], Any]:
    """address -> the route this host (in this network namespace) takes to it; the tables are read once."""
    from probes import routing

    tables: dict[int, list] = {}

    def route_of(address: str) -> Any:
        version = 6 if ":" in address else 4
        if version not in tables:
            try:
                tables[version] = routing.route_table(version)
            except (OSError, routing.RoutingError) as exc:
                log.warning("cannot read the IPv%d routes (%s); segments fall back to network/site", version, exc)
                tables[version] = []
        return routing.lookup(tables[version], address)

    return route_of


def probe_box(box: BoxConfig, cfg: Config, sweep: Callable[..., list] | None = None) -> bool:
    """Probe one box once with its cycle's probes; True when every probe answers (agent.core.cycle.classify)."""
    import probes
    from agent.core.cycle import box_targets, classify

    results = (sweep or probes.sweep)(box_targets(box), cfg.agent.timeout_s, cfg.agent.interface, None)
    return classify(results)[0]


def build_checks(cfg: Config, make_docker: Callable[[], Any]) -> Any:
    """The in-container checks runner (agent.checks.runner.CheckRunner), or None when no box has [[box.check]]."""
    from agent.checks.runner import BoxChecks, CheckRunner, ContainerPids

    boxes = [BoxChecks(b.name, b.container, b.checks) for b in cfg.boxes if b.checks and b.container]
    if not boxes:
        return None
    return CheckRunner(boxes, ContainerPids(make_docker), cfg.agent.timeout_s)


def _secrets(cfg: Config) -> tuple[str, ...]:
    """The config's secret values (passwords, tokens), redacted from status.json and evidence bundles."""
    from agent.ops.logs import config_secrets

    return config_secrets(cfg)


def build_listeners(cfg: Config, storage: Any, *, remediation: Any = None, evidence: Any = None,
                    known_macs: Callable[[str], Any] | None = None, metrics: Any = None) -> list[Any]:
    """The pipeline's listeners, in the order they get each cycle: points, evidence, remediation, status, metrics.

    storage: agent.storage.store.Storage (or anything with write/counters); remediation:
    remediations.RemediationService or None; evidence: agent.forensics.evidence.EvidenceCollector or None;
    metrics: agent.listeners.metrics.MetricsListener or None.
    """
    from agent.forensics.evidence import BoxRef, bundle_dir
    from agent.listeners.evidence import EvidenceListener
    from agent.listeners.points import PointsListener
    from agent.listeners.remediation import RemediationListener
    from agent.listeners.status import StatusListener
    site = cfg.agent.site
    kinds = {b.name: b.kind for b in cfg.boxes}
    evidence_path = None
    if evidence is not None:
        def evidence_path(box: str, start_s: float) -> str:
            return bundle_dir(cfg.agent.state_dir, box, start_s)

    listeners: list[Any] = [PointsListener(storage, site, kinds, evidence_path=evidence_path)]
    if evidence is not None:
        listeners.append(EvidenceListener(evidence, {b.name: BoxRef.from_config(b, site) for b in cfg.boxes},
                                          known_macs=known_macs))
    if remediation is not None:
        listeners.append(RemediationListener(remediation))
    listeners.append(StatusListener(cfg.agent.state_dir, kinds, site=site, interval_s=cfg.agent.interval_s,
                                    budget_per_hour=cfg.remediation.max_per_box_per_hour,
                                    remediation_status=remediation.status if remediation is not None else None,
                                    evidence_path=evidence_path, secrets=_secrets(cfg)))
    if metrics is not None:
        listeners.append(metrics)
    return listeners


def box_set_follower(cfg: Config, boxes: Callable[[], tuple[int, tuple[BoxConfig, ...]]], pipeline: Any,
                     listeners: list[Any], *, recorder: Any = None, engine: Any = None,
                     webhook: Any = None) -> Callable[[], None]:
    """A call that brings the pipeline and its parts to the box set BOXES() gives, when its version changed."""
    from dataclasses import replace

    from agent.core import correlation
    from agent.forensics.evidence import BoxRef
    from agent.listeners.evidence import EvidenceListener

    seen = [None]

    def follow() -> None:
        version, now = boxes()
        if version == seen[0]:
            return
        seen[0] = version
        added, removed = pipeline.set_boxes(now)
        kinds = {b.name: b.kind for b in now}
        for listener in listeners:
            if isinstance(listener, EvidenceListener):
                listener.boxes = {b.name: BoxRef.from_config(b, cfg.agent.site) for b in now}
            elif hasattr(listener, "set_kinds"):   # metrics: series of removed boxes removed
                listener.set_kinds(kinds)
            elif hasattr(listener, "kinds"):   # points, status
                listener.kinds = dict(kinds)
        if recorder is not None:
            recorder.set_boxes({b.name: b.addresses() for b in now})
        if pipeline.correlator is not None and added:
            fresh = [b for b in now if b.name in added]
            pipeline.correlator.members.update(
                correlation.memberships_from_config(replace(cfg, boxes=tuple(fresh)), route_of=host_routes()))
        if engine is not None:
            engine.set_targets([b.remediation_target() for b in now])
        if webhook is not None:
            webhook.set_boxes(kinds)
        if added or removed:
            log.info("box set: %d boxes (+%s -%s)", len(now), ",".join(added) or "0", ",".join(removed) or "0")

    return follow


def build_otlp(cfg: Config, registry: Any) -> Any:
    """The OTLP pusher (agent.listeners.otlp.OtlpPusher) of `[otlp]` for a metrics registry; SetupError when the
    `otlp` extra is not installed or the headers file cannot be read (its content is never shown)."""
    from agent.core.config import read_headers

    try:
        from agent.listeners.otlp import OtlpPusher
    except ImportError as exc:
        raise SetupError(f"otlp.endpoint: needs the OpenTelemetry packages ({exc.name} is missing): "
                         "pip install 'vobox-agent[otlp]'") from None
    headers = {}
    if cfg.otlp.headers_file:
        try:
            headers = read_headers(cfg.otlp.headers_file)
        except (OSError, ValueError) as exc:
            raise SetupError(f"otlp.headers_file: {exc}") from None
    return OtlpPusher(registry, cfg.otlp.endpoint, interval_s=cfg.otlp.interval_s, timeout_s=cfg.otlp.timeout_s,
                      headers=headers, ca_file=cfg.otlp.ca_file)


@dataclass
class Assembly:
    """A wired pipeline and the background services around it, started and stopped together."""

    pipeline: Any
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

    def reload(self) -> None:
        """SIGHUP: services with a reload() load their files again (the webhook's TLS certificate and token)."""
        for s in self.services:
            if hasattr(s, "reload"):
                try:
                    s.reload()
                except Exception:  # noqa: BLE001 - a failed reload never stops the agent
                    log.exception("reloading %r failed", s)

    def close(self) -> None:
        """Flush storage, save state, close files (also for an assembly that never started)."""
        for close in self.closers:
            try:
                close()
            except Exception:  # noqa: BLE001
                log.exception("closing failed")


def assemble(cfg: Config, *, on_cycle: Callable[[Any], None] | None = None, monitor_netns: str | None = None,
             make_docker: Callable[[], Any] | None = None) -> Assembly:
    """Build the agent from a Config: storage, forensics, correlation, remediation, webhook, listeners, scheduler."""
    from agent.core import correlation
    from agent.core.macwatch import MacWatch
    from agent.forensics.evidence import EvidenceCollector
    from agent.forensics.recorder import FlightRecorder
    from agent.ops import systemd
    from agent.pipeline import Pipeline
    from agent.schedule import ProbeLoop
    from agent.storage import points as P
    from agent.storage.store import Storage

    token = None
    if cfg.remediation.enabled and cfg.remediation.webhook_listen and cfg.remediation.webhook_token_file:
        from remediations.webhook import read_token

        try:  # before anything is built: a missing file is one line and exit 2, never a traceback
            token = read_token(cfg.remediation.webhook_token_file)
        except (OSError, ValueError) as exc:
            raise SetupError(f"remediation.webhook_token_file: {exc}") from None
    storage = Storage.from_config(cfg)
    site = cfg.agent.site
    kinds = {b.name: b.kind for b in cfg.boxes}
    make_docker = make_docker or docker_factory()
    services: list[Any] = []
    closers: list[Callable[[], None]] = []
    pipeline_box: dict[str, Pipeline] = {}

    recorder = evidence = None
    fx = cfg.forensics
    if fx.enabled:
        # The ring must still hold the onset when the freeze is detected fail_cycles later.
        recorder = FlightRecorder({b.name: b.addresses() for b in cfg.boxes},
                                  cycles=fx.ring_cycles or cfg.freeze.fail_cycles + 2)
        evidence = EvidenceCollector(cfg.agent.state_dir, recorder, docker_client=LazyDocker(make_docker),
                                     monitor_netns=monitor_netns, interface=cfg.agent.interface,
                                     max_bundles=fx.max_bundles, max_bytes=int(fx.max_mib * MIB),
                                     secrets=_secrets(cfg))
        closers.append(lambda: evidence.close(10.0))

    members = correlation.memberships_from_config(cfg, route_of=host_routes())   # segments: L2 domains
    correlator = correlation.Correlator(correlation.CorrelationSettings.from_config(cfg.correlation), members)
    metrics = None
    if cfg.metrics.listen or cfg.otlp.endpoint:
        from agent.listeners.metrics import MetricsListener, MetricsServer

        metrics = MetricsListener(kinds, site, counters=storage.counters,
                                  segments={name: m.segment for name, m in members.items()},
                                  interval_s=cfg.agent.interval_s)
        if cfg.metrics.listen:
            services.append(MetricsServer(metrics.registry, cfg.metrics.host, cfg.metrics.port))
        if cfg.otlp.endpoint:   # the same registry, pushed
            services.append(build_otlp(cfg, metrics.registry))

    remediation = None
    targets = [b.remediation_target() for b in cfg.boxes]
    from remediations.docker_events import ExpectedEvents, expecting_factory

    # Stops/restarts our remediation causes: the service marks them, the events watcher reads them.
    expected_events = ExpectedEvents()
    if cfg.remediation.enabled:
        from remediations import ActionContext, RemediationService, Remediator, history

        policy = cfg.remediation.policy()

        def on_record(rec: Any) -> None:
            if rec.outcome in ("deferred", "refused", "held"):
                log.warning("box %s: %s %s (%s): %s", rec.box, rec.action, rec.outcome, rec.trigger, rec.reason)
            storage.write([record_point(rec, site)])
            if metrics is not None:
                metrics.on_remediation(rec.box, rec.action, rec.trigger, rec.outcome, rec.ok, rec.recovered)

        engine = Remediator(policy, targets, reprobe=lambda name: pipeline_box["p"].reprobe(name))
        wait = getattr(evidence, "wait_collected", None) if evidence is not None else None
        # Containers our actions touch are marked, so their stop/start events are not operator intent.
        action_docker = expecting_factory(make_docker, expected_events)
        remediation = RemediationService(engine, ActionContext(docker_factory=action_docker, policy=policy),
                                         on_record, history_path=history.path_in(cfg.agent.state_dir),
                                         evidence_wait=wait)
        services.append(remediation)
        if cfg.remediation.webhook_listen:
            from remediations.webhook import AuthLimiter, TLSSettings, WebhookReceiver

            rc = cfg.remediation
            tls = (TLSSettings(rc.webhook_cert_file, rc.webhook_key_file, rc.webhook_client_ca_file,
                               rc.webhook_verify_client) if rc.webhook_cert_file else None)
            try:
                services.append(WebhookReceiver(rc.webhook_host, rc.webhook_port, token, [b.name for b in cfg.boxes],
                                                lambda box, action: remediation.request(box, action, "alert"),
                                                max_bytes=rc.webhook_max_bytes, tls=tls,
                                                limiter=AuthLimiter(rc.webhook_auth_failures_max,
                                                                    rc.webhook_auth_failures_window_s),
                                                token_file=rc.webhook_token_file))
            except (OSError, ValueError) as exc:   # ssl.SSLError is an OSError: the files changed since load
                raise SetupError(f"remediation.webhook_listen: cannot serve the webhook: {exc}") from None
    discovery = None
    if cfg.discovery.docker:
        from agent.discovery import DockerDiscovery

        def on_discovered(added: Any, removed: Any) -> None:
            now_s = time.time()
            storage.write([P.container_event_point(f.box.name, "container", site, event, now_s,
                                                   f"container {f.box.container} {what} "
                                                   f"({' '.join(f.box.addresses())} on {f.box.network})")
                           for fs, event, what in ((removed, "forgotten", "left the box set"),
                                                   (added, "discovered", "joined the box set"))
                           for f in fs])

        discovery = DockerDiscovery(cfg, on_change=on_discovered)
    container_states = None
    if any(t.container for t in targets) or discovery is not None:
        from remediations.docker_events import ContainerStates, DockerEventWatcher

        def on_event(rec: Any) -> None:
            storage.write([P.container_event_point(rec.box, kinds.get(rec.box, "container"), site, rec.event,
                                                   rec.time_s, rec.detail, rec.exit_code, rec.container_state,
                                                   rec.operator if rec.container_state is not None else None)])

        # The container state cache: kept from the events, read by the pipeline once per cycle.
        container_states = ContainerStates()
        watcher = DockerEventWatcher(targets, make_docker, on_event, states=container_states,
                                     expected=expected_events, follow=discovery.follow if discovery else None)
        if discovery is not None:
            discovery.set_targets = watcher.set_targets
        services.append(watcher)

    listeners = build_listeners(cfg, storage, remediation=remediation, evidence=evidence,
                                known_macs=lambda box: pipeline_box["p"].known_macs(box), metrics=metrics)
    checks = build_checks(cfg, make_docker)
    if checks is not None:
        closers.append(checks.close)
    pipeline = Pipeline(cfg, listeners, recorder=recorder, correlator=correlator, macwatch=MacWatch(),
                        acting=remediation.acting_on if remediation is not None else None, checks=checks,
                        container_states=container_states, maintenance=maintenance_source(cfg))
    pipeline_box["p"] = pipeline
    # An agent restarted with a non-empty spool replays it first: the storage thread does, before new points.

    follow_boxes = None
    if discovery is not None:
        follow_boxes = box_set_follower(cfg, discovery.boxes, pipeline, listeners, recorder=recorder,
                                        engine=remediation.remediator if remediation is not None else None,
                                        webhook=next((s for s in services if hasattr(s, "set_boxes")), None))

    def cycle() -> None:
        if follow_boxes is not None:
            follow_boxes()   # discovery's box set, swapped between cycles only
        summary = pipeline.run_cycle()
        systemd.watchdog()
        if on_cycle is not None:
            on_cycle(summary)

    def count_misfire() -> None:
        pipeline.misfires += 1

    # One thread probes: cycles on the interval's slots, confirmation passes of unsettled boxes between them.
    scheduler = ProbeLoop(cycle, cfg.agent.interval_s, cfg.agent.jitter_s, confirm_pass=pipeline.confirm_pass,
                          unsettled=pipeline.unsettled, confirm_interval_s=cfg.freeze.confirm_interval_s,
                          on_misfire=count_misfire)
    closers += [storage.flush, pipeline.close, storage.close]
    return Assembly(pipeline, scheduler, services, closers)
