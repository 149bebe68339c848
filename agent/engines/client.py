"""The one container engine client factory: which socket (and why), a docker-py client for it, lazily.

Order (first that applies wins, `choose_socket`): `[engine] socket` in the config (the operator's explicit
word); DOCKER_HOST (any scheme docker-py takes: unix://, tcp:// to a socket proxy); CONTAINER_HOST when it
is unix:// (Podman's variable; its ssh:// form is podman-remote's, not an API socket docker-py can use);
then the first of DEFAULT_SOCKETS that exists: /run/docker.sock (dockerd, /var/run/docker.sock on hosts
where /var/run is /run), /run/podman/podman.sock (rootful `podman.socket`, EL9).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SOCKETS = ("/run/docker.sock", "/var/run/docker.sock", "/run/podman/podman.sock")
DEFAULT_TIMEOUT_S = 60.0


class NoEngineSocket(Exception):
    """No engine socket is configured or found; the message names what was tried."""


@dataclass(frozen=True, slots=True)
class SocketChoice:
    """The engine's base URL ("unix:///run/podman/podman.sock") and where it came from ("CONTAINER_HOST")."""

    url: str
    source: str

    def __str__(self) -> str:
        return f"{self.url} (from {self.source})"


def _as_url(text: str) -> str:
    return text if "://" in text else "unix://" + text


def choose_socket(env: Mapping[str, str], configured: str | None = None,
                  exists: Callable[[str], bool] = os.path.exists) -> SocketChoice:
    """The socket to use and why; NoEngineSocket naming what was tried. Pure but for EXISTS (paths)."""
    if configured:
        return SocketChoice(_as_url(configured), "[engine] socket")
    if env.get("DOCKER_HOST"):
        return SocketChoice(env["DOCKER_HOST"], "DOCKER_HOST")
    tried = []
    container_host = env.get("CONTAINER_HOST", "")
    if container_host:
        if container_host.startswith("unix://"):
            return SocketChoice(container_host, "CONTAINER_HOST")
        tried.append(f"CONTAINER_HOST={container_host} (not unix://: ignored)")
    for path in DEFAULT_SOCKETS:
        if exists(path):
            return SocketChoice("unix://" + path, f"default socket {path}")
        tried.append(path)
    raise NoEngineSocket("no container engine socket: none configured ([engine] socket), DOCKER_HOST unset, "
                         f"none of {', '.join(tried)} exists")


def client_factory(configured: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                   env: Mapping[str, str] | None = None) -> Callable[[], Any]:
    """A factory of docker-py clients for the chosen socket, chosen at each call (the engine may start later).

    The client carries `engine_socket` (the SocketChoice). NoEngineSocket or docker errors pass through.
    """
    def make() -> Any:
        import docker

        environ = os.environ if env is None else env
        choice = choose_socket(environ, configured)
        if choice.source == "DOCKER_HOST":   # with DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, as docker-py reads them
            client: Any = docker.from_env(timeout=int(timeout_s), environment=dict(environ))
        else:
            client = docker.DockerClient(base_url=choice.url, timeout=int(timeout_s))
        client.engine_socket = choice
        return client
    return make


def read_span(client: Any, since_s: float, until_s: float, filters: Mapping[str, Any],
              read_s: float) -> list[dict[str, Any]]:
    """The engine's past events from since_s to until_s (epoch s) by a `since` stream read for at most READ_S s.

    For an engine whose `/events?since&until` returns nothing (Podman 4.3.1: agent.engines.podman, TRAITS
    history_until_works): its `since` stream replays the span at once, then waits for new events; it is
    closed at the first event after until_s, or after READ_S. Docker errors of the request pass through.
    """
    stream = client.api.events(since=f"{since_s:.9f}", filters=dict(filters), decode=True)
    timer = threading.Timer(read_s, stream.close)
    timer.start()
    out: list[dict[str, Any]] = []
    try:
        for raw in stream:
            if (raw.get("timeNano") or 0) / 1e9 > until_s:
                break
            out.append(raw)
    except Exception as exc:  # noqa: BLE001 - the stream closed by the timer ends the read, whatever it raises
        log.debug("engine history read ended: %s", exc)
    finally:
        timer.cancel()
        stream.close()
    return out


def past_events(client: Any, since_s: float, until_s: float, filters: Mapping[str, Any],
                read_s: float = 0.5) -> list[dict[str, Any]]:
    """The engine's raw events from since_s to until_s (epoch s), whichever engine answers (one `/version`
    request to tell); docker errors pass through."""
    from agent.engines import ENGINES, identify_client

    try:
        until_works = identify_client(client).traits.history_until_works
    except Exception:  # noqa: BLE001 - /version failing: the events request says why, as on dockerd
        until_works = ENGINES["docker"].traits.history_until_works
    if not until_works:
        return read_span(client, since_s, until_s, filters, read_s)
    stream = client.api.events(since=f"{since_s:.9f}", until=f"{until_s:.6f}", filters=dict(filters), decode=True)
    try:
        return list(stream)
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
