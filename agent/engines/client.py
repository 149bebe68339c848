"""The one container engine client factory: which socket (and why), a docker-py client for it, lazily.

Order (first that applies wins, `choose_socket`): `[engine] socket` in the config (the operator's explicit
word); DOCKER_HOST (any scheme docker-py takes: unix://, tcp:// to a socket proxy); CONTAINER_HOST when it
is unix:// (Podman's variable; its ssh:// form is podman-remote's, not an API socket docker-py can use);
then the first of DEFAULT_SOCKETS that exists: /run/docker.sock (dockerd, /var/run/docker.sock on hosts
where /var/run is /run), /run/podman/podman.sock (rootful `podman.socket`, EL9).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
            client = docker.from_env(timeout=int(timeout_s), environment=dict(environ))
        else:
            client = docker.DockerClient(base_url=choice.url, timeout=int(timeout_s))
        client.engine_socket = choice
        return client
    return make
