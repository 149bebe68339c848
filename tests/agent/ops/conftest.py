"""Fixtures for the ops tests: the shared lab when tests/lab_fixtures.py provides one, else our own."""
from __future__ import annotations

import os
import shutil

import pytest


def need_lab_prereqs() -> None:
    """Skip (with the reason) unless root, a Docker engine and influxd are there."""
    if os.geteuid() != 0:
        pytest.skip("lab test: needs root")
    if shutil.which("influxd") is None:
        pytest.skip("lab test: needs Debian's influxd (apt-get install influxdb)")
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine means: no lab here
        pytest.skip(f"lab test: needs a running Docker engine ({exc})")


@pytest.fixture(scope="session")
def ops_lab(request):
    """A lab with 2 container boxes, 1 VM box and InfluxDB: the shared `lab` fixture if there is one."""
    need_lab_prereqs()
    try:
        yield request.getfixturevalue("lab")
        return
    except pytest.FixtureLookupError:
        pass
    from lab import Lab, cleanup_leftovers

    cleanup_leftovers()
    lab = Lab.create(containers=2, vms=1, influx=True)
    try:
        yield lab
    finally:
        lab.down()
