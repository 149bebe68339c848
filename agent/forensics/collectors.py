"""Evidence collectors: each reads one thing about a frozen box (neighbour tables, counters, Docker state, events).

Each takes a Context and returns {filename: JSON-able data}, or raises CollectorError (it failed:
the message says what and why), TargetGone (what it was reading went away meanwhile: the container
was restarted, stopped or removed during collection; not an error of the collector) or Skip (it does
not apply to this box). COLLECTORS is the registry.
"""
from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.core.events import BoxKind
from agent.engines.client import past_events
from agent.forensics.bundle import BoxRef

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 5.0
EVENTS_LOOKBACK_S = 900.0
MAX_EVENTS = 100


class CollectorError(Exception):
    """A collector could not get its data; the message says what and why."""


class TargetGone(CollectorError):
    """The collector lost its target while collecting (the container restarted, stopped or was removed)."""


class Skip(Exception):
    """The collector does not apply to this box."""


CommandRunner = Callable[[Sequence[str], float], str]


def run_command(argv: Sequence[str], timeout_s: float) -> str:
    """Run argv (no shell), return stdout; CollectorError naming the command on failure or timeout."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise CollectorError(f"{argv[0]}: not installed ({exc})") from None
    except subprocess.TimeoutExpired:
        raise CollectorError(f"{' '.join(argv)}: no answer within {timeout_s:g} s") from None
    if proc.returncode != 0:
        raise CollectorError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()[:300]}")
    return proc.stdout


def json_of(text: str, argv: Sequence[str]) -> Any:
    """Parsed JSON output of ARGV (empty output: []); CollectorError naming the command otherwise."""
    try:
        return json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise CollectorError(f"{' '.join(argv)}: output is not JSON: {exc}") from None


@dataclass(slots=True)
class Context:
    """What one collector run sees."""

    box: BoxRef
    path: str
    start_s: float
    now_s: float
    ip: Callable[..., Any]          # ip(*args) -> parsed JSON from `ip -j ...` on the monitor side
    run: CommandRunner
    docker: Callable[[], Any]
    interface: str | None
    inspect: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)   # short lines for the summary


def collect_monitor_neigh(ctx: Context) -> dict[str, Any]:
    """The monitor side's neighbour entries for the box's addresses."""
    out: dict[str, Any] = {}
    for address in ctx.box.addresses:
        out[address] = ctx.ip("neigh", "show", "to", address)
    return {"monitor_neigh.json": out}


def _interface_toward(ctx: Context) -> list[str]:
    if ctx.interface:
        return [ctx.interface]
    devs: list[str] = []
    for address in ctx.box.addresses:
        for route in ctx.ip("route", "get", address):
            dev = route.get("dev")
            if dev and dev not in devs:
                devs.append(dev)
    if not devs:
        raise CollectorError(f"no route toward {', '.join(ctx.box.addresses)} on the monitor side")
    return devs


def collect_monitor_link(ctx: Context) -> dict[str, Any]:
    """Counters (errors, drops) of the monitor-side interface toward the box."""
    return {"monitor_link.json": {dev: ctx.ip("-s", "link", "show", "dev", dev) for dev in _interface_toward(ctx)}}


def _need_container(ctx: Context) -> str:
    if ctx.box.kind != BoxKind.CONTAINER or not ctx.box.container:
        raise Skip("not a container")
    return ctx.box.container


def collect_docker_inspect(ctx: Context) -> dict[str, Any]:
    """`docker inspect` of the container, its endpoint on the box's network, and the network."""
    name = _need_container(ctx)
    client = ctx.docker()
    try:
        inspect = client.api.inspect_container(name)
    except Exception as exc:  # noqa: BLE001 - any engine error (docker, requests, OSError) fails this collector
        raise CollectorError(f"docker inspect {name}: {exc}") from None
    ctx.inspect = inspect
    networks = (inspect.get("NetworkSettings") or {}).get("Networks") or {}
    out: dict[str, Any] = {"container": inspect, "endpoint": networks.get(ctx.box.network) if ctx.box.network else networks}
    if ctx.box.network:
        try:
            net = client.api.inspect_network(ctx.box.network)
            out["network"] = {k: net.get(k) for k in ("Name", "Id", "Driver", "Options", "IPAM")}
            out["network_endpoint"] = (net.get("Containers") or {}).get(inspect.get("Id"))
        except Exception as exc:  # noqa: BLE001 - any engine error: recorded, the container part stands
            out["network_error"] = f"docker network inspect {ctx.box.network}: {exc}"
    return {"docker_inspect.json": out}


def _container_pid(ctx: Context) -> int:
    name = _need_container(ctx)
    if ctx.inspect is None:
        try:
            ctx.inspect = ctx.docker().api.inspect_container(name)
        except Exception as exc:  # noqa: BLE001 - any engine error fails this collector
            raise CollectorError(f"docker inspect {name}: {exc}") from None
    pid = int(((ctx.inspect or {}).get("State") or {}).get("Pid") or 0)
    if pid <= 0:
        raise CollectorError(f"container {name} has no process (state {(ctx.inspect.get('State') or {}).get('Status')})")
    return pid


def gone_reason(ctx: Context, pid: int) -> str | None:
    """Why the container's process PID (read earlier) is no longer its process, asked of Docker now; None when it is."""
    import docker.errors

    name = _need_container(ctx)
    try:
        state = (ctx.docker().api.inspect_container(name).get("State") or {})
    except docker.errors.NotFound:
        return f"container {name} removed during collection"
    except Exception as exc:  # noqa: BLE001 - Docker unreachable: judge by the process alone
        log.debug("evidence: box %s: inspect %s: %s", ctx.box.name, name, exc)
        state = None
    now_pid = int((state or {}).get("Pid") or 0)
    if state is not None and now_pid != pid:
        if now_pid > 0:
            return f"container {name} restarted during collection (pid {pid} gone, now {now_pid})"
        return f"container {name} stopped during collection (state {state.get('Status')}, pid {pid} gone)"
    import os

    if not os.path.exists(f"/proc/{pid}"):
        return f"container {name}'s process {pid} gone during collection"
    return None


def collect_container_net(ctx: Context) -> dict[str, Any]:
    """The container's interface counters, neighbour table and routes, read in its network namespace."""
    pid = _container_pid(ctx)
    prefix = ["nsenter", "-t", str(pid), "-n", "ip", "-j"]

    def ns_ip(*args: str) -> Any:
        argv = prefix + list(args)
        try:
            return json_of(ctx.run(argv, COMMAND_TIMEOUT_S), argv)
        except CollectorError as exc:
            reason = gone_reason(ctx, pid)
            if reason:   # e.g. "cannot open /proc/PID/ns/net": restart_container ran meanwhile
                raise TargetGone(f"{reason}: {exc}") from None
            raise

    return {"container_link.json": ns_ip("-s", "link", "show"),
            "container_neigh.json": ns_ip("neigh", "show"),
            "container_routes.json": {"ipv4": ns_ip("-4", "route", "show"), "ipv6": ns_ip("-6", "route", "show")}}


def _event_is_about(event: Mapping[str, Any], name: str, container_id: str | None) -> bool:
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    ids = {name, container_id} - {None}
    # Container events name the container as actor; network (dis)connect events carry it in "container".
    return actor.get("ID") in ids or attrs.get("name") in ids or attrs.get("container") in ids


def event_line(event: Mapping[str, Any]) -> str:
    """One Docker event as 'HH:MM:SSZ type action (network NAME)'."""
    t = event.get("timeNano")
    t_s = t / 1e9 if t else float(event.get("time") or 0)
    attrs = (event.get("Actor") or {}).get("Attributes") or {}
    # dockerd's network event: `name` is the network, `container` the id; Podman's: `name` is the container.
    where = (f" (network {attrs['name']})" if event.get("Type") == "network" and attrs.get("name")
             and attrs.get("container") else "")
    return (f"{datetime.fromtimestamp(t_s, tz=UTC).strftime('%H:%M:%SZ')} "
            f"{event.get('Type')} {event.get('Action')}{where}")


def collect_docker_events(ctx: Context) -> dict[str, Any]:
    """The container's Docker events (its own and its network's) since a while before the freeze; non-blocking."""
    name = _need_container(ctx)
    client = ctx.docker()
    if ctx.inspect is None:
        try:  # network events name the container by id only
            ctx.inspect = client.api.inspect_container(name)
        except Exception as exc:  # noqa: BLE001 - without the id the events are matched by name only
            log.debug("evidence: box %s: inspect %s for its id: %s", ctx.box.name, name, exc)
    container_id = (ctx.inspect or {}).get("Id")
    since = int(ctx.start_s - EVENTS_LOOKBACK_S)
    events: list[Any] = []
    try:
        # A `container` filter would miss dockerd's network connect/disconnect (their actor is the network).
        # Until now (fractional seconds, so events of this very second count); on Podman, whose `until` returns
        # nothing, a `since` stream read for a moment (agent.engines.client.past_events).
        got = past_events(client, since, ctx.now_s, {"type": ["container", "network"]})
        events = [e for e in got if _event_is_about(e, name, container_id)]
    except Exception as exc:  # noqa: BLE001 - any engine or stream error fails this collector
        raise CollectorError(f"docker events for {name}: {exc}") from None
    events = events[-MAX_EVENTS:]
    ctx.notes["docker_events"] = [event_line(e) for e in events[-10:]]
    return {"docker_events.json": events}


# Explicit registry, run in this order.
COLLECTORS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "monitor_neigh": collect_monitor_neigh,
    "monitor_link": collect_monitor_link,
    "docker_inspect": collect_docker_inspect,
    "container_net": collect_container_net,
    "docker_events": collect_docker_events,
}
