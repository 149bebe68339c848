"""dockerd (Docker Engine): its event decoder and what it does differently (TRAITS).

Sources: Docker Engine API `/events` (Type container/network, `Actor.Attributes`), measured here on
Engine 20.10.24 (API 1.41): a network event names the NETWORK in `name` and the container under
`container`; `kill` carries `signal`; a removal is `destroy`; `health_status: healthy` carries the status
in the action text.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.engines.events import KINDS, EngineEvent
from agent.engines.traits import EngineTraits

NAME = "docker"

TRAITS = EngineTraits(
    name=NAME,
    # Engine API version history, v1.54: POST /networks/{id}/connect applies EndpointConfig.MacAddress;
    # older engines ignore it (1.44-1.53 honour it on create only). Engine 20.10 derives a macvlan MAC from
    # the IPv4 (02:42 + address), so reconnecting with the same IPv4 gives back the same MAC anyway.
    mac_on_connect_min_api=(1, 54),
    # A restart keeps the endpoint (its MAC) on every Docker version measured here (20.10).
    restart_keeps_mac=True,
    # dockerd emits `health_status: <status>` on every change (moby daemon/health.go).
    health_events=True,
    # `/events?since&until` returns that span and ends.
    history_until_works=True,
    # The stream's `event` filter: the container actions of KINDS and the network's connect/disconnect.
    # (`cleanup` is Podman's: dockerd has no such action.)
    event_actions=tuple(sorted({k for k in KINDS if not k.startswith("network_") and k != "cleanup"}
                               | {"connect", "disconnect"})),
    # State.Pid: the container's PID 1 in the host's PID namespace (moby container/state.go).
    pid_meaning="the container's PID 1 on the host (State.Pid)",
)


def decode(ev: Mapping[str, Any]) -> EngineEvent | None:
    """The EngineEvent of one decoded dockerd event (`/events` JSON), None for kinds outside KINDS."""
    typ, action = ev.get("Type"), str(ev.get("Action") or ev.get("status") or "")
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    time_s = (ev.get("timeNano") or 0) / 1e9 or float(ev.get("time") or 0)
    raw = {str(k): str(v) for k, v in attrs.items()}
    if typ == "container":
        kind = action.split(":", 1)[0]
        if kind not in KINDS:
            return None
        out = {"action": action}
        if attrs.get("exitCode") not in (None, ""):
            out["exit_code"] = str(attrs["exitCode"])
        if attrs.get("signal"):
            out["signal"] = str(attrs["signal"])
        if kind == "rename" and attrs.get("oldName"):
            out["old_name"] = str(attrs["oldName"]).lstrip("/")
        if kind == "health_status":
            out["health"] = action.split(":", 1)[1].strip() if ":" in action else ""
        return EngineEvent(kind, str(actor.get("ID") or ""), str(attrs.get("name") or "").lstrip("/"), out, time_s,
                           raw)
    if typ == "network" and action in ("connect", "disconnect"):
        return EngineEvent(f"network_{action}", str(attrs.get("container") or ""), "",
                           {"action": action, "network": str(attrs.get("name") or "")}, time_s, raw)
    return None
