"""Podman (rootful, 4.3+, its Docker-compatible API from `podman system service`): event decoder and TRAITS.

Measured here on Podman 4.3.1 with netavark 1.4 (API reported: 1.41, Components[0].Name "Podman Engine");
the captured stream is tests/data/podman-4.3-events.jsonl. Differences from dockerd, each absorbed here:
- a network event's Actor.ID is the CONTAINER's id and `Actor.Attributes.name` the CONTAINER's name; the
  network is not named (dockerd: `name` is the network, `container` the id);
- a removal is `remove` (dockerd: `destroy`); a start is preceded by `init`; an exit is followed by `cleanup`
  (two after a `podman stop`);
- `podman restart` emits restart, stop, die, init, start; `podman stop` emits stop BEFORE die (dockerd: after);
- `podman stop` often records no `stop` event, but leaves two `cleanup` events after its exit (its own and
  conmon's; any other exit leaves one): decoded as the kind `cleanup`, read by agent.engines.events.cleanup_request;
- `kill` carries no signal; `containerExitCode` is on every event (meaningful on `die` only, with `exitCode`);
- a rename names only the new name;
- health: 4.3 writes its health_status event with the status BEFORE the check (a failing check on a
  starting container says "starting"), and delivers it only to streams filtered by container: the decoder
  drops it and the watcher reads State.Health.Status from inspects (TRAITS.health_events False);
- an exec created but not yet started inspects as Running false, ExitCode 0, Pid 0 (dockerd: ExitCode null):
  remediations.actions counts an exec as ended only once seen started or its output closed;
- after a restart, inspect may show an empty MacAddress and the IPv6 address is tentative (DAD) for about a
  second: restart_container reads the MAC in the container's namespace and waits for DAD (remediations.announce).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.engines.events import KINDS, EngineEvent
from agent.engines.traits import EngineTraits

NAME = "podman"

TRAITS = EngineTraits(
    name=NAME,
    # The compat handler of POST /networks/{id}/connect passes EndpointConfig.MacAddress on as the static MAC
    # (measured: 4.3.1 reconnects with the MAC given; without one it picks a new random MAC).
    mac_on_connect_min_api=None,
    # netavark gives a macvlan endpoint a new random MAC at every start: a restart changes it (measured).
    restart_keeps_mac=False,
    health_events=False,
    # `/events?since&until` returns nothing on 4.3.1 (with stream=false: the first event only); a `since`
    # stream replays the span at once (measured).
    history_until_works=False,
    # The `event` filter matches Podman's internal names (`died`, not `die`: a filter of "die" drops every
    # exit, measured): no `event` filter, decode() drops the rest.
    event_actions=None,
    # With runc/crun under conmon, State.Pid is the container's PID 1 on the host, as with dockerd (measured:
    # /proc/PID/cgroup names libpod-<id>); conmon's own PID is State.ConmonPid.
    pid_meaning="the container's PID 1 on the host (State.Pid; conmon is State.ConmonPid)",
)

# Podman action -> engine-neutral kind, where they differ.
ACTIONS = {"remove": "destroy", "died": "die"}


def decode(ev: Mapping[str, Any]) -> EngineEvent | None:
    """The EngineEvent of one event of Podman's compat `/events` stream, None for kinds outside KINDS."""
    typ, action = ev.get("Type"), str(ev.get("Action") or ev.get("status") or "")
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    time_s = (ev.get("timeNano") or 0) / 1e9 or float(ev.get("time") or 0)
    cid = str(actor.get("ID") or ev.get("id") or "")
    name = str(attrs.get("name") or "").lstrip("/")
    raw = {str(k): str(v) for k, v in attrs.items()}
    if typ == "container":
        kind = ACTIONS.get(action, action.split(":", 1)[0])
        if kind not in KINDS:
            return None
        out = {"action": action, "engine": NAME}
        if kind == "die":
            code = attrs.get("exitCode", attrs.get("containerExitCode"))
            if code not in (None, ""):
                out["exit_code"] = str(code)
        if attrs.get("signal"):
            out["signal"] = str(attrs["signal"])
        elif kind == "kill":
            out["signal_reported"] = "no"   # 4.3's kill event carries no signal: agent.engines.events
        if kind == "health_status":
            return None   # carries the status before the check (4.3.1): health comes from inspect instead
        return EngineEvent(kind, cid, name, out, time_s, raw)
    if typ == "network" and action in ("connect", "disconnect"):
        return EngineEvent(f"network_{action}", cid, name, {"action": action, "network": ""}, time_s, raw)
    return None
