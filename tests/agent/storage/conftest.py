"""Fixtures for the storage tests: a throwaway network namespace and a real influxd inside it."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

NS_PREFIX = "vbxst-"


def _cleanup_leftover_namespaces() -> None:
    """Remove namespaces of ours whose creating test process is gone (a crashed run)."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return
    for name in names:
        if not name.startswith(NS_PREFIX):
            continue
        try:
            pid = int(name[len(NS_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if not os.path.exists(f"/proc/{pid}"):
            subprocess.run(["ip", "netns", "del", name], check=False)


def _need_root_and_influxd() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    if shutil.which("influxd") is None:
        pytest.skip("needs Debian's influxd (apt-get install influxdb)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (ip)")


def _make_netns():
    _cleanup_leftover_namespaces()
    name = f"{NS_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def throwaway_netns():
    """A new network namespace with only lo (up) and no route out; removed afterwards (needs influxd too)."""
    _need_root_and_influxd()
    yield from _make_netns()


@pytest.fixture
def bare_netns():
    """Like throwaway_netns, for tests that need only root."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    yield from _make_netns()


@pytest.fixture
def influx_server(throwaway_netns, tmp_path):
    """A started InfluxServer in a throwaway netns; stopped afterwards."""
    from lab.influx import InfluxServer

    server = InfluxServer(str(tmp_path / "influx"), netns=throwaway_netns, http_port=8086)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def module_influx(tmp_path_factory):
    """One real influxd for the whole module (hypothesis runs many examples)."""
    from lab.influx import InfluxServer

    _need_root_and_influxd()
    gen = _make_netns()
    ns = next(gen)
    server = InfluxServer(str(tmp_path_factory.mktemp("influx")), netns=ns, http_port=8086)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        next(gen, None)
