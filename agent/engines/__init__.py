"""Container engines: the client factory, one event decoder per engine, the engine's identity and its differences.

ENGINES maps an engine's name to its module's TRAITS and `decode` (agent.engines.docker,
agent.engines.podman); `identify(version)` tells which engine answers from its `/version`. The
engine-neutral event type and its rules are agent.engines.events, the events watcher and the
container state cache agent.engines.watcher, the socket choice and the client agent.engines.client.
Adding an engine: one module with NAME, TRAITS and decode(), one entry here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.engines import docker, podman
from agent.engines.events import EngineEvent
from agent.engines.traits import EngineTraits


@dataclass(frozen=True, slots=True)
class Engine:
    """One engine kind: its differences (traits) and its event decoder (raw `/events` JSON -> EngineEvent)."""

    traits: EngineTraits
    decode: Callable[[Mapping[str, Any]], EngineEvent | None]


ENGINES: dict[str, Engine] = {m.NAME: Engine(m.TRAITS, m.decode) for m in (docker, podman)}


def get_engine(name: str) -> Engine:
    """The engine called NAME; ValueError listing the valid names otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown container engine {name!r}; valid: {', '.join(ENGINES)}") from None


@dataclass(frozen=True, slots=True)
class Identity:
    """Which engine answers and its versions: engine ("docker"/"podman"), version ("4.3.1"), api ("1.41")."""

    engine: str
    version: str
    api: str

    @property
    def traits(self) -> EngineTraits:
        """This engine's differences."""
        return ENGINES[self.engine].traits

    def __str__(self) -> str:
        return f"{self.engine} {self.version} (API {self.api})"


def identify(version: Mapping[str, Any]) -> Identity:
    """The engine behind a `/version` answer (docker-py `client.version()`).

    Podman's compat API lists a component named "Podman Engine" (measured: 4.3.1, which reports
    ApiVersion 1.41); dockerd lists "Engine". Anything without the Podman component is taken as dockerd.
    """
    for comp in version.get("Components") or ():
        if isinstance(comp, Mapping) and str(comp.get("Name", "")).lower() == "podman engine":
            return Identity(podman.NAME, str(comp.get("Version") or version.get("Version") or "?"),
                            str(version.get("ApiVersion") or "?"))
    return Identity(docker.NAME, str(version.get("Version") or "?"), str(version.get("ApiVersion") or "?"))


def identify_client(client: Any) -> Identity:
    """identify() of a docker-py client's engine (one `/version` request; docker errors pass through)."""
    return identify(client.version() or {})


__all__ = ["ENGINES", "Engine", "EngineTraits", "Identity", "get_engine", "identify", "identify_client"]
