"""The doctor's registry: the topics in the order an operator should fix them, and the driver that runs them."""
from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.ops.doctor import boxes as _boxes, engine, files, influx, macvlan, privileges, webhook
from agent.ops.doctor.results import CheckResult, cfg_value, passed


@dataclass(slots=True)
class Context:
    """What the topics get (the config and the edges, each replaceable in a test) and hand on to the next topics."""

    cfg: Any
    docker_factory: Callable[[], Any]
    session: Any = None
    create_database: bool = False
    open_socket: Callable[..., socket.socket] = socket.socket
    exists: Callable[[str], bool] = macvlan.link_exists
    route: Callable[[str], macvlan.Route] = macvlan.route_to
    containers: list[Any] = field(default_factory=list)
    docker: engine.DockerInfo | None = None
    networks: dict[str, dict] = field(default_factory=dict)           # network name -> inspect attrs
    observed: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (box, ipv4, mac) running
    pids: dict[str, int | None] = field(default_factory=dict)         # box -> PID of its running container
    stop: bool = False                                                # later topics cannot run
    proc_status: Callable[[], str] = privileges.read_proc_status       # /proc/self/status (CapEff)
    executable: str = sys.executable                                  # the interpreter (its file capabilities)
    read_file: Callable[[str], str] = field(default=lambda path: _read_text(path))


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _files(ctx: Context) -> list[CheckResult]:
    from agent.core.config import file_errors, webhook_tls_errors

    # The webhook's TLS files have a topic of their own (days left, key match, CA count): said once, there.
    tls = set(webhook_tls_errors(ctx.cfg.remediation)) if ctx.cfg.remediation.webhook_listen else set()
    return files.check_files(ctx.cfg, lambda cfg: [e for e in file_errors(cfg) if e not in tls])


def _privileges(ctx: Context) -> list[CheckResult]:
    return ([privileges.check_raw_socket(ctx.open_socket)]
            + privileges.check_capabilities(ctx.cfg, ctx.proc_status(), os.geteuid() == 0)
            + [privileges.check_interpreter_caps(ctx.executable), privileges.check_proc(ctx.read_file)])


def _influxdb(ctx: Context) -> list[CheckResult]:
    cfg_influx = cfg_value(ctx.cfg, "influxdb", "influx")
    if cfg_influx is None:
        return []
    # the config's own timeout (a server that accepts and never answers fails the check in that time, as writes do)
    timeout_s = float(cfg_value(cfg_influx, "write_timeout_s", default=5.0))
    return influx.check_influx(cfg_influx, ctx.session, ctx.create_database, timeout_s=timeout_s)


def _webhook(ctx: Context) -> list[CheckResult]:
    rem = cfg_value(ctx.cfg, "remediation")
    return [] if rem is None else webhook.check_webhook(rem)


def _docker(ctx: Context) -> list[CheckResult]:
    if not ctx.containers:
        ctx.stop = True
        return [passed("docker engine", "no container boxes configured; Docker not needed")]
    result, ctx.docker = engine.check_docker(ctx.docker_factory)
    ctx.stop = ctx.docker is None
    return [result]


def _engine(ctx: Context) -> engine.DockerInfo:
    """What the docker topic learned; the topics after it run only when it reached the engine."""
    if ctx.docker is None:
        raise RuntimeError("doctor: a Docker topic ran without the docker topic reaching the engine")
    return ctx.docker


def _box_checks(ctx: Context) -> list[CheckResult]:
    out: list[CheckResult] = []
    for box in ctx.containers:
        box_results, cattrs, nattrs = _boxes.check_box(box, _engine(ctx).client)
        out += box_results
        if nattrs is not None:
            ctx.networks[cfg_value(box, "network")] = nattrs
        if cattrs is not None and cattrs.get("State", {}).get("Status") == "running":
            ep = (cattrs.get("NetworkSettings", {}).get("Networks") or {}).get(cfg_value(box, "network")) or {}
            ctx.observed.append((cfg_value(box, "name"), ep.get("IPAddress"), ep.get("MacAddress")))
            ctx.pids[cfg_value(box, "name")] = int(cattrs.get("State", {}).get("Pid") or 0) or None
    return out


def _container_commands(ctx: Context) -> list[CheckResult]:
    boxes = list(cfg_value(ctx.cfg, "boxes", "box", default=()) or ())
    path = getattr(ctx.cfg, "box_path", lambda i: f"box[{i}]")   # a Config names boxes as its errors do
    return files.check_container_commands((path(i), b, ctx.pids.get(cfg_value(b, "name")))
                                          for i, b in enumerate(boxes) if b in ctx.containers)


def _mac_on_connect(ctx: Context) -> list[CheckResult]:
    return [engine.check_mac_on_connect(_engine(ctx), ctx.observed)]


def _macvlan_trap(ctx: Context) -> list[CheckResult]:
    return macvlan.check_macvlan_trap(ctx.containers, ctx.networks, ctx.exists, ctx.route)


# Topic name -> check, run in this order until one sets ctx.stop.
CHECKS: dict[str, Callable[[Context], list[CheckResult]]] = {
    "files": _files,
    "privileges": _privileges,
    "influxdb": _influxdb,
    "webhook": _webhook,
    "docker": _docker,
    "boxes": _box_checks,
    "container-commands": _container_commands,
    "docker-mac": _mac_on_connect,
    "macvlan-trap": _macvlan_trap,
}


def run_checks(cfg: Any, *, docker_factory: Callable[[], Any] | None = None,
               session: Any = None, create_database: bool = False,
               open_socket: Callable[..., socket.socket] = socket.socket,
               exists: Callable[[str], bool] = macvlan.link_exists,
               route: Callable[[str], macvlan.Route] = macvlan.route_to) -> list[CheckResult]:
    """All checks for config CFG, in the order an operator should fix them.

    docker_factory: makes the Docker client (the caller's; None: remediations' factory for the environment's daemon).
    """
    if docker_factory is None:
        from remediations import default_docker_factory

        docker_factory = default_docker_factory(timeout_s=10)
    ctx = Context(cfg, docker_factory, session, create_database, open_socket, exists, route)
    ctx.containers = _boxes.container_boxes(list(cfg_value(cfg, "boxes", "box", default=()) or ()))
    results: list[CheckResult] = []
    for check in CHECKS.values():
        results += check(ctx)
        if ctx.stop:
            break
    return results
