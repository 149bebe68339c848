"""Fixtures for remediation lab tests: a real lab (lab), reachability checks from its monitor namespace,
and a restartable proxy in front of dockerd's socket (to take "dockerd" away without stopping the shared one)."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest


def _lab_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("docker") or not os.path.exists("/var/run/docker.sock"):
        return "needs a running Docker engine"
    return None


@pytest.fixture(scope="session")
def rlab(lab):
    """The shared lab (tests/lab_fixtures.py: ctr1, ctr2, vm1); our tests leave every box healthy again."""
    return lab


def tcp_ok(lab, address: str, port: int, timeout_s: float = 1.0) -> bool:
    """The box's TCP service answers from the monitor namespace: connect AND get an HTTP reply.

    Connect alone is not enough: a paused container's kernel still completes handshakes (listen backlog)."""
    from agent.netns import entered
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with entered(lab.monitor_ns):
        s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout_s)
        s.connect((address, port))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return s.recv(16).startswith(b"HTTP/")
    except OSError:
        return False
    finally:
        s.close()


def ping_ok(lab, address: str) -> bool:
    """One ping from the monitor namespace is answered."""
    return subprocess.run(["ip", "netns", "exec", lab.monitor_ns, "ping", "-c1", "-W1", address],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def box_healthy(lab, name: str) -> bool:
    """Every TCP port answers on IPv4 and IPv6 (what the agent calls healthy, minus ARP/NDP)."""
    b = lab.box(name)
    return all(tcp_ok(lab, a, p) for a in (b.ipv4, b.ipv6) for p in b.tcp_ports)


def wait_for(cond, timeout_s: float = 20.0, step_s: float = 0.2) -> bool:
    """Poll COND until true or TIMEOUT_S."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step_s)
    return bool(cond())


def neigh_mac(lab, address: str) -> str | None:
    """The MAC the monitor namespace's neighbour table holds for ADDRESS."""
    out = subprocess.run(["ip", "-n", lab.monitor_ns, "neigh", "show", address],
                         capture_output=True, text=True).stdout.split()
    return out[out.index("lladdr") + 1].lower() if "lladdr" in out else None


class DockerSocketProxy:
    """A unix-socket proxy to /var/run/docker.sock that can be stopped and started: dockerd "goes away"."""

    def __init__(self, upstream: str = "/var/run/docker.sock") -> None:
        self.upstream = upstream
        self.path = f"/run/vobox-rem-{uuid.uuid4().hex[:8]}.sock"
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lst.bind(self.path)
        lst.listen(16)
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def stop(self) -> None:
        lst, self._listener = self._listener, None
        if lst:
            with contextlib.suppress(OSError):
                lst.shutdown(socket.SHUT_RDWR)
            lst.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns.clear()

    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream)
            with self._lock:
                self._conns += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def docker_proxy():
    """A started DockerSocketProxy, stopped afterwards."""
    reason = _lab_missing()
    if reason:
        pytest.skip(reason)
    import glob
    for stale in glob.glob("/run/vobox-rem-*.sock"):  # left by a crashed run of ours: nobody listens
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(stale)
        except ConnectionRefusedError:
            os.unlink(stale)
        except OSError:
            pass
        finally:
            probe.close()
    proxy = DockerSocketProxy()
    proxy.start()
    yield proxy
    proxy.stop()
