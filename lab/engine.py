"""The lab's container engine: dockerd (the default) or rootful Podman behind a lab-owned API service.

Every engine command of the lab goes through LabEngine.cmd(); the agent and docker-py reach the engine
at LabEngine.docker_host (the Docker-compatible API). Podman gets what this machine needs from a
lab-owned containers.conf (CONTAINERS_CONF on every podman command and on the service); nothing under
/etc changes. Facts behind the settings: /work/shared/LAB.md, section Podman.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import shell, state
from lab.errors import LabError

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

ENGINES = ("docker", "podman")
DEFAULT_ENGINE = "docker"
DOCKER_SOCKET = "/var/run/docker.sock"
PODMAN_SERVICE_TIMEOUT_S = 30.0

# Podman settings this machine needs (LAB.md, Podman): crun refuses the hybrid cgroup layout, and
# Podman's default ulimits exceed the sandbox's hard limits. A real EL9 host needs neither.
# The network definitions live under the lab's state dir, not in /etc/containers/networks.
PODMAN_CONF = """\
# Written by the vobox lab (lab/engine.py); passed as CONTAINERS_CONF to every podman command of the lab
# and to its `podman system service`. Nothing under /etc/containers is changed.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"

[network]
network_config_dir = "{network_dir}"
"""


def podman_dir() -> str:
    """The lab's Podman directory (containers.conf, network definitions), shared by every lab of the machine."""
    return os.path.join(state.STATE_DIR, "podman")


def podman_conf() -> str:
    """Path of the lab-owned containers.conf, written (atomically) when missing or different."""
    directory = podman_dir()
    network_dir = os.path.join(directory, "networks")
    os.makedirs(network_dir, exist_ok=True)
    path = os.path.join(directory, "containers.conf")
    text = PODMAN_CONF.format(network_dir=network_dir)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return path
    except FileNotFoundError:
        pass
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def check_engine(name: str) -> str:
    """name when it is an engine the lab runs on, else LabError listing the valid ones."""
    if name not in ENGINES:
        raise LabError(f"unknown container engine {name!r}; valid: {', '.join(ENGINES)}")
    return name


@dataclass(frozen=True, slots=True)
class LabEngine:
    """One lab's container engine: its command line and its Docker-compatible API socket."""

    name: str                 # "docker" or "podman"
    cli: tuple[str, ...]      # argv prefix of every engine command
    socket_path: str          # the Engine API socket (dockerd's, or the lab's podman service)

    def cmd(self, *args: str) -> list[str]:
        """argv of `ENGINE ARGS...` (podman: with the lab's CONTAINERS_CONF)."""
        return [*self.cli, *args]

    @property
    def docker_host(self) -> str:
        """DOCKER_HOST for the agent and docker-py: unix://<socket_path>."""
        return f"unix://{self.socket_path}"

    @property
    def agent_env(self) -> dict[str, str]:
        """Environment the agent needs to reach this engine: {} for dockerd (its default socket)."""
        return {} if self.name == "docker" else {"DOCKER_HOST": self.docker_host}

    def rm_force(self, container: str) -> list[str]:
        """argv removing a container at once (podman rm -f waits for the stop timeout unless -t 0)."""
        if self.name == "podman":
            return self.cmd("rm", "-f", "-t", "0", "-v", container)
        return self.cmd("rm", "-f", "-v", container)

    def client(self, version: str = "1.41") -> docker.DockerClient:
        """A docker-py client of this engine's API (close it after use)."""
        import docker

        return docker.DockerClient(base_url=self.docker_host, version=version, timeout=60)


def podman_socket(run_id: str) -> str:
    """The lab's podman service socket, inside its run dir (removed with it)."""
    return os.path.join(state.run_dir(run_id), "podman.sock")


def for_lab(name: str, run_id: str) -> LabEngine:
    """The engine NAME of lab RUN_ID; LabError for an unknown name."""
    if check_engine(name) == "docker":
        return LabEngine("docker", ("docker",), DOCKER_SOCKET)
    return LabEngine("podman", ("env", f"CONTAINERS_CONF={podman_conf()}", "podman"), podman_socket(run_id))


def installed() -> list[LabEngine]:
    """Engines whose command is installed, as cleanup sees them (no lab socket: for the CLI only)."""
    out = []
    if shutil.which("docker"):
        out.append(for_lab("docker", "000000"))
    if shutil.which("podman"):
        out.append(for_lab("podman", "000000"))
    return out


def unavailable_reason(name: str) -> str | None:
    """Why the lab cannot run on engine NAME here (None when it can)."""
    check_engine(name)
    if shutil.which(name) is None:
        pkgs = "docker.io" if name == "docker" else "podman netavark aardvark-dns runc conmon"
        return f"{name} is not installed (apt-get install {pkgs}, or run scripts/setup)"
    eng = for_lab(name, "000000")
    args = ("info", "--format", "{{.ServerVersion}}") if name == "docker" else ("info", "--format",
                                                                                 "{{.Version.Version}}")
    try:
        proc = shell.run(eng.cmd(*args), check=False, timeout_s=60)
    except LabError as exc:
        return str(exc)
    if proc.returncode != 0:
        what = "no Docker engine answers" if name == "docker" else "podman does not work here"
        return f"{what}: {(proc.stderr or proc.stdout).strip()[:300]}"
    return None


def api_answers(path: str, timeout_s: float = 2.0) -> bool:
    """True when the Engine API at unix socket PATH answers GET /_ping with OK."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(path)
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        return reply.startswith(b"HTTP/1.") and reply.split(b"\r\n\r\n", 1)[-1].strip() == b"OK"
    except OSError:
        return False
    finally:
        sock.close()


def start_podman_service(run_id: str, timeout_s: float = PODMAN_SERVICE_TIMEOUT_S) -> int:
    """Start `podman system service --time=0` on the lab's socket; its pid once GET /_ping answers OK.

    The service serves the Docker-compatible API (API 1.41); containers survive it (conmon), so stopping
    and starting it is an engine restart without a container restart. LabError naming the log when it does
    not answer within timeout_s.
    """
    path = podman_socket(run_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    log_path = os.path.join(state.run_dir(run_id), "podman-service.log")
    env = {**os.environ, "CONTAINERS_CONF": podman_conf()}
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{path}"], env=env,
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout_s
    while not api_answers(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with open(log_path, errors="replace") as f:
                tail = f.read()[-800:].strip()
            raise LabError(f"lab {run_id}: podman system service on {path} did not answer within "
                           f"{timeout_s:.0f}s (log {log_path}): {tail}")
        time.sleep(0.1)
    log.info("lab %s: podman system service pid %d on %s", run_id, proc.pid, path)
    return proc.pid


def _is_service_of(pid: int, run_id: str) -> bool:
    """True when process PID runs and is a `podman system service` on lab RUN_ID's socket."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return state.process_start_ticks(pid) is not None and f"unix://{podman_socket(run_id)}".encode() in argv


def stop_podman_service(run_id: str, pid: int | None, timeout_s: float = 10.0) -> None:
    """Stop the lab's podman service (SIGTERM, then SIGKILL); its containers keep running (conmon)."""
    if pid and _is_service_of(pid, run_id):   # never a recycled pid: its command line names the lab's socket
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while state.process_start_ticks(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if state.process_start_ticks(pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(podman_socket(run_id))
