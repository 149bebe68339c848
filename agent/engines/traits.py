"""What one container engine does differently, as data (EngineTraits): read by actions, the watcher, checks, doctor."""
from __future__ import annotations

from dataclasses import dataclass


def api_tuple(text: str) -> tuple[int, int]:
    """An Engine API version "1.41" as (1, 41); (0, 0) for text that is not one."""
    major, _, minor = str(text).partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return 0, 0


@dataclass(frozen=True, slots=True)
class EngineTraits:
    """The differences between engines the agent acts on; each engine module's TRAITS holds its values.

    name: the registry key ("docker", "podman"); mac_on_connect_min_api: the Docker-compatible API
    version from which a MAC passed on network connect (EndpointConfig.MacAddress) is applied, None
    when the engine applies it whatever API version it reports; restart_keeps_mac: a restart keeps the
    container's MAC on its networks; health_events: the engine's event stream reports every health
    status change (else the watcher reads State.Health from inspects); history_until_works: a
    past-events query `/events?since&until` returns the events in that span (else the watcher reads a
    `since` stream for a moment and closes it); event_actions: the values of the stream's `event`
    filter, None for no `event` filter (the decoder drops what is not a KIND); pid_meaning:
    what inspect's State.Pid is (the process whose namespaces nsenter joins, the announce's netns).
    """

    name: str
    mac_on_connect_min_api: tuple[int, int] | None
    restart_keeps_mac: bool
    health_events: bool
    history_until_works: bool
    event_actions: tuple[str, ...] | None
    pid_meaning: str

    def honours_mac_on_connect(self, api_version: str) -> bool:
        """Whether a MAC passed on network connect is applied by this engine at API_VERSION ("1.41")."""
        if self.mac_on_connect_min_api is None:
            return True
        return api_tuple(api_version) >= self.mac_on_connect_min_api
