"""The one wiring module: builds storage, the pipeline, its listeners and the services around it from a Config.

Commands only parse arguments and format output; whatever needs more than one part of the
product is built here. The engine's client comes from one factory (agent.engines.client: `[engine] socket`,
DOCKER_HOST, CONTAINER_HOST, the default sockets of dockerd and Podman), made lazily so the agent starts even
while the engine is down.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from agent import atomic
from agent.core.config import MIB, BoxConfig, Config
from agent.listeners.points import record_point  # noqa: F401 - agent.commands.remediate writes records with it

if TYPE_CHECKING:
    from agent.discovery import DockerDiscovery  # imported where discovery is on

log = logging.getLogger(__name__)


class SetupError(Exception):
    """Something the config names cannot be used at run (a missing file...): one line, the command exits 2."""


def docker_factory(timeout_s: float = 60.0, socket: str | None = None) -> Callable[[], Any]:
    """The one engine client factory (dockerd or Podman): SOCKET (`[engine] socket`), else DOCKER_HOST, else
    CONTAINER_HOST when unix://, else /run/docker.sock or /run/podman/podman.sock (agent.engines.client)."""
    from agent.engines.client import client_factory

    return client_factory(socket, timeout_s)


class LazyDocker:
    """A docker client made on first use (the agent must start even when dockerd is down)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._factory()
        return getattr(self._client, name)


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


def alert_handler(remediation: Any, pipeline: Callable[[], Any]) -> Callable[[str, str | None], Any]:
    """The webhook's submit(box, action): the pipeline confirms a suspect box (Pipeline.alert_witness, its one
    way back for alerts), then the remediation service decides with the box's state (Remediator.request)."""
    def submit(box: str, action: str | None) -> Any:
        seen = pipeline().alert_witness(box)
        return remediation.request(box, action, "alert", seen=seen)
    return submit


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
    """The listeners, in the order they get each message: points, evidence, remediation, status, metrics.

    storage: agent.storage.store.Storage (or anything with write/counters), None without [influxdb] (then no
    points listener: nothing is encoded, spooled or sent); remediation:
    remediations.RemediationService or None; evidence: agent.forensics.evidence.EvidenceCollector or None;
    metrics: agent.listeners.metrics.MetricsListener or None. Add them to a bus (agent.bus.Bus) to use them.
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

    listeners: list[Any] = []
    if storage is not None:
        listeners.append(PointsListener(storage, site, kinds, evidence_path=evidence_path))
    if evidence is not None:
        listeners.append(EvidenceListener(evidence, {b.name: BoxRef.from_config(b, site) for b in cfg.boxes},
                                          known_macs=known_macs, site=site))
    if remediation is not None:
        listeners.append(RemediationListener(remediation))
    listeners.append(StatusListener(cfg.agent.state_dir, kinds, site=site, interval_s=cfg.agent.interval_s,
                                    budget_per_hour=cfg.remediation.max_per_box_per_hour,
                                    evidence_path=evidence_path, secrets=_secrets(cfg),
                                    addresses={b.name: b.addresses() for b in cfg.boxes}))
    if metrics is not None:
        listeners.append(metrics)
    return listeners


def memberships(cfg: Config, route_of: Callable[[str], Any]) -> Callable[[Sequence[BoxConfig]], Any]:
    """boxes -> their correlation memberships (segments: L2 domains), for the boxes discovery adds."""
    from dataclasses import replace

    from agent.core import correlation

    def of(boxes: Sequence[BoxConfig]) -> Any:
        return correlation.memberships_from_config(replace(cfg, boxes=tuple(boxes)), route_of=route_of)
    return of


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
    if cfg.otlp.endpoint is None:
        raise SetupError("otlp.endpoint: not set, nothing to push to")
    return OtlpPusher(registry, cfg.otlp.endpoint, interval_s=cfg.otlp.interval_s, timeout_s=cfg.otlp.timeout_s,
                      headers=headers, ca_file=cfg.otlp.ca_file)


@dataclass
class Assembly:
    """A wired pipeline and the background services around it, started and stopped together."""

    pipeline: Any
    scheduler: Any
    services: list[Any] = field(default_factory=list)   # objects with start()/stop()
    closers: list[Callable[[], object]] = field(default_factory=list)
    bus: Any = None   # agent.bus.Bus: the one way out, with its listeners
    reloaders: list[Callable[[], object]] = field(default_factory=list)   # SIGHUP: load files again

    def start(self) -> None:
        """Start the services, then the probe cycles (once the services that read state the first cycle needs are
        ready: `wait_ready()`, the container engine's events watcher; each bounds its own wait)."""
        for s in self.services:
            s.start()
        for s in self.services:
            ready = getattr(s, "wait_ready", None)
            if callable(ready):
                ready()
        self.scheduler.start()

    def stop(self) -> None:
        """Finish the running cycle, stop the services, flush storage (in that order)."""
        self.scheduler.stop()
        for s in reversed(self.services):
            try:
                s.stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping %r failed", s)
        self.close()

    def reload(self) -> None:
        """SIGHUP: the reloaders load their files again (the webhook's TLS certificate and token)."""
        for reload in self.reloaders:
            try:
                reload()
            except Exception:  # a failed reload never stops the agent
                log.exception("reloading %r failed", reload)

    def close(self) -> None:
        """Flush storage, save state, close files (also for an assembly that never started)."""
        for close in self.closers:
            try:
                close()
            except Exception:
                log.exception("closing failed")


def webhook_token(cfg: Config) -> str | None:
    """The webhook's bearer token, read before anything is built: a missing file is SetupError (one line, exit 2)."""
    rc = cfg.remediation
    if not (rc.enabled and rc.webhook_listen and rc.webhook_token_file):
        return None
    from remediations.webhook import read_token

    try:
        return read_token(rc.webhook_token_file)
    except (OSError, ValueError) as exc:
        raise SetupError(f"remediation.webhook_token_file: {exc}") from None


def build_forensics(cfg: Config, make_docker: Callable[[], Any], monitor_netns: str | None) -> tuple[Any, Any]:
    """(the packet flight recorder, the evidence collector), or (None, None) when [forensics] is off."""
    if not cfg.forensics.enabled:
        return None, None
    from agent.forensics.evidence import EvidenceCollector
    from agent.forensics.recorder import FlightRecorder

    fx = cfg.forensics
    # The ring must still hold the onset when the freeze is detected fail_cycles later.
    recorder = FlightRecorder({b.name: b.addresses() for b in cfg.boxes},
                              cycles=fx.ring_cycles or cfg.freeze.fail_cycles + 2)
    evidence = EvidenceCollector(cfg.agent.state_dir, recorder, docker_client=LazyDocker(make_docker),
                                 monitor_netns=monitor_netns, interface=cfg.agent.interface,
                                 max_bundles=fx.max_bundles, max_bytes=int(fx.max_mib * MIB), secrets=_secrets(cfg))
    return recorder, evidence


def build_metrics(cfg: Config, storage: Any, members: Any) -> tuple[Any, list[Any]]:
    """(the metrics listener, its services: the /metrics server and the OTLP pusher), or (None, []) when both
    [metrics] listen and [otlp] endpoint are off."""
    if not (cfg.metrics.listen or cfg.otlp.endpoint):
        return None, []
    from agent.listeners.metrics import MetricsListener, MetricsServer, ScrapeAuth, add_runtime_collectors

    mc = cfg.metrics
    metrics = MetricsListener({b.name: b.kind for b in cfg.boxes}, cfg.agent.site,
                              counters=storage.counters if storage is not None else None,
                              segments={name: m.segment for name, m in members.items()},
                              interval_s=cfg.agent.interval_s, site_label=mc.site_label)
    add_runtime_collectors(metrics.registry)   # process_*, python_info, python_gc_*
    if cfg.remediation.enabled and cfg.remediation.webhook_listen:
        metrics.set_server_certificate("webhook", cfg.remediation.webhook_cert_file)
    services: list[Any] = []
    host, port = mc.host, mc.port   # both set when metrics.listen is
    if host is not None and port is not None:
        auth = ScrapeAuth(mc.token_file, mc.basic_auth_username, mc.basic_auth_password_file)
        try:
            services.append(MetricsServer(metrics.registry, host, port, tls=mc.tls(), auth=auth,
                                          on_certificate=lambda f: metrics.set_server_certificate("metrics", f)))
        except (OSError, ValueError) as exc:   # the files changed since load (TLSFileError, SecretFileError)
            raise SetupError(f"metrics.listen: cannot serve /metrics: {exc}") from None
    if cfg.otlp.endpoint:   # the same registry, pushed
        services.append(build_otlp(cfg, metrics.registry))
    return metrics, services


def build_resolver(cfg: Config, publish: Callable[[Any], None], netns: str | None = None,
                   lookup: Callable[[str, int], Any] | None = None) -> Any:
    """The resolver of the boxes' `hostname`s (agent.resolve.NameResolver) against [agent] nameservers, else the
    resolv.conf of this host (of the namespace NETNS: agent.resolve.resolv_conf); None when no box has a name.
    SetupError (one line) when there is no nameserver to ask."""
    if not any(b.hostname for b in cfg.boxes):
        return None
    from agent.resolve import DnsLookup, NameResolver, ResolverConfigError, box_problem, nameservers_of, resolv_conf

    if lookup is None:
        try:
            lookup = DnsLookup(cfg.agent.nameservers or nameservers_of(resolv_conf(netns)))
        except ResolverConfigError as exc:
            raise SetupError(f"agent.nameservers: {exc}") from None
    return NameResolver(cfg.boxes, lookup, publish, interval_s=cfg.agent.resolve_interval_s,
                        problem=box_problem(cfg.agent.interface))


def resolve_boxes(cfg: Config, names: Sequence[str], netns: str | None = None,
                  lookup: Callable[[str, int], Any] | None = None) -> tuple[Config, dict[str, str]]:
    """Resolve the hostnames of boxes NAMES once (a manual remediation, before it acts): (the config with their
    names' addresses, box -> why no action should run on it now: its name does not resolve or gives no usable
    address). Boxes without a name are left as they are. SetupError when there is no nameserver."""
    from agent.core.resolve import deferral

    resolver = build_resolver(cfg, lambda ev: None, netns, lookup)
    if resolver is None:
        return cfg, {}
    resolver.resolve([n for n in names if cfg.box(n).hostname], publish=False)
    recs = {n: r for n, r in resolver.records().items() if n in names}
    boxes = tuple(replace(b, ipv4=recs[b.name].ipv4, ipv6=recs[b.name].ipv6) if b.name in recs else b
                  for b in cfg.boxes)
    waits = {}
    for name, rec in recs.items():
        why = deferral(rec) or (None if rec.addresses() else
                                f"name {rec.hostname} gives no usable address ({rec.state.value}: {rec.detail})")
        if why:
            waits[name] = why
    return replace(cfg, boxes=boxes), waits


def build_remediation(cfg: Config, publish: Callable[[Any], None], reprobe: Callable[[str], bool],
                      make_docker: Callable[[], Any], expected_events: Any, evidence: Any,
                      before_action: Callable[[str], str | None] | None = None,
                      known_macs: Callable[[str], Any] | None = None) -> Any:
    """The remediation service (remediations.RemediationService): its records are published as decided, its
    status after each cycle's decisions. known_macs: box -> {address: MAC last seen} (the pipeline's MAC memory:
    reconnect_network keeps that MAC for a container found disconnected)."""
    from agent.engines.watcher import expecting_factory
    from remediations import ActionContext, RemediationService, Remediator, history

    policy = cfg.remediation.policy()
    engine = Remediator(policy, [b.remediation_target() for b in cfg.boxes], reprobe=reprobe)
    # Containers our actions touch are marked, so their stop/start events are not operator intent.
    action_docker = expecting_factory(make_docker, expected_events)
    return RemediationService(engine, ActionContext(docker_factory=action_docker, policy=policy,
                                                    known_macs=known_macs), publish,
                              history_path=history.path_in(cfg.agent.state_dir),
                              evidence_wait=evidence.wait_collected if evidence is not None else None,
                              on_status=publish, before_action=before_action)


def build_webhook(cfg: Config, token: str | None, submit: Callable[[str, str | None], Any]) -> Any:
    """The Alertmanager/Grafana webhook (remediations.webhook.WebhookReceiver): alerts become requests.

    submit(box, action): what an alert asks (alert_handler: the pipeline's view of the box, then the request).
    """
    from remediations.webhook import AuthLimiter, WebhookReceiver

    rc = cfg.remediation
    tls = rc.tls()   # agent.tls.TLSSettings, None for plain HTTP
    if rc.webhook_host is None or rc.webhook_port is None:
        raise SetupError("remediation.webhook_listen: not set, no webhook to serve")
    try:
        return WebhookReceiver(rc.webhook_host, rc.webhook_port, token, [b.name for b in cfg.boxes],
                               submit, max_bytes=rc.webhook_max_bytes, tls=tls,
                               limiter=AuthLimiter(rc.webhook_auth_failures_max, rc.webhook_auth_failures_window_s),
                               token_file=rc.webhook_token_file)
    except (OSError, ValueError) as exc:   # ssl.SSLError is an OSError: the files changed since load
        raise SetupError(f"remediation.webhook_listen: cannot serve the webhook: {exc}") from None


def build_auditor(cfg: Config, bus: Any, make_docker: Callable[[], Any], discovering: bool) -> Any:
    """The isolation audit service (agent.auditor.AuditService) of `[audit]`, subscribed to the engine events (a
    box's create/start/restart/resync audits it again) and box-set changes; None when off or no box is a container."""
    if not cfg.audit.enabled or not (discovering or any(b.container for b in cfg.boxes)):
        return None
    from agent.auditor import AuditService
    from agent.core.events import BoxSetChanged
    from remediations.model import ContainerEventRecord

    auditor = AuditService({b.name: b.container for b in cfg.boxes if b.container}, make_docker, bus.publish,
                           interval_s=cfg.audit.interval_s, state_dir=cfg.agent.state_dir)
    bus.subscribe(ContainerEventRecord, auditor.on_container_event, name="audit")
    bus.subscribe(BoxSetChanged, lambda ev: auditor.set_boxes({b.name: b.container for b in ev.boxes if b.container}),
                  name="audit")
    return auditor


def box_set_publisher(boxes: Callable[[], tuple[int, tuple[BoxConfig, ...]]], publish: Callable[[Any], None]
                      ) -> Callable[[Sequence[Any], Sequence[Any]], None]:
    """Discovery's on_change(added, removed) -> a BoxSetChanged with the whole set BOXES() gives, published now."""
    from agent.core.events import BoxSetChanged

    def on_change(added: Sequence[Any], removed: Sequence[Any]) -> None:
        version, now = boxes()
        publish(BoxSetChanged(time.time(), version, now, tuple(added), tuple(removed)))
    return on_change


def follow_box_set(bus: Any, pipeline: Any, *, recorder: Any = None, engine: Any = None, webhook: Any = None,
                   watcher: Any = None) -> None:
    """Subscribe the pipeline and the services to BoxSetChanged: the pipeline takes a new set at its next cycle,
    the flight recorder, the remediation engine, the webhook and the Docker events watcher at once."""
    from agent.core.events import BoxSetChanged

    def targets(ev: BoxSetChanged) -> list[Any]:
        return [b.remediation_target() for b in ev.boxes]

    bus.subscribe(BoxSetChanged, pipeline.box_set_changed, name="pipeline")
    if recorder is not None:
        bus.subscribe(BoxSetChanged, lambda ev: recorder.set_boxes({b.name: b.addresses() for b in ev.boxes}),
                      name="flight recorder")
    if engine is not None:
        bus.subscribe(BoxSetChanged, lambda ev: engine.set_targets(targets(ev)), name="remediation engine")
    if webhook is not None:
        bus.subscribe(BoxSetChanged, lambda ev: webhook.set_boxes(ev.kinds), name="webhook")
    if watcher is not None:
        bus.subscribe(BoxSetChanged, lambda ev: watcher.set_targets(targets(ev)), name="docker events")


def assemble(cfg: Config, *, on_cycle: Callable[[Any], None] | None = None, monitor_netns: str | None = None,
             make_docker: Callable[[], Any] | None = None,
             lookup: Callable[[str, int], Any] | None = None) -> Assembly:
    """Build the agent from a Config, step by step: files, bus and storage, forensics, correlation, metrics,
    Docker events and discovery, the prober, remediation and its webhook, listeners, pipeline, probe loop.

    Every way out is the bus (agent.bus): the listeners on it own every write and metric; the services
    publish on it. SetupError (one line) when something the config names cannot be used. lookup(name, family):
    the DNS lookup of the boxes' hostnames (agent.resolve.DnsLookup of the config when None).
    """
    from agent.bus import Bus
    from agent.core import correlation
    from agent.core.events import ClockStepped
    from agent.core.macwatch import MacWatch
    from agent.engines.watcher import ExpectedEvents
    from agent.ops import systemd
    from agent.pipeline import Pipeline
    from agent.prober import Prober
    from agent.schedule import ProbeLoop
    from agent.storage.store import Storage

    token = webhook_token(cfg)   # before anything is built
    make_docker = make_docker or docker_factory(socket=cfg.engine.socket)
    bus = Bus()
    # Boxes by name: resolved once now, so the first cycle probes the names' addresses; a box whose name gave
    # none is left out of the set until it does (the resolver publishes why). Discovery keeps the config as
    # written (its set goes through the resolver too).
    configured = cfg
    resolver = build_resolver(cfg, bus.publish, monitor_netns, lookup)
    if resolver is not None:
        resolver.resolve(publish=False)   # announced when the services start (NameResolver.start)
        cfg = replace(cfg, boxes=resolver.apply(cfg.boxes))
    atomic.private_dir(cfg.agent.state_dir)   # 0700: freeze state, status.json, evidence, history
    # Stores are optional (issue 31): InfluxDB only with [influxdb]; without it no writer, no spool, no points.
    storage = Storage.from_config(cfg) if cfg.influxdb is not None else None
    log.info("stores: %s", ", ".join(cfg.stores()) or "none (no [influxdb], [metrics] listen or [otlp] endpoint): "
             "probing, remediation and status.json only, no history kept")
    services: list[Any] = []
    closers: list[Callable[[], object]] = []   # called for their effect; storage.flush returns whether it got through

    recorder, evidence = build_forensics(cfg, make_docker, monitor_netns)
    if evidence is not None:
        closers.append(lambda: evidence.close(10.0))

    route_of = host_routes()
    members = correlation.memberships_from_config(cfg, route_of=route_of)   # segments: L2 domains
    correlator = correlation.Correlator(correlation.CorrelationSettings.from_config(cfg.correlation), members,
                                        correlation.witness_segment(cfg.correlation.witness, members, route_of))

    metrics, metric_services = build_metrics(cfg, storage, members)
    services += metric_services

    def resolved(versioned: tuple[int, tuple[BoxConfig, ...]]) -> tuple[int, tuple[BoxConfig, ...]]:
        """A box set with the names' addresses (a named box with none left out)."""
        return versioned if resolver is None else (versioned[0], resolver.apply(versioned[1]))

    # Stops/restarts our remediation causes: the service marks them, the events watcher reads them.
    expected_events = ExpectedEvents()
    discovery: DockerDiscovery | None = None
    watcher = container_states = None
    if cfg.discovery.docker:
        from agent.discovery import DockerDiscovery

        # Its changes are published as they happen (the set read back from it: found.boxes()).
        found = DockerDiscovery(configured, on_change=box_set_publisher(lambda: resolved(found.boxes()), bus.publish))
        discovery = found
    if any(b.container for b in cfg.boxes) or discovery is not None:
        from agent.engines.watcher import STATE_FILE, ContainerStates, DockerEventWatcher

        # The container state cache: kept from the events, read by the pipeline once per cycle.
        container_states = ContainerStates(os.path.join(cfg.agent.state_dir, STATE_FILE))
        watcher = DockerEventWatcher([b.remediation_target() for b in cfg.boxes], make_docker, bus.publish,
                                     states=container_states, expected=expected_events,
                                     follow=discovery.follow if discovery is not None else None)

    checks = build_checks(cfg, make_docker)
    if checks is not None:
        closers.append(checks.close)
    # The probes the cycle uses; remediation's verification asks the same prober.
    prober = Prober(cfg, checks=checks, container_states=container_states)

    remediation = webhook = None
    macwatch = MacWatch()
    if cfg.remediation.enabled:
        remediation = build_remediation(cfg, bus.publish, prober.reprobe, make_docker, expected_events, evidence,
                                        before_action=resolver.before_action if resolver is not None else None,
                                        known_macs=macwatch.last)
        services.append(remediation)
    if watcher is not None:
        services.append(watcher)

    for listener in build_listeners(cfg, storage, remediation=remediation, evidence=evidence,
                                    known_macs=macwatch.last, metrics=metrics):
        bus.add(listener)

    # The isolation audit: its own thread, started with the services (never on the probe path).
    auditor = build_auditor(cfg, bus, make_docker, discovery is not None)
    if auditor is not None:
        services.append(auditor)

    pipeline = Pipeline(cfg, bus, prober=prober, recorder=recorder, correlator=correlator, macwatch=macwatch,
                        acting=remediation.acting_on if remediation is not None else None,
                        maintenance=maintenance_source(cfg), memberships=memberships(cfg, route_of))
    if remediation is not None and cfg.remediation.webhook_listen:
        # An alert asks the pipeline first (Pipeline.alert_witness: a suspect box's freeze opens), then remediation.
        webhook = build_webhook(cfg, token, alert_handler(remediation, lambda: pipeline))
        services.insert(services.index(remediation) + 1, webhook)   # started after remediation, stopped before it

    if resolver is not None:
        # A name's new address: the whole set again (discovery's, when on), taken by the pipeline at its next cycle.
        renumbered = box_set_publisher(lambda: resolved(discovery.boxes() if discovery is not None
                                                        else (0, configured.boxes)), bus.publish)
        resolver.on_addresses = lambda: renumbered((), ())
        services.insert(0, resolver)   # started first: its announcement reaches the listeners before any cycle
    follow_box_set(bus, pipeline, recorder=recorder, engine=remediation.remediator if remediation else None,
                   webhook=webhook, watcher=watcher)

    def cycle() -> None:
        summary = pipeline.run_cycle()
        systemd.watchdog()
        if on_cycle is not None:
            on_cycle(summary)

    def on_clock_step(step: Any) -> None:   # agent.schedule.ClockStep: published once per step
        bus.publish(ClockStepped(step.wall_s, step.step_s, step.monotonic_s))

    # One thread probes: cycles on the interval's slots (monotonic), confirmation passes of unsettled boxes between.
    scheduler = ProbeLoop(cycle, cfg.agent.interval_s, cfg.agent.jitter_s, confirm_pass=pipeline.confirm_pass,
                          unsettled=pipeline.unsettled, confirm_interval_s=cfg.freeze.confirm_interval_s,
                          on_misfire=pipeline.count_misfire, on_clock_step=on_clock_step)
    # An agent restarted with a non-empty spool replays it first: the storage thread does, before new points.
    closers += [storage.flush, pipeline.close, storage.close] if storage is not None else [pipeline.close]
    reloaders: list[Callable[[], object]] = [webhook.reload] if webhook is not None else []
    if webhook is not None and metrics is not None and cfg.remediation.webhook_cert_file:
        cert = cfg.remediation.webhook_cert_file
        reloaders.append(lambda: metrics.set_server_certificate("webhook", cert))
    if metrics is not None:   # SIGHUP: the /metrics server's TLS files and credential files too
        from agent.listeners.metrics import MetricsServer

        reloaders += [s.reload for s in metric_services if isinstance(s, MetricsServer)]
    return Assembly(pipeline, scheduler, services, closers, bus=bus, reloaders=reloaders)
